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
from pathlib import Path
from typing import Any

import numpy as np

from analysis.bench import ab, openloop, schema, system
from analysis.bench.arguments import print_step, run_dir_parser
from analysis.bench.config import PlatformConfig, rate_run_key
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


def _observe(folder: RunFolder, platform: PlatformConfig, out: Path, target: openloop.Target,
             offsets: np.ndarray) -> tuple[openloop.OpenLoopRun, dict[str, Any]]:
    """The open-loop run with what run-one records around ab: /metrics before and after, CPU and memory during,
    and the server's log lines."""
    knobs = folder.config.knobs
    logs, metrics_before_error, sampler, resources_info = _observers(folder, platform, out)
    serving, placement = system.where(folder.config)  # as for ab (issue 14): CPUs apart from pinned servers
    cpus = system.parse_cpu_list(placement["load_generator_cpus"])
    if cpus:
        os.sched_setaffinity(0, cpus)
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
              rps: float | None = None) -> StepResult:
    """One open-loop run of `rate_duration_s` at capacity_pct % of the platform's closed-loop capacity, or at
    `rps` req/s, POSTing the run's payload; a step that could not find a capacity records that and returns."""
    if (capacity_pct is None) == (rps is None):
        raise StepError("give exactly one of --capacity-pct and --rps")
    if (capacity_pct is not None and not capacity_pct > 0) or (rps is not None and not rps > 0):
        raise StepError(f"the offered rate must be > 0, got {capacity_pct if rps is None else rps}")
    platform = _platform(folder, platform_name)
    knobs = folder.config.knobs
    run_key = rate_run_key(platform_name, capacity_pct, rps)
    position = _position(folder, run_key)
    out = _prepare(folder, run_key)
    if out is None:
        return StepResult(run_key, True, f"{position} {run_key}: already done")
    capacity = closed_loop_capacity(folder, platform_name) if capacity_pct is not None else None
    base = {"run_key": run_key, "step": "rate", "experiment": EXPERIMENT, "platform": platform_name,
            "capacity_pct": capacity_pct, "capacity": capacity}
    if capacity_pct is not None and (capacity is None or not capacity["capacity_rps"] > 0):
        why = ("no concurrency run of this platform finished, so there is no capacity to take a fraction of"
               if capacity is None else "the closed-loop sweep served nothing (capacity 0 req/s)")
        now = time.time()
        _finish(folder, out, {**base, "offered_rps": None, "started_utc": _epoch_utc(now),
                              "finished_utc": _epoch_utc(now), "started_epoch": now, "finished_epoch": now,
                              "outcome": "no_capacity", "error": why})
        return StepResult(run_key, False, f"{position} {run_key}: SKIPPED: {why}")
    offered = rps if rps is not None else capacity_pct / 100.0 * capacity["capacity_rps"]
    duration = float(knobs["rate_duration_s"])
    target = openloop.Target(url=platform.url, method="POST", body=folder.payload_path.read_bytes(),
                             content_type="image/jpeg", timeout_s=float(knobs["request_timeout_s"]),
                             keepalive=knobs["keepalive"])
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
              "capacity": capacity}
    write_json(out / openloop.RAW_JSON, openloop.run_record(result, rows, **params))
    _finish(folder, out, {
        **base, "offered_rps": round(offered, 4), "started_utc": _epoch_utc(result.started_epoch),
        "finished_utc": _epoch_utc(finished), "started_epoch": result.started_epoch, "finished_epoch": finished,
        "outcome": "ok", "error": None, **observed, "summary": stats,
    })
    what = (f"{capacity_pct:g} % of {capacity['capacity_rps']:.1f} req/s (closed loop, c={capacity['concurrency']})"
            if capacity is not None else f"{rps:g} req/s")
    busy = observed["system"].get("busy") if isinstance(observed.get("system"), dict) else None
    return StepResult(run_key, False, f"{position} {run_key}: {what}: "
                      f"{openloop.summary_line(stats, offered, knobs['rate_arrivals'])}"
                      + (" — BUSY: something else competed for the CPUs" if busy else ""))


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
        runs.append(_run_row(key, platform, record, stats, {
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
    rate_dirs = [d for d in run_dirs if read_json(d / DONE).get("step") == "rate"]
    metrics = {name: p.server_time_metric for name, p in folder.config.platforms.items()}
    runs, requests, problems = rate_tables(rate_dirs, metrics)
    _write_csv(folder.path / schema.RATE_RUNS.file, runs, schema.RATE_RUNS.names)
    _write_csv(folder.path / schema.RATE_REQUESTS.file, requests, schema.RATE_REQUESTS.names)
    return problems


# ----------------------------------------------------------------------------------------------- CLI
def cmd_rate_step(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    return print_step(rate_step(folder, args.platform, args.capacity_pct, args.rps))


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
