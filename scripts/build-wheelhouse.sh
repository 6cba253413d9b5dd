#!/usr/bin/env bash
# Download the serving images' dependencies into build/wheelhouse/ once, so image builds need no network
# inside `docker build` and are reproducible.   scripts/build-wheelhouse.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-.venv/bin/python}"
mkdir -p build/wheelhouse
arch=$(uname -m)
# The images run Python 3.11 (python:3.11-slim or Debian 12), whatever Python the control node has.
"$python" -m pip download --quiet --only-binary=:all: --python-version 3.11 --implementation cp \
  --abi cp311 --abi abi3 --abi none --platform "manylinux2014_$arch" --platform "manylinux_2_17_$arch" \
  --platform "manylinux_2_27_$arch" --platform "manylinux_2_28_$arch" --platform any \
  -r requirements/serving.txt -d build/wheelhouse
echo "wheelhouse: $(ls build/wheelhouse | wc -l) files, $(du -sh build/wheelhouse | cut -f1)"
