#!/usr/bin/env bash
# The whole experiment on the local profile, end to end: set up .venv, deploy the platforms,
# benchmark them, write the report.   Usage: scripts/run-local.sh [extra ansible-playbook args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ansible-playbook site.yml "$@"
ansible-playbook bench.yml "$@"
python -m analysis
