#!/usr/bin/env bash
# Test data that more than one test lane reads, made once before the lanes start and only read after:
# the demo model (build/models/demo-classifier: the fleet and the AWS tests serve it) and the Molecule
# scenarios' artifacts (molecule/shared/prepare_models.yml; each scenario's prepare then finds them made).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${VENV:-.venv}/bin" && pwd)
[ -f build/models/demo-classifier/metadata.json ] || "$bin/model-service" train --out build/models/demo-classifier
[ -f build/molecule/models/broken-v3/metadata.json ] || MOLECULE_PROJECT_DIRECTORY=$PWD \
  "$bin/ansible-playbook" -i localhost, -e "ansible_python_interpreter=$bin/python" molecule/shared/prepare_models.yml
