#!/usr/bin/env bash
# Before starting a Docker engine: drop the network namespaces a killed one left behind.
#
# When dockerd dies without stopping its containers (SIGKILL, a session or machine that ends under it), each
# container's network namespace stays bind-mounted in /run/docker/netns, with its veth still on docker0 and its
# address (172.17.0.2, ...) still answering ARP. The next engine hands the same addresses to new containers, and
# the host's packets for them reach the dead namespace instead: every published port then answers "connection
# reset" and every container looks as if it never became ready. Measured here: a CI run lost 10 tests that way.
#
# Does nothing while a dockerd runs (its namespaces are live). A namespace that still has processes in it stays
# alive after its mount is gone; only the dead ones disappear, and their veths with them.
#   Usage: roles/docker_engine/files/clear-stale-docker-netns.sh [DIR]   (DIR defaults to /run/docker/netns)
set -uo pipefail
dir="${1:-/run/docker/netns}"
engine="${DOCKERD_PROCESS:-dockerd}"  # the engine's process name (tests name another)
if pgrep -x "$engine" >/dev/null 2>&1; then
  echo "clear-stale-docker-netns: $engine is running; leaving $dir alone"
  exit 0
fi
[ -d "$dir" ] || exit 0
cleared=0
for ns in "$dir"/*; do
  [ -e "$ns" ] || continue
  if grep -q " $ns nsfs " /proc/mounts 2>/dev/null; then
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || {
      echo "clear-stale-docker-netns: cannot unmount $ns" >&2; continue; }
  fi
  rm -f "$ns" && cleared=$((cleared + 1))
done
if [ "$cleared" -gt 0 ]; then
  echo "clear-stale-docker-netns: removed $cleared network namespace(s) a stopped dockerd left in $dir"
fi
exit 0
