"""The machine-speed probe (analysis/bench/reference.py) on this machine: it reports a time for a fixed workload,
and that time grows when another process shares its CPU, which is what lets `compare` tell a slower machine from a
slower deployment. Real processes, pinned with sched_setaffinity; bounded to a few seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from analysis.bench import reference

ROOT = Path(__file__).resolve().parent.parent
PROBE = textwrap.dedent("""
    import os, statistics
    os.sched_setaffinity(0, {0})
    from analysis.bench import reference
    print(statistics.median(reference.measure()["reference_ms"] for _ in range(5)))
""")


def probe_on_cpu0() -> float:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    return float(done.stdout)


def test_measure_reports_the_workload_and_its_parts() -> None:
    m = reference.measure(trials=3)
    assert m["trials"] == 3 and m["python_ms"] > 0 and m["numpy_ms"] > 0
    assert m["reference_ms"] >= max(m["python_ms"], m["numpy_ms"])
    with pytest.raises(ValueError, match="at least 1"):
        reference.measure(trials=0)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_a_competitor_on_the_same_cpu_makes_the_machine_read_slower() -> None:
    alone = probe_on_cpu0()
    hog = subprocess.Popen([sys.executable, "-c", "import os\nos.sched_setaffinity(0, {0})\nwhile True: pass"])
    try:
        shared = probe_on_cpu0()
    finally:
        hog.kill()
        hog.wait()
    # sharing one CPU halves the probe's share of it; this VM's own speed swings by up to ~40 %
    assert shared > 1.4 * alone, (alone, shared)
