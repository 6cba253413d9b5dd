"""Static checks over the whole repository: ansible-lint (production profile) and syntax checks of the
entry points, for both profiles' inventories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}


def test_ansible_lint_production_profile_passes_on_the_whole_repository():
    proc = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Profile 'production' was required, and it passed" in out


@pytest.mark.parametrize("inventory", ["inventory/local/hosts.yml", "inventory/paper"])
@pytest.mark.parametrize("playbook", ["site.yml", "bench.yml", "teardown.yml"])
def test_entry_points_pass_the_syntax_check(playbook, inventory):
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", inventory, playbook], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_local_inventory_runs_only_local_plays():
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--list-hosts", "site.yml", "bench.yml"], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plays = proc.stdout.split("play #")[1:]
    with_hosts = [p.splitlines()[0] for p in plays if "hosts (1)" in p]
    assert len(with_hosts) == 3, with_hosts  # platform, deploy, bench
    assert all("(local_node)" in p or "(control)" in p for p in with_hosts)
