#!/usr/bin/env bash
# Create .venv/ with everything the Ansible control node needs (Ansible, TensorFlow for training,
# pandas/matplotlib for the analysis, the test tools). Safe to rerun: it reinstalls only when
# requirements/*.txt changed.   Usage: scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "==> installing python3 and python3-venv with apt"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Python >= 3.11 is needed (found $(python3 --version)); use Debian 12 or Ubuntu 24.04" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing pinned Python packages into .venv (TensorFlow is ~300 MB; a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements/all.txt
  echo "$want" > "$stamp"
fi
echo "==> .venv ready: $(.venv/bin/ansible --version | head -1), $(.venv/bin/python --version)"
