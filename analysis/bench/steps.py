"""One plan item to the step that runs it: the dispatcher `run-all` and bench.yml's loop reach every step through.

It sits above the step modules (runner: ab runs, probes, the paired step, cold starts, autoscaling; nowarmup,
bodylimit, stability, rate), which never import it, so the steps and their dispatcher import one way only.
"""

from __future__ import annotations

from analysis.bench.bodylimit import bodylimit
from analysis.bench.config import EXTRA_REPETITIONS, PAIRED, PlanItem
from analysis.bench.manifest import RunFolder
from analysis.bench.nowarmup import nowarmup
from analysis.bench.rate import rate_search, rate_step
from analysis.bench.runner import StepError, StepResult, autoscale, coldstart, paired, probe, run_one
from analysis.bench.stability import run_extra


def run_item(folder: RunFolder, item: PlanItem) -> StepResult:
    if item.step in ("warmup", "concurrency", "overload"):
        assert item.concurrency is not None and item.repetition is not None
        return run_one(folder, item.step, item.platform, item.concurrency, item.repetition, item.requests)
    if item.step == "nowarmup":  # issue 11
        return nowarmup(folder, item.platform, item.requests)
    if item.step == "bodylimit":  # issue 11
        return bodylimit(folder, item.platform)
    if item.step == EXTRA_REPETITIONS:  # issue 14
        return run_extra(folder)
    if item.step == "rate":  # issue 13
        return rate_step(folder, item.platform, item.capacity_pct, item.rps, item.repetition or 1)
    if item.step == "rate-search":  # issue 24
        return rate_search(folder, item.platform, budget_s=float(folder.config.knobs["rate_search_budget_s"]))
    if item.step == "probe":
        return probe(folder, item.platform, item.requests)
    if item.step == PAIRED:  # issue 24
        return paired(folder)
    if item.step == "autoscale":  # paper profile
        return autoscale(folder, item.platform)
    if item.step == "coldstart":
        assert item.repetition is not None
        return coldstart(folder, item.platform, item.repetition, None if item.restart == "docker" else item.restart)
    raise StepError(f"unknown step {item.step!r}")
