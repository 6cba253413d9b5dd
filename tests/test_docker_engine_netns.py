"""The engine role's clean-up of network namespaces a killed dockerd left behind (roles/docker_engine/files).

Real namespaces: each test makes one the way dockerd does (a bind mount of a new network namespace in a folder, a veth
pair whose host end stays outside), in a temporary folder instead of /run/docker/netns. Root only (CI runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "roles" / "docker_engine" / "files" / "clear-stale-docker-netns.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
                                reason="making network namespaces needs root, unshare and ip")


def mounted(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines())


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def new_namespace_file(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    ns = folder / uuid.uuid4().hex[:12]
    ns.touch()
    return ns


def add_veth(ns: Path) -> str:
    """A veth pair as dockerd makes one: eth0 inside the namespace, the other end on the host; returns the host end."""
    host_end = f"kdevt{uuid.uuid4().hex[:8]}"
    subprocess.run(["nsenter", f"--net={ns}", "ip", "link", "add", "eth0", "type", "veth", "peer", "name", host_end,
                    "netns", "1"], check=True)
    return host_end


def remove(ns: Path, host_end: str | None) -> None:
    if mounted(ns):
        subprocess.run(["umount", "-l", str(ns)], check=False)
    if host_end:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, check=False)


@pytest.fixture
def stale_namespace(tmp_path):
    """A folder like /run/docker/netns holding one dead container's namespace, its veth's host end on the host."""
    folder = tmp_path / "netns"
    ns = new_namespace_file(folder)
    subprocess.run(["unshare", f"--net={ns}", "true"], check=True)  # the namespace outlives its process
    host_end = add_veth(ns)
    try:
        yield folder, ns, host_end
    finally:
        remove(ns, host_end)


def clear(folder: Path, engine: str = "kde-no-such-engine") -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), str(folder)], env={**os.environ, "DOCKERD_PROCESS": engine},
                          capture_output=True, text=True, timeout=30)


def test_a_dead_engines_namespace_and_its_veth_are_removed(stale_namespace):
    folder, ns, host_end = stale_namespace
    assert mounted(ns) and link_exists(host_end)  # the leftover is real before the clean-up
    done = clear(folder)
    assert done.returncode == 0, done.stderr
    assert "removed 1 network namespace" in done.stdout
    assert not ns.exists() and not mounted(ns)
    assert not link_exists(host_end)  # the namespace is gone, and its veth with it: the address no longer answers


def test_nothing_is_touched_while_the_engine_runs(stale_namespace):
    folder, ns, host_end = stale_namespace
    engine = subprocess.Popen(["sleep", "30"])  # stands in for a running dockerd: the check is by process name
    try:
        done = clear(folder, engine="sleep")
    finally:
        engine.kill()
        engine.wait()
    assert done.returncode == 0, done.stderr
    assert "leaving" in done.stdout
    assert ns.exists() and mounted(ns) and link_exists(host_end)


def test_a_missing_folder_is_not_an_error(tmp_path):
    done = clear(tmp_path / "absent")
    assert done.returncode == 0 and done.stdout == ""


def test_a_namespace_a_process_is_still_in_keeps_its_links(tmp_path):
    """Only dead namespaces lose their links: a container process that outlived its engine keeps its network."""
    folder = tmp_path / "netns"
    ns = new_namespace_file(folder)
    ready = tmp_path / "ready"
    holder = subprocess.Popen(["unshare", f"--net={ns}", "sh", "-c", f"touch {ready}; exec sleep 30"])
    host_end = None
    try:
        for _ in range(100):
            if ready.exists():
                break
            time.sleep(0.05)
        host_end = add_veth(ns)
        done = clear(folder)
        assert done.returncode == 0, done.stderr
        assert link_exists(host_end)  # the live namespace's veth was not deleted
    finally:
        holder.kill()
        holder.wait()
        remove(ns, host_end)
