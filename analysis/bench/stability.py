"""The stability step: extra repetitions for the cells whose repetitions disagree, or lack the samples a p99 needs.

Triton perf_analyzer's stability windows are the model: it keeps measuring until consecutive windows agree
within a percentage, up to a cap. Here the windows are a cell's repetitions (one platform at one concurrency).
A cell is *unstable* when the coefficient of variation of its repetitions' medians (served requests only)
exceeds ``stability_cv_pct``; it is *short* when its planned repetitions were meant to give the 662 served
requests a p99 needs (schema.samples_needed) but failed requests left fewer. Either gets one more repetition at
a time, round-robin over the cells in plan order, until it is stable and not short, it has had
``stability_max_extra_repetitions``, or all extra repetitions together have taken ``stability_budget_s``.
A cell that stays unstable is flagged "unstable" by the report, which reads the same repetitions.

The step is one plan item (`extra-repetitions`) right after the planned concurrency runs, so the servers are
still warm and bench.yml's loop over `plan` runs it like any other step. Extra repetitions are ordinary
concurrency runs numbered after the planned ones (r6, r7, ... with five planned); unlike the planned ones they
are not interleaved with the other platform. Its done.json records every decision; resuming an interrupted
step re-decides from the repetitions already done.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.bench import ab, schema
from analysis.bench.config import EXTRA_REPETITIONS
from analysis.bench.manifest import DONE, RunFolder, read_json
from analysis.bench.runner import StepResult, _finish, _prepare, run_one


@dataclass
class Cell:
    platform: str
    concurrency: int
    medians: dict[int, float] = field(default_factory=dict)  # repetition -> median of its served requests
    served: int = 0
    repetitions: set[int] = field(default_factory=set)  # every done repetition, also ones that aborted

    @property
    def cv_pct(self) -> float | None:
        return cv_pct(list(self.medians.values()))


def cv_pct(values: list[float]) -> float | None:
    """Coefficient of variation in % (sample standard deviation over the mean); None below two values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) < 2 or x.mean() <= 0:
        return None
    return float(x.std(ddof=1) / x.mean() * 100.0)


def cells(folder: RunFolder) -> dict[tuple[str, int], Cell]:
    """Every concurrency cell with the medians of its finished repetitions, from raw/ (what finalize reads)."""
    out: dict[tuple[str, int], Cell] = {}
    for done_path in sorted(folder.raw.glob(f"concurrency-*/{DONE}")):
        done = read_json(done_path)
        if done.get("step") != "ab" or done.get("experiment") != "concurrency":
            continue
        key = (done["platform"], int(done["concurrency"]))
        cell = out.setdefault(key, Cell(*key))
        rep = int(done["repetition"])
        cell.repetitions.add(rep)
        if done.get("outcome") != "ok":
            continue
        try:
            result = ab.parse_run_files(done_path.parent, done.get("ab", {}).get("argv", []),
                                        done.get("ab", {}).get("returncode", 0))
        except ab.AbParseError:
            continue
        flags = ab.served_flags(result.requests, result.classified)
        served = [r.total_ms for r, flag in zip(result.requests, flags, strict=True) if flag]
        cell.served += len(served)
        if len(served) >= schema.samples_needed(50):
            cell.medians[rep] = float(np.median(served))
    return out


def why_more(cell: Cell, knobs: dict[str, Any]) -> str | None:
    """Why this cell needs another repetition, or None (stable and with its samples, or at its cap)."""
    planned = knobs["repetitions"]
    extra = sum(1 for r in cell.repetitions if r > planned)
    if extra >= knobs["stability_max_extra_repetitions"]:
        return None
    cv = cell.cv_pct
    if cv is not None and cv > knobs["stability_cv_pct"]:
        return f"its repetitions' medians vary by {cv:.1f} % (CV; threshold {knobs['stability_cv_pct']:g} %)"
    needed = schema.samples_needed(99)
    if planned * knobs["requests_per_run"] >= needed > cell.served:
        return f"{cell.served} served requests, a p99 needs {needed}"
    return None


def run_extra(folder: RunFolder) -> StepResult:
    """Decide and run the extra repetitions; one done.json records what was added and why."""
    knobs = folder.config.knobs
    out = _prepare(folder, EXTRA_REPETITIONS)
    if out is None:
        return StepResult(EXTRA_REPETITIONS, True, f"{EXTRA_REPETITIONS}: already done")
    bounded = {n for n, p in folder.config.platforms.items() if p.max_concurrency is not None}
    order = [(i.platform, i.concurrency) for i in folder.plan()
             if i.step == "concurrency" and i.platform not in bounded]
    order = list(dict.fromkeys(order))  # plan order, each cell once; a bounded platform gets no extra repetitions
    budget = float(knobs["stability_budget_s"])
    started = time.monotonic()
    added: list[dict[str, Any]] = []
    lines: list[str] = []
    stopped = "stable"
    while True:
        state = cells(folder)
        todo = [(key, reason) for key in order if key in state and (reason := why_more(state[key], knobs))]
        if not todo:
            if any(why_more_uncapped(state[key], knobs) for key in order if key in state):
                stopped = "cap"
            break
        if time.monotonic() - started >= budget:
            stopped = "budget"
            break
        for (platform, conc), reason in todo:
            if time.monotonic() - started >= budget:
                break
            rep = max(state[(platform, conc)].repetitions) + 1
            result = run_one(folder, "concurrency", platform, conc, rep)
            added.append({"run_key": result.run_key, "platform": platform, "concurrency": conc, "repetition": rep,
                          "reason": reason})
            lines.append(f"  extra {result.line.split('] ', 1)[-1]} (because {reason})")
    final = cells(folder)
    summary = []
    for key in order:
        if key not in final:
            continue
        cell = final[key]
        cv = cell.cv_pct
        summary.append({"platform": key[0], "concurrency": key[1], "repetitions": len(cell.medians),
                        "extra": sum(1 for r in cell.repetitions if r > knobs["repetitions"]),
                        "cv_pct": None if cv is None else round(cv, 2), "served": cell.served,
                        "stable": cv is None or cv <= knobs["stability_cv_pct"]})
    unstable = [f"{c['platform']} c={c['concurrency']} ({c['cv_pct']:.1f} %)" for c in summary if not c["stable"]]
    spent = round(time.monotonic() - started, 1)
    _finish(folder, out, {
        "run_key": EXTRA_REPETITIONS, "step": EXTRA_REPETITIONS, "platform": None, "outcome": "ok", "error": None,
        "threshold_cv_pct": knobs["stability_cv_pct"],
        "max_extra_repetitions": knobs["stability_max_extra_repetitions"], "budget_s": budget, "spent_s": spent,
        "stopped": stopped, "added": added, "cells": summary,
    })
    head = (f"{EXTRA_REPETITIONS}: {len(added)} extra repetition(s) in {spent:.0f} s"
            + (f"; still unstable: {', '.join(unstable)}" if unstable else "; every cell stable")
            + (f" (stopped by the {budget:g} s budget)" if stopped == "budget" else ""))
    return StepResult(EXTRA_REPETITIONS, False, "\n".join([head, *lines]))


def why_more_uncapped(cell: Cell, knobs: dict[str, Any]) -> bool:
    """Would the cell still want more repetitions if it had no cap?"""
    return why_more(cell, {**knobs, "stability_max_extra_repetitions": math.inf}) is not None
