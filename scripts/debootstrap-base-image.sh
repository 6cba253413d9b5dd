#!/usr/bin/env bash
# Build a local Python 3.11 base image with debootstrap, for hosts that cannot reach a container
# registry (air-gapped sites, CI). The result replaces python:3.11-slim as BASE_IMAGE.
#
#   scripts/debootstrap-base-image.sh [IMAGE_NAME] [SUITE] [MIRROR]
#
# Needs root, debootstrap and a running Docker engine. Idempotent: does nothing when the image exists.
set -euo pipefail
image="${1:-kubeless-dl-eval/base:bookworm-py311}"
suite="${2:-bookworm}"
mirror="${3:-http://deb.debian.org/debian}"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image already present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
rootfs=$(mktemp -d /tmp/kde-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $suite from $mirror into $rootfs (about a minute)..."
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
echo "built base image $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
