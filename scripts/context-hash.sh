#!/usr/bin/env bash
# Print a short hash of everything an image is built from (files under the given paths, plus any
# extra strings such as the base image id), so an unchanged image is never rebuilt and a changed one
# always is.   scripts/context-hash.sh [--extra STRING]... PATH...
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
while [ "${1:-}" = "--extra" ]; do extra="$extra $2"; shift 2; done
{
  echo "$extra"
  find "$@" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-12
