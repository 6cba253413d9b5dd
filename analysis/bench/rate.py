"""The open-loop experiment (`rate`): offered request rates per platform, each a fraction of the capacity the
closed-loop sweep measured in the same run (or an explicit list of rates), sent by analysis/bench/openloop.py.

One plan item per platform and rate, after the closed-loop sweep and the probe: the step reads the capacity
from the run folder's finished concurrency steps when it runs (the best served req/s among the platform's
concurrency cells, each cell the median of its repetitions), so a resumed run and a fresh one use the same rule.
Each step writes raw/rate-<platform>-<label>/: openloop.csv (one row per scheduled request), openloop.json (the
run's parameters and HdrHistograms), /metrics before and after, the server's log lines, CPU and memory samples,
and done.json last. `finalize` turns them into rate_runs.csv and rate_requests.csv (analysis/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from analysis.bench import ab, openloop, schema, system
from analysis.bench.arguments import print_step, run_dir_parser
from analysis.bench.config import PlatformConfig, rate_run_key, rate_search_key
from analysis.bench.logs import prediction_records
from analysis.bench.manifest import DONE, RunFolder, read_json, write_json
from analysis.bench.metrics import server_mean_ms
from analysis.bench.resources import RESOURCES_FILE, cpu_mean, max_or_none, resource_rows, round_or_none
from analysis.bench.runner import (
    METRICS_AFTER,
    METRICS_BEFORE,
    StepError,
    StepResult,
    _epoch_utc,
    _finish,
    _observers,
    _platform,
    _position,
    _prepare,
    _scrape,
    ab_command,
)

EXPERIMENT = "rate"


# ------------------------------------------------------------------------------------------ capacity
def closed_loop_capacity(folder: RunFolder, platform: str) -> dict[str, Any] | None:
    """The platform's capacity as the closed-loop sweep of this run measured it: per concurrency cell the median
    served req/s of its finished repetitions (served / ab's time taken, as runs.csv), and the best cell. None when
    no concurrency run of the platform finished normally."""
    cells: dict[int, list[float]] = {}
    for done_path in sorted(folder.raw.glob(f"concurrency-{platform}-c*-r*/{DONE}")):
        done = read_json(done_path)
        if (done.get("step") != "ab" or done.get("experiment") != "concurrency" or done.get("platform") != platform
                or done.get("outcome") != "ok"):
            continue
        info = done.get("ab", {})
        try:
            result = ab.parse_run_files(done_path.parent, info.get("argv", []), info.get("returncode", 0),
                                        info.get("wall_s"))
        except ab.AbParseError:
            continue
        s, c = result.summary, result.classified
        if s is None or c is None or not s.time_taken_s:
            continue
        cells.setdefault(int(done["concurrency"]), []).append(c.served / s.time_taken_s)
    if not cells:
        return None
    medians = {conc: float(np.median(values)) for conc, values in sorted(cells.items())}
    best = max(medians, key=lambda conc: medians[conc])
    return {"capacity_rps": round(medians[best], 4), "concurrency": best,
            "cells": {str(conc): {"served_per_s_median": round(m, 4), "repetitions": len(cells[conc])}
                      for conc, m in medians.items()}}


def _target(folder: RunFolder, platform: PlatformConfig) -> openloop.Target:
    """What every open-loop request of the run is: a POST of the run's payload to the platform."""
    knobs = folder.config.knobs
    return openloop.Target(url=platform.url, method="POST", body=folder.payload_path.read_bytes(),
                           content_type="image/jpeg", timeout_s=float(knobs["request_timeout_s"]),
                           keepalive=knobs["keepalive"])


def _pin_generator(folder: RunFolder) -> tuple[Any, dict[str, Any]]:
    """Pin this process to the load generator's CPUs, as for ab (issue 14: CPUs apart from pinned servers);
    returns system.where's (serving, placement)."""
    serving, placement = system.where(folder.config)
    cpus = system.parse_cpu_list(placement["load_generator_cpus"])
    if cpus:
        os.sched_setaffinity(0, cpus)
    return serving, placement


def _observe(folder: RunFolder, platform: PlatformConfig, out: Path, target: openloop.Target,
             offsets: np.ndarray) -> tuple[openloop.OpenLoopRun, dict[str, Any]]:
    """The open-loop run with what run-one records around ab: /metrics before and after, CPU and memory during,
    and the server's log lines."""
    knobs = folder.config.knobs
    logs, metrics_before_error, sampler, resources_info = _observers(folder, platform, out)
    serving, placement = _pin_generator(folder)
    mark = logs.mark()
    if sampler is not None:
        sampler.start()
    watch = system.Watch(out, knobs["busy_cpu_pct"], serving, placement).start()
    try:
        result = openloop.run(target, offsets, knobs["rate_max_outstanding"], knobs["rate_realtime"])
    finally:
        system_info = watch.stop()
        if sampler is not None:
            resources_info = sampler.stop()
    metrics_after_error = _scrape(platform, out, METRICS_AFTER, knobs["request_timeout_s"])
    time.sleep(knobs["log_settle_s"])
    logs_info = logs.collect(mark, out)
    return result, {"metrics": {"url": platform.metrics_url, "before_error": metrics_before_error,
                                "after_error": metrics_after_error},
                    "logs": logs_info, "resources": resources_info, "system": system_info}


# ---------------------------------------------------------------------------------------------- step
def rate_step(folder: RunFolder, platform_name: str, capacity_pct: float | None = None,
              rps: float | None = None, repetition: int = 1) -> StepResult:
    """One open-loop run of `rate_duration_s` at capacity_pct % of the platform's closed-loop capacity, or at
    `rps` req/s, POSTing the run's payload; a step that could not find a capacity records that and returns.
    `repetition` > 1 is a further run of the same rate (its run key ends in -r<N>)."""
    if (capacity_pct is None) == (rps is None):
        raise StepError("give exactly one of --capacity-pct and --rps")
    if (capacity_pct is not None and not capacity_pct > 0) or (rps is not None and not rps > 0):
        raise StepError(f"the offered rate must be > 0, got {capacity_pct if rps is None else rps}")
    if repetition < 1:
        raise StepError(f"--repetition must be at least 1, got {repetition}")
    _platform(folder, platform_name)
    run_key = rate_run_key(platform_name, capacity_pct, rps, repetition)
    position = _position(folder, run_key)
    if folder.is_done(run_key):
        return StepResult(run_key, True, f"{position} {run_key}: already done")
    capacity = closed_loop_capacity(folder, platform_name) if capacity_pct is not None else None
    if capacity_pct is not None and (capacity is None or not capacity["capacity_rps"] > 0):
        why = ("no concurrency run of this platform finished, so there is no capacity to take a fraction of"
               if capacity is None else "the closed-loop sweep served nothing (capacity 0 req/s)")
        out = _prepare(folder, run_key)
        assert out is not None
        now = time.time()
        _finish(folder, out, {"run_key": run_key, "step": "rate", "experiment": EXPERIMENT, "platform": platform_name,
                              "capacity_pct": capacity_pct, "capacity": capacity, "repetition": repetition,
                              "offered_rps": None, "started_utc": _epoch_utc(now), "finished_utc": _epoch_utc(now),
                              "started_epoch": now, "finished_epoch": now, "outcome": "no_capacity", "error": why})
        return StepResult(run_key, False, f"{position} {run_key}: SKIPPED: {why}")
    offered = rps if rps is not None else capacity_pct / 100.0 * capacity["capacity_rps"]
    stats = open_loop_run(folder, platform_name, run_key, offered, float(folder.config.knobs["rate_duration_s"]),
                          capacity_pct=capacity_pct, capacity=capacity, repetition=repetition)
    what = (f"{capacity_pct:g} % of {capacity['capacity_rps']:.1f} req/s (closed loop, c={capacity['concurrency']})"
            if capacity is not None else f"{rps:g} req/s")
    return StepResult(run_key, False, f"{position} {run_key}: {what}: {stats['line']}")


def open_loop_run(folder: RunFolder, platform_name: str, run_key: str, offered: float, duration: float,
                  capacity_pct: float | None = None, capacity: dict[str, Any] | None = None, repetition: int = 1,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One open-loop run written as raw/<run_key>/ with done.json last: the rate step's, and each probe of the
    capacity search. Returns the run's statistics (openloop.run_stats) plus the progress line (`line`); `extra`
    goes into done.json and openloop.json (the search's probe number)."""
    platform = _platform(folder, platform_name)
    knobs = folder.config.knobs
    out = _prepare(folder, run_key)
    if out is None:
        raise StepError(f"{run_key} is already done")
    target = _target(folder, platform)
    try:
        offsets = openloop.schedule(knobs["rate_arrivals"], offered, duration, seed=knobs["rate_seed"])
        result, observed = _observe(folder, platform, out, target, offsets)
    except openloop.OpenLoopError as exc:
        raise StepError(str(exc)) from None
    finished = time.time()
    rows = result.rows()
    openloop.write_rows(out / openloop.RAW_CSV, rows)
    stats = openloop.run_stats(rows, duration, float(knobs["rate_max_lag_ms"]))
    params = {"arrivals": knobs["rate_arrivals"], "seed": knobs["rate_seed"], "offered_rps": round(offered, 4),
              "duration_s": duration, "max_lag_ms": float(knobs["rate_max_lag_ms"]), "capacity_pct": capacity_pct,
              "capacity": capacity, "repetition": repetition, **(extra or {})}
    write_json(out / openloop.RAW_JSON, openloop.run_record(result, rows, **params))
    _finish(folder, out, {
        "run_key": run_key, "step": "rate", "experiment": EXPERIMENT, "platform": platform_name,
        "capacity_pct": capacity_pct, "capacity": capacity, "repetition": repetition, **(extra or {}),
        "offered_rps": round(offered, 4), "started_utc": _epoch_utc(result.started_epoch),
        "finished_utc": _epoch_utc(finished), "started_epoch": result.started_epoch, "finished_epoch": finished,
        "outcome": "ok", "error": None, **observed, "summary": stats,
    })
    busy = observed["system"].get("busy") if isinstance(observed.get("system"), dict) else None
    line = (openloop.summary_line(stats, offered, knobs["rate_arrivals"])
            + (" — BUSY: something else competed for the CPUs" if busy else ""))
    return {**stats, "line": line, "missed": missed_objective(rows, float(knobs["slo_p99_ms"])),
            "started_utc": _epoch_utc(result.started_epoch)}


def missed_objective(rows: list[dict[str, Any]], slo_ms: float) -> int:
    """Scheduled requests that missed the latency objective: served slower than `slo_ms`, failed, or dropped
    (schema.OBJECTIVE_SHARE: one share for all three)."""
    return sum(1 for r in rows if r["outcome"] != "served" or r["latency_ms"] > slo_ms)


# ------------------------------------------------------------------------------------------ calibration
def saturation_throughput(folder: RunFolder, platform_name: str, concurrency: int, seconds: float,
                          capacity_rps: float, out_dir: Path) -> dict[str, Any]:
    """The platform's closed-loop throughput now (issue 24: the capacity search's calibration, run just before each
    of its probes): ab at `concurrency`, as the concurrency sweep ran it, for about `seconds` (`seconds` times
    `capacity_rps` requests, at least `concurrency`), pinned where the sweep's ab runs. served_per_s is ab's served
    requests over its time taken, the sweep's own measure (closed_loop_capacity), so a share of it and a share of
    the sweep's capacity are shares of the same thing. ab's files stay in `out_dir`."""
    if concurrency < 1 or not seconds > 0 or not capacity_rps > 0:
        raise StepError(f"the calibration needs concurrency >= 1, seconds > 0 and a capacity > 0, got {concurrency}, "
                        f"{seconds} and {capacity_rps}")
    platform = _platform(folder, platform_name)
    requests = max(concurrency, round(seconds * capacity_rps))
    command = ab_command(folder, platform.url, requests, concurrency)
    _, placement = system.where(folder.config, platform)
    command = replace(command, cpus=placement["load_generator_cpus"])
    try:
        result = ab.run_ab(command, out_dir, timeout_s=max(30.0, 10 * seconds), check=False)
    except ab.AbError as exc:
        raise StepError(f"the calibration's ab run failed: {exc}") from None
    summary, classes = result.summary, result.classified
    served = classes.served if classes is not None else 0
    taken = summary.time_taken_s if summary is not None and summary.time_taken_s else None
    return {"served_per_s": round(served / taken, 4) if taken else 0.0, "served": served,
            "failed": requests - served, "sent": requests, "time_taken_s": taken, "concurrency": concurrency,
            "seconds": seconds, "error": result.error}


# ------------------------------------------------------------------------------------ capacity search
SEARCH_JSON = "search.json"
SEARCH_CSV = "search.csv"
SEARCH_LEVEL = 0.95  # the confidence of each probe's Clopper-Pearson interval, as the report's default level
DRAIN_GUESS_S = 3.0  # what a probe takes after its last arrival, for the time budget (measured, not assumed, after)


def _free_repetition(folder: RunFolder, platform: str, rps: float) -> int:
    rep = 1
    while folder.run_dir(rate_run_key(platform, None, rps, rep)).exists():
        rep += 1
    return rep


def grid_bracket(levels: list[tuple[float, bool]]) -> tuple[float | None, float | None]:
    """Where this run's grid (grid_levels) put the capacity at the objective: the highest offered rate that met it
    below the first that missed it, and that first miss; None for a side the grid did not show (no grid runs:
    (None, None)). The grid's runs are short, so this only starts the search: its probes decide."""
    first_miss = next((rate for rate, met in levels if not met), None)
    met = [rate for rate, ok in levels if ok and (first_miss is None or rate < first_miss)]
    return (round(met[-1], 2) if met else None), (round(first_miss, 2) if first_miss is not None else None)


def grid_levels(folder: RunFolder, platform: str) -> list[tuple[float, bool]]:
    """(offered rate, whether its grid runs together met the objective), ascending, for every rate_capacity_pct
    level with a finished, valid run (its finished, valid rate runs at that level, repetitions pooled)."""
    knobs = folder.config.knobs
    slo = float(knobs["slo_p99_ms"])
    levels: list[tuple[float, bool]] = []
    for pct in sorted(knobs["rate_capacity_pct"]):
        missed = scheduled = 0
        offered = None
        for rep in range(1, int(knobs["rate_repetitions"]) + 1):
            run_dir = folder.run_dir(rate_run_key(platform, pct, None, rep))
            try:
                done = read_json(run_dir / DONE)
                if done.get("outcome") != "ok" or not (done.get("summary") or {}).get("valid"):
                    continue
                rows = openloop.read_rows(run_dir / openloop.RAW_CSV)
            except (OSError, ValueError, KeyError):
                continue
            offered = float(done["offered_rps"])
            missed += missed_objective(rows, slo)
            scheduled += len(rows)
        if offered is not None and scheduled:
            levels.append((offered, missed / scheduled <= schema.OBJECTIVE_SHARE))
    return levels


def _search_start(folder: RunFolder, platform_name: str, low_rps: float | None, high_rps: float | None
                  ) -> tuple[dict[str, Any] | None, float, float, list[float], list[float], str]:
    """rate_search's start in req/s: (the closed-loop capacity or None, low, high, floors, ceilings, where the
    bracket came from). `floors` and `ceilings`: where a disproved end moves out to, nearest first."""
    if low_rps is not None and high_rps is not None:
        return None, low_rps, high_rps, [], [], "given"
    knobs = folder.config.knobs
    capacity = closed_loop_capacity(folder, platform_name)
    if capacity is None or not capacity["capacity_rps"] > 0:
        raise StepError(f"no closed-loop capacity of {platform_name} in {folder.path} to take "
                        f"rate_search_bracket_pct of: run its concurrency steps first, or give --low-rps and "
                        f"--high-rps")
    pct = knobs["rate_search_bracket_pct"]
    floor, ceiling = (round(pct[0] / 100 * capacity["capacity_rps"], 2),
                      round(pct[1] / 100 * capacity["capacity_rps"], 2))
    levels = grid_levels(folder, platform_name) if low_rps is None and high_rps is None else []
    grid_low, grid_high = grid_bracket(levels)
    start = "grid" if grid_low is not None or grid_high is not None else "rate_search_bracket_pct"
    low_rps = low_rps if low_rps is not None else grid_low if grid_low is not None and grid_low > floor \
        else floor
    high_rps = high_rps if high_rps is not None else grid_high if grid_high is not None \
        and low_rps < grid_high < ceiling else ceiling
    # a disproved end moves out to the grid's next level first (a short step: the grid's short runs are
    # usually only just wrong), then to rate_search_bracket_pct (25 % of capacity is a long probe)
    rates = [round(rate, 2) for rate, _ in levels] if start == "grid" else []
    floors = sorted({r for r in rates if floor < r < low_rps}, reverse=True)[:1] + \
        ([floor] if floor < low_rps else [])
    ceilings = sorted({r for r in rates if high_rps < r < ceiling})[:1] + ([ceiling] if ceiling > high_rps else [])
    return capacity, low_rps, high_rps, floors, ceilings, start


def rate_search(folder: RunFolder, platform_name: str, low_rps: float | None = None, high_rps: float | None = None,
                budget_s: float | None = None, level: float = SEARCH_LEVEL) -> StepResult:
    """Capacity at the objective by bisection on the offered rate (issue 24).

    Starts from the bracket [low, high] given in req/s; else from where this run's grid put the capacity
    (grid_bracket), an end the probes disprove moving out to the grid's next level, then to rate_search_bracket_pct
    of the closed-loop capacity; else from rate_search_bracket_pct itself. Each probe is an ordinary rate run
    (raw/rate-<platform>-<R>rps[-r<N>]/), at least rate_duration_s long and long enough to hold
    schema.requests_to_prove(level) scheduled requests, so that "met surely" is reachable.
    A probe meets the objective when the share of its scheduled requests that were slow, failed or dropped is
    <= 1 %. The bracket's ends are probed first (a failing low end or a passing high end stops the search with a
    one-sided bracket); then the midpoint replaces the end it agrees with until the bracket is within
    rate_search_tolerance_pct of its low end, rate_search_max_probes probes are spent (one kept back), or
    `budget_s` would be overrun. The final low end is then run again: if the two runs together miss the objective
    it becomes the high end. A probe whose generator fell behind is run once more (budgets allowing); a second
    invalid run stops the search (its bracket is what was proven).

    Calibrated (no bracket given and rate_search_calibrate_s > 0): the search's points are % of the platform's
    throughput measured just before each probe (saturation_throughput, at the closed-loop sweep's best
    concurrency), so the machine's speed during the search, which moves by 10-20 % within minutes on a shared VM,
    moves every probe's rate with it. The bracket is reported in that % (low_pct, high_pct), in req/s as that share
    of the run's closed-loop capacity (low_rps, high_rps: the sweep's repetitions spread over the run), and as the
    rates the probes actually offered (measured_low_rps, measured_high_rps).
    Writes raw/rate-search-<platform>/search.json and search.csv (the probes) and done.json last."""
    _platform(folder, platform_name)
    run_key = rate_search_key(platform_name)
    position = _position(folder, run_key)
    if folder.is_done(run_key):
        return StepResult(run_key, True, f"{position} {run_key}: already done")
    knobs = folder.config.knobs
    calibrated = low_rps is None and high_rps is None and float(knobs["rate_search_calibrate_s"]) > 0
    capacity, low_rps, high_rps, floors, ceilings, start = _search_start(folder, platform_name, low_rps, high_rps)
    if not 0 < low_rps < high_rps:
        raise StepError(f"the search needs 0 < low < high req/s, got [{low_rps}, {high_rps}]")
    calibration = None
    low, high = round(low_rps, 2), round(high_rps, 2)
    if calibrated:
        assert capacity is not None
        cap = capacity["capacity_rps"]

        def to_pct(rps: float) -> float:
            return round(100 * rps / cap, 2)

        calibration = {"concurrency": int(capacity["concurrency"]), "seconds": float(knobs["rate_search_calibrate_s"]),
                       "capacity_rps": cap}
        low, high = to_pct(low), to_pct(high)
        floors, ceilings = [to_pct(f) for f in floors], [to_pct(c) for c in ceilings]
    out = _prepare(folder, run_key)
    assert out is not None
    search = _Search(folder, platform_name, run_key, level, budget_s, calibration)
    start_low, start_high = low, high
    low, high, reason = search.bisect(low, high, floors, ceilings)
    low, high, reason = search.repeat_boundary(low, high, reason, floors)  # the floors bisect left unused
    finished = time.time()
    width = 100 * (high - low) / low if low is not None and high is not None else None
    result = {"platform": platform_name, **search.bracket(low, high), "width_pct": width,
              "converged": width is not None and width <= search.tolerance, "boundary_repeated": search.repeated,
              "boundary_confirmed": search.confirmed, "stop_reason": reason, "level": level,
              "objective_share": schema.OBJECTIVE_SHARE, "slo_p99_ms": float(knobs["slo_p99_ms"]),
              "requests_per_probe": search.need, "start": start, "unit": search.unit,
              "start_low_rps": round(low_rps, 2), "start_high_rps": round(high_rps, 2),
              "start_low": start_low, "start_high": start_high, "tolerance_pct": search.tolerance,
              "max_probes": search.max_probes, "budget_s": budget_s, "capacity": capacity,
              "calibration": calibration, "probes": search.probes,
              "started_utc": _epoch_utc(search.started), "finished_utc": _epoch_utc(finished)}
    write_json(out / SEARCH_JSON, result)
    _write_csv(out / SEARCH_CSV, search.probes, list(search.probes[0]) if search.probes else ["probe"])
    failed = not search.probes or "invalid" in reason
    _finish(folder, out, {"run_key": run_key, "step": "rate-search", "platform": platform_name,
                          "started_utc": _epoch_utc(search.started), "finished_utc": _epoch_utc(finished),
                          "outcome": "failed" if failed else "ok", "error": reason if failed else None,
                          **{k: result[k] for k in ("low_rps", "high_rps", "low_pct", "high_pct", "width_pct",
                                                    "converged", "boundary_confirmed", "stop_reason")}})
    boundary = "confirmed" if search.confirmed else "not confirmed" if search.repeated else "not repeated"
    shares = (f" ({bracket_text(low, high, '%')} of the throughput measured before each probe, as a share of the "
              f"closed-loop {capacity['capacity_rps']:g} req/s)" if calibration and capacity else "")
    return StepResult(run_key, False, f"{position} {run_key}: capacity at the objective in "
                      f"{bracket_text(result['low_rps'], result['high_rps'])} req/s{shares} after "
                      f"{len(search.probes)} probes in {finished - search.started:.0f} s ({reason}; "
                      f"boundary {boundary})")


class _Search:
    """The probes of one capacity search and the rules that judge them (rate_search). Its points are offered rates
    in req/s, or, calibrated, % of the throughput saturation_throughput measured just before each probe."""

    def __init__(self, folder: RunFolder, platform: str, run_key: str, level: float, budget_s: float | None,
                 calibration: dict[str, Any] | None = None) -> None:
        knobs = folder.config.knobs
        self.folder, self.platform, self.run_key, self.level, self.budget_s = folder, platform, run_key, level, budget_s
        self.need = schema.requests_to_prove(level)
        self.tolerance = float(knobs["rate_search_tolerance_pct"])
        self.max_probes = int(knobs["rate_search_max_probes"])
        self.min_duration = float(knobs["rate_duration_s"])
        self.arrivals, self.seed = knobs["rate_arrivals"], knobs["rate_seed"]
        self.calibration = calibration
        self.unit = "%" if calibration else "req/s"
        self.throughput = calibration["capacity_rps"] if calibration else None  # the last calibration's
        self.started = time.time()
        self.probes: list[dict[str, Any]] = []
        self.repeated = self.confirmed = False

    def rate(self, point: float) -> float:
        """The offered rate of a point: itself, or its share of the last measured throughput."""
        return point if self.throughput is None else round(point / 100 * self.throughput, 2)

    def at(self, row: dict[str, Any]) -> float:
        """The point a probe was made at."""
        return row["pct"] if self.calibration else row["offered_rps"]

    def duration(self, rate: float) -> float:
        """At least rate_duration_s, and long enough that the schedule itself (seeded: the same one the probe will
        send) holds `need` requests: need / rate alone falls short whenever the Poisson draw is below its mean."""
        duration = max(self.min_duration, self.need / rate)
        while len(openloop.schedule(self.arrivals, rate, duration, seed=self.seed)) < self.need:
            duration += 1.0 / rate
        return duration

    def fits(self, point: float) -> bool:
        calibrating = self.calibration["seconds"] + 1.0 if self.calibration else 0.0  # + its drain and set-up
        return (self.budget_s is None or time.time() - self.started + calibrating
                + self.duration(self.rate(point)) + DRAIN_GUESS_S <= self.budget_s)

    def meets(self, point: float) -> bool:
        """The valid runs at `point` together: at most OBJECTIVE_SHARE of their scheduled requests missed it."""
        mine = [q for q in self.probes if self.at(q) == point and q["valid"]]
        scheduled = sum(q["scheduled"] for q in mine)
        return scheduled > 0 and sum(q["missed"] for q in mine) / scheduled <= schema.OBJECTIVE_SHARE

    def bracket(self, low: float | None, high: float | None) -> dict[str, Any]:
        """search.json's bracket: low_rps and high_rps, and calibrated also low_pct and high_pct (low_rps: that
        share of the closed-loop capacity), measured_low_rps and measured_high_rps (the mean rate the valid probes
        at each end offered) and the calibrations' median throughput."""
        if not self.calibration:
            return {"low_rps": low, "high_rps": high, "low_pct": None, "high_pct": None, "measured_low_rps": None,
                    "measured_high_rps": None, "calibration_rps_median": None}

        def measured(point: float | None) -> float | None:
            rates = [q["offered_rps"] for q in self.probes if q["valid"] and point is not None and q["pct"] == point]
            return round(float(np.mean(rates)), 2) if rates else None

        cap = self.calibration["capacity_rps"]
        through = [q["calibration_rps"] for q in self.probes if q.get("calibration_rps")]
        return {"low_rps": round(low / 100 * cap, 2) if low is not None else None,
                "high_rps": round(high / 100 * cap, 2) if high is not None else None, "low_pct": low,
                "high_pct": high, "measured_low_rps": measured(low), "measured_high_rps": measured(high),
                "calibration_rps_median": round(float(np.median(through)), 4) if through else None}

    def probe(self, point: float, why: str) -> dict[str, Any]:
        number = len(self.probes) + 1
        row: dict[str, Any] = {"probe": number, "run_key": None, "why": why, "pct": None, "calibration_rps": None,
                               "offered_rps": None}
        if self.calibration:
            cal = saturation_throughput(self.folder, self.platform, self.calibration["concurrency"],
                                        self.calibration["seconds"], self.throughput,
                                        self.folder.run_dir(self.run_key) / f"calibration-{number}")
            row.update(pct=point, calibration_rps=cal["served_per_s"])
            if not cal["served_per_s"] > 0:
                row.update(duration_s=0.0, scheduled=0, served=0, errors=0, dropped=0, missed=0, missed_share=None,
                           ci_low=None, ci_high=None, valid=False, meets=False, p99_ms=None, started_utc=None,
                           invalid_reason=f"the calibration served nothing ({cal['failed']} of {cal['sent']} failed)")
                self.probes.append(row)
                print(f"  probe {number} ({why}) {point:g} %: INVALID ({row['invalid_reason']})", flush=True)
                return row
            self.throughput = cal["served_per_s"]
        rate = self.rate(point)
        duration = self.duration(rate)
        rep = _free_repetition(self.folder, self.platform, rate)
        key = rate_run_key(self.platform, None, rate, rep)
        stats = open_loop_run(self.folder, self.platform, key, rate, duration, repetition=rep,
                              extra={"search": {"run_key": self.run_key, "probe": number, "why": why,
                                                "pct": row["pct"], "calibration_rps": row["calibration_rps"]}})
        share, ci_low, ci_high = schema.share_ci(stats["missed"], stats["scheduled"], self.level)
        row.update({"run_key": key, "offered_rps": rate, "duration_s": round(duration, 3),
                    "scheduled": stats["scheduled"], "served": stats["served"], "errors": stats["errors"],
                    "dropped": stats["dropped"], "missed": stats["missed"], "missed_share": round(share, 6),
                    "ci_low": round(ci_low, 6), "ci_high": round(ci_high, 6), "valid": bool(stats["valid"]),
                    "meets": bool(stats["valid"]) and share <= schema.OBJECTIVE_SHARE, "p99_ms": stats.get("p99_ms"),
                    "started_utc": stats["started_utc"],
                    "invalid_reason": None if stats["valid"] else "the generator fell behind"})
        self.probes.append(row)
        verdict = "INVALID (generator behind)" if not row["valid"] else "meets" if row["meets"] else "misses"
        where = (f"{point:g} % of {row['calibration_rps']:g} req/s = {rate:g} req/s" if self.calibration
                 else f"{rate:g} req/s")
        print(f"  probe {number} ({why}) {where} for {duration:.1f} s: {stats['missed']} of "
              f"{stats['scheduled']} missed the objective ({100 * share:.2f} % [{100 * ci_low:.2f}, "
              f"{100 * ci_high:.2f}]): {verdict}", flush=True)
        return row

    def valid_probe(self, point: float, why: str) -> dict[str, Any]:
        """A probe, run once more when it was invalid (its generator fell behind: a moment of CPU contention on a
        small machine, not a property of the rate; or its calibration served nothing) while the probe and time
        budgets allow; its invalid run stays in the record."""
        row = self.probe(point, why)
        if not row["valid"] and len(self.probes) < self.max_probes - 1 and self.fits(point):
            what = row["invalid_reason"].removeprefix("the ")
            row = self.probe(point, f"{why}, again: probe {row['probe']}'s {what}")
        return row

    def invalid_stop(self, row: dict[str, Any]) -> str:
        """Why an invalid probe stopped the search: it was invalid twice, or once with no budget to run it again."""
        tries = sum(1 for q in self.probes if self.at(q) == self.at(row) and not q["valid"])
        again = "twice" if tries > 1 else "and the probe or time budget left no room to run it again"
        return f"probe {row['probe']} invalid: {row['invalid_reason']}, {again}"

    def bisect(self, low: float, high: float, floors: list[float], ceilings: list[float]
               ) -> tuple[float | None, float | None, str]:
        """Probe both ends, then midpoints; returns (low, high, why it stopped), None for an unbounded side. A
        bracket taken from the grid may be wrong at either end (its runs are short): an end that disagrees moves
        out to the next of `floors` or `ceilings` (the grid's next level, then rate_search_bracket_pct of the
        capacity), and is probed there. Takes what it uses off the front of `floors` and `ceilings`."""
        ends = [("low end", low), ("high end", high)]
        while ends:
            end, point = ends.pop(0)
            if not self.fits(point):
                return low, high, "time budget spent"
            row = self.valid_probe(point, end)
            if not row["valid"]:
                return low, high, self.invalid_stop(row)
            if end == "low end" and not row["meets"]:
                if not floors:
                    return None, low, "the low end misses the objective: capacity below the bracket"
                low, high = floors.pop(0), low
                ends = [("low end", low)]  # the old low end is a proven high end: no need to probe `high`
            elif end == "high end" and row["meets"]:
                if not ceilings:
                    return high, None, "the high end meets the objective: capacity above the bracket"
                low, high = high, ceilings.pop(0)
                ends = [("high end", high)]
        while 100 * (high - low) / low > self.tolerance:
            mid = round((low + high) / 2, 2)
            if len(self.probes) >= self.max_probes - 1:
                return low, high, f"probe budget spent ({self.max_probes}, one kept for the repeat)"
            if not self.fits(mid) or mid in (low, high):
                return low, high, "time budget spent" if mid not in (low, high) else f"points 0.01 {self.unit} apart"
            row = self.valid_probe(mid, "bisection")
            if not row["valid"]:
                return low, high, self.invalid_stop(row)
            low, high = (mid, high) if row["meets"] else (low, mid)
        return low, high, f"bracket within {self.tolerance:g} %"

    def repeat_boundary(self, low: float | None, high: float | None, reason: str, floors: list[float]
                        ) -> tuple[float | None, float | None, str]:
        """Run the low end once more; if its runs together miss the objective, the next lower point that met it
        becomes the low end and this one the high end, and the reason says so (the bracket may be wider than the
        tolerance the search stopped at). Where no lower probe met it, the next floor left (the grid's next level,
        or rate_search_bracket_pct) is probed once, budgets allowing, so that the bracket keeps a low end."""
        if low is None or high is None or "invalid" in reason or len(self.probes) >= self.max_probes \
                or not self.fits(low):
            return low, high, reason
        row = self.probe(low, "boundary repeat")
        self.repeated = True
        self.confirmed = row["valid"] and self.meets(low)
        if self.confirmed:
            return low, high, reason
        met = sorted(self.at(q) for q in self.probes
                     if q["valid"] and self.at(q) < low and self.meets(self.at(q)))
        new_low = met[-1] if met else None
        top, probed = low, ""
        floor = next((f for f in floors if f < low), None)
        if new_low is None and floor is not None and len(self.probes) < self.max_probes and self.fits(floor):
            row = self.valid_probe(floor, "a low end below the missed repeat")
            if row["valid"] and row["meets"]:
                new_low = floor
            elif row["valid"]:
                top = floor  # the capacity is below this one too
            probed = f" after probing {floor:g} {self.unit} ({'met' if new_low is not None else 'missed'} it)"
        return new_low, top, (f"{reason}, then the low end {low:g} {self.unit} missed the objective when repeated: "
                              f"the bracket became {bracket_text(new_low, top, self.unit)}{probed}")


def bracket_text(low: float | None, high: float | None, unit: str = "") -> str:
    """'[a, b]', with '< b' or '> a' for a one-sided bracket; `unit` ('%') follows the numbers when given and is
    not 'req/s' (the callers name req/s themselves)."""
    tail = " %" if unit == "%" else ""
    if low is None:
        return f"< {high:g}{tail}" if high is not None else "n/a"
    if high is None:
        return f"> {low:g}{tail}"
    return f"[{low:g}, {high:g}]{tail}"


# --------------------------------------------------------------------------------------- tidy tables
def _requests_rows(run_key: str, platform: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"run_key": run_key, "platform": platform, "seq": r["seq"], "scheduled_s": r["scheduled_s"],
             "sent_s": r["sent_s"], "lag_ms": r["lag_ms"], "latency_ms": r["latency_ms"], "status": r["status"],
             "outcome": r["outcome"], "served": int(r["outcome"] == "served"), "error": r["error"]} for r in rows]


def _run_row(run_key: str, platform: str, record: dict[str, Any], stats: dict[str, Any] | None,
             extra: dict[str, Any]) -> dict[str, Any]:
    capacity = record.get("capacity") or {}
    row = {"run_key": run_key, "experiment": EXPERIMENT, "platform": platform,
           "arrivals": record.get("arrivals"), "seed": record.get("seed"),
           "capacity_pct": record.get("capacity_pct"), "capacity_rps": capacity.get("capacity_rps"),
           "offered_rps": record.get("offered_rps"), "duration_s": record.get("duration_s"),
           "max_outstanding": record.get("max_outstanding"), **(stats or {}), **extra}
    return {name: row.get(name) for name in schema.RATE_RUNS.names}


def rate_tables(run_dirs: list[Path], metrics: dict[str, str | None] | None = None
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """rate_runs.csv and rate_requests.csv rows from finished rate steps (raw/ is the source of truth), and the
    problems found (a raw file that cannot be read). `metrics`: platform -> its server-time metric on /metrics."""
    metrics = metrics or {}
    runs, requests, problems = [], [], []
    for run_dir in run_dirs:
        done = read_json(run_dir / DONE)
        key, platform = done["run_key"], done["platform"]
        if done.get("outcome") != "ok":  # no capacity: a row that says why, no requests
            record = {"capacity_pct": done.get("capacity_pct"), "capacity": done.get("capacity")}
            runs.append(_run_row(key, platform, record, None, {
                "valid": 0, "invalid_reason": done.get("error"), "started_utc": done.get("started_utc"),
                "outcome": done.get("outcome"), "error": done.get("error")}))
            continue
        try:
            record = read_json(run_dir / openloop.RAW_JSON)
            rows = openloop.read_rows(run_dir / openloop.RAW_CSV)
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{key}: cannot read {openloop.RAW_CSV} / {openloop.RAW_JSON} ({exc})")
            continue
        stats = openloop.run_stats(rows, float(record["duration_s"]), float(record["max_lag_ms"]))
        samples = resource_rows(run_dir / RESOURCES_FILE, done.get("started_epoch"))
        preds = [p.get("prediction_ms") for p in prediction_records(run_dir)]
        preds = [p for p in preds if isinstance(p, int | float)]
        search = done.get("search") if isinstance(done.get("search"), dict) else {}
        runs.append(_run_row(key, platform, record, stats, {
            "search_probe": search.get("probe"),
            "server_mean_ms": round_or_none(server_mean_ms(run_dir / METRICS_BEFORE, run_dir / METRICS_AFTER,
                                                    metrics.get(platform))),
            "prediction_mean_ms": round_or_none(sum(preds) / len(preds)) if preds else None,
            "cpu_mean_pct": round_or_none(cpu_mean(samples), 2),
            "cpu_max_pct": round_or_none(max_or_none([x["cpu_pct"] for x in samples]), 2),
            "started_utc": done.get("started_utc"), "outcome": "ok", "error": None}))
        requests.extend(_requests_rows(key, platform, rows))
    return runs, requests, problems


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    import pandas as pd

    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False)
    tmp.replace(path)


def write_rate_tables(folder: RunFolder, run_dirs: list[Path]) -> list[str]:
    """finalize's part: rate_runs.csv and rate_requests.csv from the finished rate steps among `run_dirs` (header
    only when there are none); returns the problems found."""
    steps = {d: read_json(d / DONE).get("step") for d in run_dirs}
    rate_dirs = [d for d in run_dirs if steps[d] == "rate"]
    metrics = {name: p.server_time_metric for name, p in folder.config.platforms.items()}
    runs, requests, problems = rate_tables(rate_dirs, metrics)
    _write_csv(folder.path / schema.RATE_RUNS.file, runs, schema.RATE_RUNS.names)
    _write_csv(folder.path / schema.RATE_REQUESTS.file, requests, schema.RATE_REQUESTS.names)
    searches = []
    for d in (d for d in run_dirs if steps[d] == "rate-search"):  # issue 24
        try:
            searches.append(search_row(d.name, read_json(d / SEARCH_JSON)))
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{d.name}: cannot read {SEARCH_JSON} ({exc})")
    if searches or (folder.path / schema.RATE_SEARCH.file).exists():
        _write_csv(folder.path / schema.RATE_SEARCH.file, searches, schema.RATE_SEARCH.names)
    return problems


def search_row(run_key: str, record: dict[str, Any]) -> dict[str, Any]:
    """rate_search.csv's row of one search from its search.json."""
    row = {"run_key": run_key, **record, "probes": len(record["probes"]),
           "started_utc": record.get("started_utc")}
    for flag in ("converged", "boundary_repeated", "boundary_confirmed"):
        row[flag] = int(bool(record.get(flag)))
    return {name: row.get(name) for name in schema.RATE_SEARCH.names}


# ----------------------------------------------------------------------------------------------- CLI
def cmd_rate_step(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    return print_step(rate_step(folder, args.platform, args.capacity_pct, args.rps, args.repetition))


def cmd_rate_search(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    return print_step(rate_search(folder, args.platform, args.low_rps, args.high_rps, args.budget_s, args.level))


def cmd_rate(args: argparse.Namespace) -> int:
    """One open-loop run against any URL; prints the summary line and writes the results-schema rows."""
    try:
        offsets = openloop.schedule(args.arrivals, args.rate, args.duration, seed=args.seed, trace=args.trace)
        body = args.body.read_bytes() if args.body else b""
    except (openloop.OpenLoopError, OSError) as exc:
        raise StepError(str(exc)) from None
    duration = args.duration if args.duration is not None else (float(offsets[-1]) if len(offsets) else 0.0) or 1.0
    target = openloop.Target(url=args.url, method=args.method or ("POST" if body else "GET"), body=body,
                             content_type=args.content_type if body else None, timeout_s=args.timeout,
                             keepalive=args.keepalive)
    try:
        result = openloop.run(target, offsets, args.max_outstanding, args.realtime)
    except openloop.OpenLoopError as exc:
        raise StepError(str(exc)) from None
    rows = result.rows()
    stats = openloop.run_stats(rows, duration, args.max_lag_ms)
    offered = args.rate if args.rate is not None else len(offsets) / duration
    print(openloop.summary_line(stats, offered, args.arrivals), flush=True)
    if args.out:
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        openloop.write_rows(out / openloop.RAW_CSV, rows)
        record = openloop.run_record(result, rows, arrivals=args.arrivals, seed=args.seed,
                                     offered_rps=round(offered, 4), duration_s=duration, max_lag_ms=args.max_lag_ms,
                                     trace=str(args.trace) if args.trace else None, capacity_pct=None, capacity=None)
        write_json(out / openloop.RAW_JSON, record)
        run = _run_row(args.run_key, args.platform, record, stats, {
            "started_utc": _epoch_utc(result.started_epoch), "outcome": "ok", "error": None})
        _write_csv(out / schema.RATE_RUNS.file, [run], schema.RATE_RUNS.names)
        _write_csv(out / schema.RATE_REQUESTS.file, _requests_rows(args.run_key, args.platform, rows),
                   schema.RATE_REQUESTS.names)
        print(f"wrote {out / schema.RATE_RUNS.file}, {out / schema.RATE_REQUESTS.file}, {out / openloop.RAW_CSV} "
              f"and {out / openloop.RAW_JSON}", flush=True)
    return 0


def cmd_rate_capacity(args: argparse.Namespace) -> int:
    """The generator's own capacity: constant rates against a trivial local server, pinned to one core."""
    cores = sorted(__import__("os").sched_getaffinity(0))
    core = args.core if args.core is not None else cores[0]
    server_core = args.server_core if args.server_core is not None else next((c for c in cores if c != core), None)
    print(f"generator pinned to CPU {core}, trivial aiohttp server on CPU {server_core}; constant arrivals, "
          f"{args.duration:g} s per rate, {'keep-alive' if args.keepalive else 'a new connection per request'}",
          flush=True)
    results = openloop.capacity_benchmark(args.rates, args.duration, args.keepalive, core, server_core,
                                          args.max_lag_ms, args.realtime)
    ok = [r["rate_rps"] for r in results if r["valid"] and not r["errors"] and not r["dropped"]]
    print(f"generator capacity: {max(ok) if ok else 0:g} scheduled requests/s with p99 send lag <= "
          f"{args.max_lag_ms:g} ms (highest rate tried that kept time)", flush=True)
    if args.json:
        print(json.dumps(results, default=float))
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = run_dir_parser(sub, "rate-step", cmd_rate_step,
                       help="one open-loop run of the bench plan (a rate step)",
                       description="One step of the `rate` experiment: rate_duration_s of open-loop load "
                                   "POSTing the run's payload to the platform, at --capacity-pct %% of the capacity "
                                   "the closed-loop sweep measured in this run folder (the best served req/s among "
                                   "the platform's concurrency cells, each the median of its repetitions), or at "
                                   "--rps req/s. Writes raw/rate-<platform>-<label>/ and done.json last; prints one "
                                   "summary line.")
    p.add_argument("--platform", required=True, help="a platform of the run's configuration")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--capacity-pct", type=float, help="offered rate in %% of the closed-loop capacity")
    group.add_argument("--rps", type=float, help="offered rate in requests per second")
    p.add_argument("--repetition", type=int, default=1,
                   help="which run of this rate (default 1; rate_repetitions > 1 plans 2, 3, ...: run key -r<N>)")

    p = run_dir_parser(sub, "rate-search", cmd_rate_search,
                       help="capacity at the latency objective by bisection on the offered rate (issue 24)",
                       description="Bisect the offered rate of one platform between --low-rps and --high-rps (default: "
                                   "where the run's grid of rate steps put the capacity, an end the probes disprove "
                                   "moving out to the grid's next level, then to rate_search_bracket_pct of the "
                                   "closed-loop capacity measured in the run folder; without grid runs, that "
                                   "bracket itself) until the bracket is within rate_search_tolerance_pct, "
                                   "rate_search_max_probes probes or --budget-s are spent; then run the boundary "
                                   "rate again. A probe whose generator fell behind runs once more. A probe meets "
                                   "the objective when at most 1 %% of its scheduled requests were slower than "
                                   "slo_p99_ms, "
                                   "failed or were dropped; each holds enough requests for the Clopper-Pearson bound "
                                   "to prove it (368 at 95 %%). Each probe is an ordinary rate run "
                                   "(raw/rate-<platform>-<R>rps/); raw/rate-search-<platform>/ holds search.json and "
                                   "search.csv; finalize adds rate_search.csv.")
    p.add_argument("--platform", required=True, help="a platform of the run's configuration")
    p.add_argument("--low-rps", type=float, help="the bracket's low end in req/s (default: from the capacity)")
    p.add_argument("--high-rps", type=float, help="the bracket's high end in req/s (default: from the capacity)")
    p.add_argument("--budget-s", type=float, help="wall-clock budget: no probe starts that would end after it")
    p.add_argument("--level", type=float, default=SEARCH_LEVEL,
                   help=f"confidence of each probe's interval (default {SEARCH_LEVEL})")

    p = sub.add_parser("rate", help="one open-loop run against any URL (constant, Poisson or trace arrivals)",
                       description="Send requests at scheduled times whether or not earlier ones have returned "
                                   "(open loop), time each from its scheduled send time, and print one line: offered "
                                   "and achieved rate, p50/p90/p99/p99.9 (only with enough samples), errors by cause, "
                                   "drops and the p99 send lag. With --out, writes rate_runs.csv and "
                                   "rate_requests.csv (analysis/RESULTS.md) plus the raw openloop.csv/json.",
                       epilog="Example: python -m analysis.bench rate --url http://127.0.0.1:30081/predict --rate 25 "
                              "--duration 20 --arrivals poisson --seed 1 --body photo.jpg --content-type image/jpeg "
                              "--out /tmp/rate")
    p.add_argument("--url", required=True, help="the URL every request goes to")
    p.add_argument("--rate", type=float, help="offered rate, requests per second (with a trace: stretch the trace "
                                              "in time to this mean rate; without, replay it as it is)")
    p.add_argument("--duration", type=float, help="seconds of arrivals (a trace is cut there)")
    p.add_argument("--arrivals", choices=openloop.ARRIVALS, default="poisson",
                   help="constant: one every 1/rate s; poisson: exponential gaps, seeded (default); trace: --trace")
    p.add_argument("--seed", type=int, default=1, help="seed of the Poisson schedule (default 1): same seed, same "
                                                       "schedule")
    p.add_argument("--trace", type=Path, help="file with one send time per line, seconds from the start")
    p.add_argument("--body", type=Path, help="file to POST as the request body (default: GET with no body)")
    p.add_argument("--content-type", default="application/octet-stream", help="Content-Type of the body")
    p.add_argument("--method", help="HTTP method (default POST with --body, else GET)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    p.add_argument("--keepalive", action="store_true", help="reuse connections (default: a new one per request, "
                                                            "as ab without -k)")
    p.add_argument("--max-outstanding", type=int, default=openloop.DEFAULT_MAX_OUTSTANDING,
                   help="cap on requests in flight; one due above it is dropped and counted, never delayed "
                        f"(default {openloop.DEFAULT_MAX_OUTSTANDING})")
    p.add_argument("--max-lag-ms", type=float, default=openloop.DEFAULT_MAX_LAG_MS,
                   help="the run is invalid when the p99 send lag exceeds this (default 5 ms)")
    p.add_argument("--realtime", action="store_true",
                   help="send at SCHED_FIFO priority 1 (needs root or CAP_SYS_NICE), so busy neighbours or the server "
                        "itself cannot delay the sends (the bench's rate steps do, rate_realtime)")
    p.add_argument("--out", type=Path, help="folder for the results-schema rows and raw files")
    p.add_argument("--platform", default="target", help="platform column of the rows written (default: target)")
    p.add_argument("--run-key", default="rate", help="run_key column of the rows written (default: rate)")
    p.set_defaults(func=cmd_rate)

    p = sub.add_parser("rate-capacity", help="benchmark: how many scheduled requests/s the generator keeps on time",
                       description="Constant-rate open-loop runs against a trivial aiohttp server on 127.0.0.1, the "
                                   "generator pinned to one CPU and the server to another (os.sched_setaffinity). "
                                   "Prints per rate the send lag p50/p99/max and the generator's CPU, then the highest "
                                   "rate with p99 lag <= --max-lag-ms, no error and no drop.")
    p.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[250, 500, 1000, 1500, 2000],
                   help="comma-separated rates to try (default 250,500,1000,1500,2000)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per rate (default 5)")
    p.add_argument("--keepalive", action="store_true", help="reuse connections (default: a new one per request)")
    p.add_argument("--core", type=int, help="CPU for the generator (default: the first this process may use)")
    p.add_argument("--server-core", type=int, help="CPU for the server (default: another one)")
    p.add_argument("--max-lag-ms", type=float, default=2.0, help="p99 send lag a rate must keep (default 2 ms)")
    p.add_argument("--realtime", action="store_true",
                   help="the generator at SCHED_FIFO priority 1 (root): its core's other processes cannot delay it, "
                        "so the numbers are the generator's own, not its neighbours'")
    p.add_argument("--json", action="store_true", help="also print every rate's numbers as JSON")
    p.set_defaults(func=cmd_rate_capacity)
