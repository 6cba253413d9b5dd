#!/usr/bin/env bash
# Set up .venv and run every test suite (lint included). Needs a running Docker engine, ab and
# debootstrap for the container suites (.ci/run installs and starts them).   Usage: scripts/test.sh [pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1
echo "==> ruff"
.venv/bin/ruff check . || exit 1
echo "==> pytest"
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
