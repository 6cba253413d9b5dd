"""How fast the machine itself is, apart from the code under test: a fixed piece of CPU work, timed just before each
ab run (issue 14).

On a cloud VM the same two cores do not run at the same speed all day: the host's other tenants and its boost clock
change how much work a core does per second, by 5-10 % between two runs ten minutes apart (measured here: the
model's own prediction time inside the container moved as much as the response times did), and the guest sees no
CPU steal for it. A run that records the speed of a fixed workload beside its response times lets `compare` tell a
slower deployment from a slower machine.

The workload is single-threaded and needs no model: a pure-Python loop (the interpreter, as in the runtime's
request handling) and a NumPy pass over a fixed 8 MiB array (vector units and memory, as in the model's kernels).
Each trial runs both; the result is the median of the trials, so one interrupted trial does not move it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

TRIALS = 5
_LOOP = 200_000
_ARRAY = np.linspace(0.0, 1.0, 1 << 21, dtype=np.float32)  # 8 MiB, the same values on every machine


def _python_work() -> int:
    total = 0
    for i in range(_LOOP):
        total += (i * i) % 7
    return total


def _numpy_work() -> float:
    x = _ARRAY
    for _ in range(4):
        x = np.sqrt(x * 1.0001 + 0.5)
    return float(x[-1])


def trial() -> tuple[float, float]:
    """(python_ms, numpy_ms) of one pass of each workload."""
    t0 = time.perf_counter()
    _python_work()
    t1 = time.perf_counter()
    _numpy_work()
    t2 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000


def measure(trials: int = TRIALS) -> dict[str, Any]:
    """The machine's speed now: ``reference_ms`` (median over trials of one pass of both workloads; lower is a faster
    machine) and its two parts."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    _numpy_work()  # first touch of the pages, not timed
    passes = [trial() for _ in range(trials)]
    return {
        "reference_ms": round(statistics.median(p + n for p, n in passes), 3),
        "python_ms": round(statistics.median(p for p, _ in passes), 3),
        "numpy_ms": round(statistics.median(n for _, n in passes), 3),
        "trials": trials,
    }
