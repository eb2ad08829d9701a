# modelfleet: one entry point for setting up a controller, linting, testing and running the fleet.
#   make setup   venv with the pinned toolchain + app, a Docker engine, the systemd base image
#   make site    setup, then site.yml against the local default inventory
#   make test    setup, lint, unit tests, every Molecule scenario
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
BASE_IMAGE ?= modelfleet/debian-systemd:bookworm
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
INVENTORY ?= inventories/local

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MODELFLEET_BASE_IMAGE := $(BASE_IMAGE)
TIMED := tools/timed

.PHONY: help setup venv docker base-image lint unit molecule test site clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: venv docker base-image ## Controller venv, Docker engine and base image (seconds when present)

venv: $(VENV)/.installed ## Create .venv with the pinned toolchain and the app

$(VENV)/.installed: requirements.txt app/pyproject.toml
	@$(TIMED) venv bash -c '$(PYTHON) -m venv $(VENV) \
	  && $(VENV)/bin/pip install -q --upgrade pip \
	  && $(VENV)/bin/pip install -q -r requirements.txt \
	  && $(VENV)/bin/pip install -q -e "app[test]"'
	@touch $@

docker: ## Make sure a Docker engine answers (installs and starts Debian's docker.io if needed)
	@$(TIMED) docker tools/ensure-docker.sh

base-image: docker ## Build the systemd base image if it is missing
	@$(TIMED) base-image tools/build-base-image.sh

lint: venv ## yamllint, ansible-lint (production profile), ruff, argument_specs check
	@$(TIMED) yamllint yamllint --strict .
	@$(TIMED) ansible-lint ansible-lint --profile production
	@$(TIMED) ruff bash -c 'ruff check . && ruff format --check .'
	@$(TIMED) argument-specs python tools/check_argument_specs.py roles

unit: venv ## pytest: the app and the project's tools
	@$(TIMED) pytest pytest

molecule: setup ## Every Molecule scenario (SCENARIOS="a b" to choose)
	@for s in $(SCENARIOS); do $(TIMED) "molecule:$$s" molecule test -s "$$s" || exit 1; done

test: setup lint unit molecule ## Everything CI runs

site: setup ## Run site.yml against the local default inventory
	@$(TIMED) site ansible-playbook -i $(INVENTORY) site.yml

clean: ## Remove the project's containers (the venv and base image stay)
	-docker ps -aq --filter label=modelfleet.project | xargs -r docker rm -f
