#!/usr/bin/env bash
# Before starting a Docker engine: drop the network namespaces a killed one left behind.
#
# When dockerd dies without stopping its containers (SIGKILL, a session or machine that ends under it), each
# container's network namespace stays bind-mounted in /run/docker/netns, with its veth still on docker0 and its
# address (172.17.0.2, ...) still answering ARP. The next engine hands the same addresses to new containers, and
# the host's packets for them reach the dead namespace instead: every published port then answers "connection
# reset" and every container looks as if it never became ready. Measured here: a CI run lost 10 tests that way.
#
# Does nothing while a dockerd runs (its namespaces are live). In a namespace no process is in, the links (the
# container's veth end) are deleted first, which takes the host's end off docker0 at once: the kernel frees an
# unmounted namespace only later, from a work queue, so unmounting alone leaves the address answering for a while
# (a CI run saw the veth still there right after). A namespace that still has processes in it keeps its links.
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
# Is any process in the namespace bound at $1? (compares the namespace's inode with every process's)
in_use() {
  local inode link
  inode=$(stat -L -c %i "$1" 2>/dev/null) || return 1
  for link in /proc/[0-9]*/ns/net; do
    [ "$(readlink "$link" 2>/dev/null)" = "net:[$inode]" ] && return 0
  done
  return 1
}
for ns in "$dir"/*; do
  [ -e "$ns" ] || continue
  if grep -q " $ns nsfs " /proc/mounts 2>/dev/null; then
    if ! in_use "$ns"; then
      for link in $(nsenter --net="$ns" ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
        [ "$link" = lo ] || nsenter --net="$ns" ip link del "$link" 2>/dev/null || true
      done
    fi
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || {
      echo "clear-stale-docker-netns: cannot unmount $ns" >&2; continue; }
  fi
  rm -f "$ns" && cleared=$((cleared + 1))
done
if [ "$cleared" -gt 0 ]; then
  echo "clear-stale-docker-netns: removed $cleared network namespace(s) a stopped dockerd left in $dir"
fi
exit 0
