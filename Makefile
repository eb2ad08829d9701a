# modelfleet: one entry point for setting up a controller, linting, testing and running the fleet.
#   make setup   venv with the pinned toolchain + app, a Docker engine, the systemd base image
#   make site    setup, then site.yml against the local default inventory
#   make test    setup, lint, unit tests, every Molecule scenario, the AWS and the fleet tests
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

.PHONY: help setup venv tools docker base-image lint unit molecule fleet-test aws-test test site release plan rollback status load teardown clean \
  aws-emulated aws-emulated-down aws-smoke bench fixtures lane-unit lane-molecule lane-molecule-a lane-molecule-b lane-fleet lane-aws

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: venv tools docker base-image ## Controller venv, tools, Docker engine and base image (seconds when present)

venv: $(VENV)/.installed ## Create .venv with the pinned toolchain and the app

$(VENV)/.installed: requirements.txt app/pyproject.toml
	@$(TIMED) venv bash -c '$(PYTHON) -m venv $(VENV) \
	  && $(VENV)/bin/pip install -q --upgrade pip \
	  && $(VENV)/bin/pip install -q -r requirements.txt \
	  && $(VENV)/bin/pip install -q -e "app[test]"'
	@touch $@

tools: venv ## This repository as the collection modelfleet.fleet, and promtool/amtool/prometheus for tests
	@mkdir -p collections/ansible_collections/modelfleet
	@ln -sfn ../../.. collections/ansible_collections/modelfleet/fleet
	@$(TIMED) prometheus-tools tools/install-prometheus-tools.sh

docker: ## Make sure a Docker engine answers (installs and starts Debian's docker.io if needed)
	@$(TIMED) docker tools/ensure-docker.sh

base-image: docker ## Build the systemd base image if it is missing
	@$(TIMED) base-image tools/build-base-image.sh

lint: venv ## yamllint, ansible-lint (production profile), ruff, argument_specs check
	@$(TIMED) yamllint yamllint --strict .
	@$(TIMED) ansible-lint ansible-lint --profile production
	@$(TIMED) ruff bash -c 'ruff check . && ruff format --check .'
	@$(TIMED) argument-specs python tools/check_argument_specs.py roles

unit: setup ## pytest: the app and the project's tools (the collection test converges a container)
	@$(MAKE) --no-print-directory lane-unit

molecule: setup ## Every Molecule scenario (SCENARIOS="a b" to choose); all run, every failure is listed
	@$(MAKE) --no-print-directory lane-molecule

fleet-test: setup fixtures ## The local fleet end to end: site, releases, failures, scaling, teardown (under load)
	@$(MAKE) --no-print-directory lane-fleet

aws-test: setup fixtures ## The AWS provider against an AWS API emulator on loopback: bake, build, release, rollback, teardown
	@$(MAKE) --no-print-directory lane-aws

# What more than one lane reads, made once before they start and only read after (tools/fixtures.sh).
fixtures: venv
	@$(TIMED) fixtures tools/fixtures.sh

# The lanes themselves, without the set-up checks (make test runs those once, before the lanes start).
lane-unit:
	@$(TIMED) pytest pytest --durations=10
lane-molecule:
	@failed=""; for s in $(SCENARIOS); do $(TIMED) "molecule:$$s" molecule test -s "$$s" || failed="$$failed $$s"; done; \
	  if [ -n "$$failed" ]; then echo "molecule: failed scenarios:$$failed"; exit 1; fi
# make test splits the scenarios into two lanes of about the same length (LANES="unit molecule aws fleet"
# runs them in one: measured slower, 2,303 s against 2,204 s, the single lane running alone at the end).
MOLECULE_LANE_A ?= model_service alertmanager common grafana
lane-molecule-a:
	@$(MAKE) --no-print-directory lane-molecule SCENARIOS="$(MOLECULE_LANE_A)"
lane-molecule-b:
	@$(MAKE) --no-print-directory lane-molecule SCENARIOS="$(filter-out $(MOLECULE_LANE_A),$(SCENARIOS))"
lane-fleet:
	@$(TIMED) fleet pytest -p no:cacheprovider -v -s --durations=0 molecule/fleet
lane-aws:
	@$(TIMED) aws pytest -p no:cacheprovider -v --durations=0 molecule/aws

# Lanes run side by side, each under its own time limit (tools/lane) with its output in build/ci/LANE.log,
# shown as each lane ends. They share no container, network, port, wheelhouse or state directory; the
# demo model is made before they start. Limits: the lane's budget in .ci/budgets with a margin.
LANES ?= unit molecule-a molecule-b aws fleet
# The fleet lane is the longest and judges latency: the others run niced, so that it gets the CPU it asks
# for and they fill the rest (processes inside containers are not niced).
LANE_NICE_fleet ?= 0
# The AWS lane is as long as the fleet lane and spends its CPU in Ansible and boto3 on the controller, where
# a nice of 5 costs it most (what Molecule runs in its containers is not niced): 2 puts it ahead of the
# Molecule lanes, which end 10 to 15 minutes before it, and still behind the fleet lane.
LANE_NICE_aws ?= 2
LANE_LIMIT_unit ?= 1200
LANE_LIMIT_molecule ?= 3000
LANE_LIMIT_molecule-a ?= 2700
LANE_LIMIT_molecule-b ?= 2700
LANE_LIMIT_aws ?= 3000
LANE_LIMIT_fleet ?= 3000
# Interrupted (Ctrl-C, or CI stopping the run), it stops every lane's process group (tools/lane records it).
test: setup lint fixtures ## Everything CI runs: lint, then the unit, Molecule (two), AWS and fleet lanes side by side
	@mkdir -p build/ci; rm -f build/ci/*.pgid; pids=""; \
	trap 'for g in build/ci/*.pgid; do kill -TERM -- -$$(cat $$g) 2>/dev/null; done; exit 130' INT TERM; \
	for spec in $(foreach l,$(LANES),$(l):$(or $(LANE_LIMIT_$(l)),2400):$(or $(LANE_NICE_$(l)),5)); do \
	  IFS=: read -r lane limit niceness <<< "$$spec"; \
	  ( rc=0; nice -n $$niceness tools/lane $$lane $$limit build/ci/$$lane.log \
	      $(MAKE) --no-print-directory lane-$$lane || rc=$$?; \
	    printf '\n======== lane %s (exit %s) ========\n' $$lane $$rc; cat build/ci/$$lane.log; exit $$rc ) & \
	  pids="$$pids $$!"; \
	done; \
	rc=0; for pid in $$pids; do wait $$pid || rc=1; done; exit $$rc

site: setup ## Run site.yml against the local default inventory: the fleet behind the balancer
	@$(TIMED) site ansible-playbook -i $(INVENTORY) site.yml

release: setup ## Release a new model (MODEL=PATH) or code release (RELEASE=NAME) to the local fleet
	@$(TIMED) release ansible-playbook -i $(INVENTORY) playbooks/release.yml \
	  $(if $(MODEL),-e model_service_model_src=$(abspath $(MODEL))) $(if $(RELEASE),-e model_service_release=$(RELEASE))

plan: setup ## What a release of MODEL=PATH (or RELEASE=NAME) would do, step by step; changes nothing
	@$(TIMED) plan ansible-playbook -i $(INVENTORY) playbooks/plan.yml \
	  $(if $(MODEL),-e model_service_model_src=$(abspath $(MODEL))) $(if $(RELEASE),-e model_service_release=$(RELEASE))

rollback: setup ## Go back to the image served before (IMAGE=modelfleet/app:TAG for another kept one)
	@$(TIMED) rollback ansible-playbook -i $(INVENTORY) playbooks/rollback.yml $(if $(IMAGE),-e modelfleet_release_image=$(IMAGE))

status: venv ## What the local fleet serves: each host's image, release, model and state at the balancer; the lease; the last verdict
	@ansible-playbook -i $(INVENTORY) playbooks/status.yml

load: venv ## Prediction load through the local balancer (DURATION=30 RATE=100; PNG=path to draw it)
	@python bench/load.py --seconds $(or $(DURATION),30) --rate $(or $(RATE),100) $(if $(PNG),--png $(PNG))

# MLServer (the usual peer) gets its own venv: its dependencies are not the service's.
BENCH_VENV ?= build/bench-venv
bench: venv ## Serving benchmark: the service, the HTTP ceiling and MLServer side by side, one table (BENCH_SECONDS=8; PNG=path to draw it)
	@command -v wrk >/dev/null && command -v nginx >/dev/null || apt-get install -y -q wrk nginx >/dev/null
	@test -x $(BENCH_VENV)/bin/mlserver || { $(PYTHON) -m venv $(BENCH_VENV) && $(BENCH_VENV)/bin/pip install -q -r bench/mlserver-requirements.txt; }
	@pip install -q -r bench/requirements.txt
	@python bench/run.py --seconds $(or $(BENCH_SECONDS),8) --mlserver $(BENCH_VENV)/bin/mlserver $(if $(PNG),--png $(PNG))

teardown: venv ## Remove every container, network, volume and image of the local fleet
	@$(TIMED) teardown ansible-playbook -i $(INVENTORY) playbooks/teardown.yml

clean: ## Remove what builds and tests left in build/ (caches, test outputs); the fleet and its state stay
	@rm -rf build/wheelhouse build/molecule build/fleet-test build/aws-test build/ci build/bench-venv

# The production inventory against moto server on loopback, with fake credentials: nothing reaches AWS.
AWS_EMULATOR_ENV = eval "$$(tools/aws-emulator.sh env)"

aws-emulated: setup ## The AWS stack on an emulator (MODELFLEET_AWS_ENDPOINT, default http://127.0.0.1:5000), left up
	@tools/aws-emulator.sh start
	@$(AWS_EMULATOR_ENV) && $(TIMED) upload-model ansible-playbook -i inventories/prod playbooks/upload_model.yml
	@$(AWS_EMULATOR_ENV) && $(TIMED) aws-site ansible-playbook -i inventories/prod site.yml
	@echo "Inspect it: eval \"\$$(tools/aws-emulator.sh env)\"; ansible-inventory -i inventories/prod --graph"

# A real account: refuses unless ARGS names the account of the credentials (its logic is tested on the emulator).
SMOKE_INVENTORY ?= inventories/staging
aws-smoke: venv ## A first real deployment, guarded (ARGS="-e modelfleet_aws_smoke_confirm=ACCOUNT"): cost, build, release, rollback, teardown, sweep
	@$(TIMED) aws-smoke $(VENV)/bin/python tools/aws_smoke.py --inventory $(SMOKE_INVENTORY) $(ARGS)

aws-emulated-down: venv ## Tear the emulated AWS stack down and stop the emulator
	@$(AWS_EMULATOR_ENV) && $(TIMED) aws-teardown ansible-playbook -i inventories/prod playbooks/teardown.yml \
	  -e modelfleet_teardown_artifacts=true -e modelfleet_teardown_confirm=prod
	@tools/aws-emulator.sh stop
