"""`finalize`: rebuild every tidy CSV from raw/ and set the run's status.

Only raw/<run_key>/ folders with a done.json are read; ab's files are re-parsed with analysis.bench.ab, so a
parser fix reaches old runs by running finalize again. Column order and meaning: analysis/RESULTS.md.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.bench import ab, autoscale, layers, rate, schema
from analysis.bench.logs import prediction_records
from analysis.bench.manifest import DONE, RunFolder, read_json, utc_now
from analysis.bench.metrics import server_mean_ms
from analysis.bench.resources import RESOURCES_FILE, cpu_mean, max_or_none, resource_rows, round_or_none
from analysis.bench.runner import COLDSTART_FILE, METRICS_AFTER, METRICS_BEFORE, PAIRED_FILE, PROBE_FILE

# the column order of the two ab tables as finalize writes them (every table's comes from schema.py)
RUNS_COLUMNS = schema.RUNS.names
REQUESTS_COLUMNS = schema.REQUESTS.names
PERCENTILES = (50, 90, 95, 99)


def finalize(folder: RunFolder) -> tuple[list[str], list[str]]:
    """Write the CSVs and the manifest's status. Returns (summary lines, problems found)."""
    plan = folder.plan()
    order = {item.run_key: item.index for item in plan}
    done_dirs = sorted((p.parent for p in folder.raw.glob(f"*/{DONE}")),
                       key=lambda d: (order.get(d.name, len(order) + 1), d.name))
    runs, requests, probe, predictions, coldstart, resources, paired = [], [], [], [], [], [], []  # paired: issue 24
    error_layers: list[dict[str, Any]] = []  # issue 11
    bodylimit: list[dict[str, Any]] = []
    autoscale_rows: list[dict[str, Any]] = []  # paper profile
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    for run_dir in done_dirs:
        done = read_json(run_dir / DONE)
        outcomes[done.get("outcome", "?")] += 1
        key, platform_name = done["run_key"], done["platform"]
        for record in prediction_records(run_dir):
            value = record.get("prediction_ms")
            if isinstance(value, int | float):
                predictions.append({"run_key": key, "platform": platform_name, "ts": record.get("ts"),
                                    "prediction_ms": value, "backend": record.get("backend")})
        if done["step"] == "ab":
            try:
                row, rows, samples = _ab_run(folder, run_dir, done)
            except ab.AbParseError as exc:
                problems.append(f"{key}: {exc}")
                continue
            runs.append(row)
            requests.extend(rows)
            resources.extend(samples)
            layer = layers.layer_row(run_dir, row, folder.config.platforms.get(platform_name))  # issue 11
            if layer is not None:
                error_layers.append(layer)
        elif done["step"] == "probe":
            probe.extend(_probe_rows(run_dir, platform_name))
        elif done["step"] == "paired":  # issue 24
            paired.extend(_paired_rows(run_dir))
        elif done["step"] == "coldstart":
            coldstart.append(_coldstart_row(run_dir, done))
        elif done["step"] == "autoscale":  # paper profile
            autoscale_rows.extend(autoscale.table_rows(run_dir, done))
        elif done["step"] == "bodylimit":  # issue 11
            limit = layers.bodylimit_row(run_dir)
            if limit is not None:
                bodylimit.append(limit)

    tables = {table.file: (rows, table.names) for table, rows in (
        (schema.RUNS, runs), (schema.REQUESTS, requests), (schema.PROBE, probe), (schema.PAIRED, paired),
        (schema.PREDICTIONS, predictions),
        (schema.COLDSTART, coldstart), (schema.RESOURCES, resources), (schema.LAYERS, error_layers),
        (schema.BODYLIMIT, bodylimit), (schema.AUTOSCALE, autoscale_rows),
    )}
    for name, (rows, columns) in tables.items():
        frame = pd.DataFrame(rows, columns=columns)
        tmp = folder.path / f".{name}.tmp"
        frame.to_csv(tmp, index=False)
        tmp.replace(folder.path / name)
    problems += rate.write_rate_tables(folder, done_dirs)  # issue 13: rate_runs.csv, rate_requests.csv

    done_keys = set(folder.done_keys())
    missing = [item.run_key for item in plan if item.run_key not in done_keys]
    complete = not missing and not problems
    folder.update(
        status="complete" if complete else "incomplete",
        finished_utc=utc_now() if complete else None,
        runs_planned=len(plan),
        runs_done=len(plan) - len(missing),
        runs_missing=missing,
        outcomes=dict(outcomes),
        problems=problems,
    )
    return _summary(folder, runs, requests, probe, coldstart, missing) + _paired_lines(folder, paired), problems


def _ab_run(folder: RunFolder, run_dir: Path, done: dict[str, Any]
            ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    info = done.get("ab", {})
    result = ab.parse_run_files(run_dir, info.get("argv", []), info.get("returncode", 0), info.get("wall_s"))
    if done.get("outcome") == "interrupted" and result.error is None:  # stopped at run_timeout_s
        result.error = done.get("error")
    key, platform_name = done["run_key"], done["platform"]
    ident = {"run_key": key, "experiment": done["experiment"], "platform": platform_name,
             "concurrency": done["concurrency"], "repetition": done["repetition"]}
    classes = result.classified
    flags = ab.served_flags(result.requests, classes)
    rows = [{**ident, "start_s": r.start_s, "connect_ms": r.connect_ms, "processing_ms": r.processing_ms,
             "total_ms": r.total_ms, "wait_ms": r.wait_ms, "served": flag}
            for r, flag in zip(result.requests, flags, strict=True)]
    served = np.array([r.total_ms for r, flag in zip(result.requests, flags, strict=True) if flag], dtype=float)
    failed = [r.total_ms for r, flag in zip(result.requests, flags, strict=True) if not flag]
    samples = resource_rows(run_dir / RESOURCES_FILE, done.get("started_epoch"))
    platform = folder.config.platforms.get(platform_name)
    s = result.summary
    row: dict[str, Any] = {**ident, "requests": done["requests"]}
    if s is not None and classes is not None and result.outcome != "aborted":
        f = s.failures
        row.update(completed=s.completed, served=classes.served, errors=classes.errors, non_2xx=classes.non_2xx,
                   reset=classes.reset, refused=classes.refused, empty_reply=classes.empty_reply,
                   timeout=classes.timeout, length_mismatch=classes.length_mismatch, failed=f.total,
                   failed_connect=f.connect, failed_receive=f.receive, failed_length=f.length,
                   failed_exceptions=f.exceptions, time_taken_s=s.time_taken_s, requests_per_s=s.requests_per_s,
                   served_per_s=round_or_none(classes.served / s.time_taken_s) if s.time_taken_s else None)
        row.update(
            mean_ms=round_or_none(float(served.mean())) if served.size else None,
            min_ms=float(served.min()) if served.size else None,
            max_ms=float(served.max()) if served.size else None,
            failed_mean_ms=round_or_none(sum(failed) / len(failed)) if failed else None,
            **{f"p{p}_ms": (round_or_none(float(np.percentile(served, p)))
                            if served.size >= schema.samples_needed(p) else None) for p in PERCENTILES},
        )
    row.update(
    server_mean_ms=round_or_none(server_mean_ms(run_dir / METRICS_BEFORE, run_dir / METRICS_AFTER,
                                             platform.server_time_metric if platform else None)),
    )
    preds = [r.get("prediction_ms") for r in prediction_records(run_dir)]
    preds = [p for p in preds if isinstance(p, int | float)]
    row.update(
        prediction_mean_ms=round_or_none(sum(preds) / len(preds)) if preds else None,
        cpu_mean_pct=round_or_none(cpu_mean(samples), 2),
        cpu_max_pct=round_or_none(max_or_none([x["cpu_pct"] for x in samples]), 2),
        mem_max_bytes=max_or_none([x["mem_bytes"] for x in samples]),
        mem_limit_bytes=next((x["mem_limit_bytes"] for x in reversed(samples) if x["mem_limit_bytes"]), None),
        started_utc=done["started_utc"],
        outcome=result.outcome if done.get("outcome") != "interrupted" else "interrupted",
        error=result.error,
    )
    competition = done.get("system") or {}  # issue 14: what competed with the run
    row.update({k: competition.get(k) for k in ("load_1m_before", "steal_pct", "load_generator_cpu_pct",
                                                 "others_cpu_pct")},
               busy=None if competition.get("busy") is None else int(competition["busy"]),
               reference_ms=(done.get("reference") or {}).get("reference_ms"))
    sample_rows = [{"run_key": key, "platform": platform_name, "t_s": x["t_s"], "cpu_pct": x["cpu_pct"],
                    "mem_bytes": x["mem_bytes"], "mem_limit_bytes": x["mem_limit_bytes"]} for x in samples]
    return row, rows, sample_rows


def _probe_rows(run_dir: Path, platform_name: str) -> list[dict[str, Any]]:
    rows = []
    for line in (run_dir / PROBE_FILE).read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            rows.append({"platform": platform_name, "seq": r["seq"], "status": r["status"] or 0,
                         "response_ms": r["response_ms"] if r["status"] else None,
                         "prediction_ms": r["prediction_ms"], "error": r["error"]})
    return rows


def _paired_rows(run_dir: Path) -> list[dict[str, Any]]:
    """paired.csv's rows from raw/paired/paired.jsonl, in the order they were sent."""
    rows = []
    for line in (run_dir / PAIRED_FILE).read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            rows.append({"round": r["round"], "position": r["position"], "platform": r["platform"],
                         "status": r["status"] or 0, "response_ms": r["response_ms"] if r["status"] else None,
                         "prediction_ms": r["prediction_ms"], "error": r["error"]})
    return rows


def _paired_lines(folder: RunFolder, paired: list[dict[str, Any]]) -> list[str]:
    """One line for the paired step: the geometric mean of each function platform's per-round ratio to the
    baseline over the rounds both answered (the report adds its interval; analysis/headline.py)."""
    if not paired:
        return []
    platforms = folder.config.platforms
    baseline = next((n for n, p in platforms.items() if p.role == "baseline"), None)
    ok = {(r["round"], r["platform"]): r["response_ms"] for r in paired if r["status"] == 200 and not r["error"]}
    parts = []
    for name in platforms:
        if name == baseline or baseline is None:
            continue
        logs = [math.log(ms / ok[(rnd, baseline)]) for (rnd, p), ms in ok.items()
                if p == name and ok.get((rnd, baseline), 0) > 0 and ms > 0]
        if logs:
            parts.append(f"{name}/{baseline} {math.exp(sum(logs) / len(logs)):.2f}x over {len(logs)} pairs")
    failed = sum(1 for r in paired if not (r["status"] == 200 and not r["error"]))
    return [f"  paired: {max(r['round'] for r in paired)} rounds, {failed} failed request(s)"
            + (f"; geometric mean ratio {', '.join(parts)}" if parts else "")]


def _coldstart_row(run_dir: Path, done: dict[str, Any]) -> dict[str, Any]:
    c = read_json(run_dir / COLDSTART_FILE)
    first = c.get("first_200") or {}
    return {"platform": c["platform"], "repetition": c["repetition"], "kind": c["kind"],
            "start_to_first_200_ms": first.get("start_to_first_200_ms"), "attempts": c["attempts"],
            "outcome": done.get("outcome"), "stop_ms": c.get("stop_ms"), "start_command_ms": c.get("start_command_ms"),
            "first_200_prediction_ms": first.get("prediction_ms"), "error": done.get("error")}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _summary(folder: RunFolder, runs: list[dict[str, Any]], requests: list[dict[str, Any]],
             probe: list[dict[str, Any]],
             coldstart: list[dict[str, Any]], missing: list[str]) -> list[str]:
    m = folder.manifest
    lines = [f"run {m['run_id']}: {m['status']} ({m['runs_done']}/{m['runs_planned']} steps done)"]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        lines.append(f"  missing: {shown} — resume with the same run id to finish them")
    frame = pd.DataFrame(runs, columns=RUNS_COLUMNS)
    frame = frame[frame["experiment"] == "concurrency"]
    if not frame.empty:
        causes = " ".join(f"{c:>6}" for c in ("non2xx", "reset", "refus", "empty", "tmout"))
        lines.append(f"  {'platform':10} {'c':>3} {'reps':>4} {'served/s':>8} {'mean ms':>8} {'p50 ms':>7} "
                     f"{'p99 ms':>7} {'errors':>6} {causes} {'aborted':>7}")
        served: dict[str, list[float]] = {}  # run_key -> total_ms of its served requests, one pass over the rows
        for r in requests:
            if r["served"]:
                served.setdefault(r["run_key"], []).append(r["total_ms"])
        for (platform, conc), g in frame.groupby(["platform", "concurrency"], sort=True):
            totals = np.array([t for key in g["run_key"] for t in served.get(key, [])], dtype=float)
            p50 = float(np.percentile(totals, 50)) if totals.size >= schema.samples_needed(50) else None
            p99 = float(np.percentile(totals, 99)) if totals.size >= schema.samples_needed(99) else None
            counts = " ".join(f"{int(g[c].fillna(0).sum()):>6}" for c in schema.ERROR_CAUSES)
            lines.append(
                f"  {platform:10} {conc:>3} {len(g):>4} {_fmt(g['served_per_s'].median()):>8} "
                f"{_fmt(totals.mean() if totals.size else None):>8} {_fmt(p50):>7} {_fmt(p99):>7} "
                f"{int(g['errors'].fillna(0).sum()):>6} {counts} {int((g['outcome'] != 'ok').sum()):>7}"
            )
    for platform in sorted({r["platform"] for r in probe}):
        ok = [r for r in probe if r["platform"] == platform and r["status"] == 200 and r["error"] is None]
        total = sum(1 for r in probe if r["platform"] == platform)
        if ok:
            lines.append(f"  probe {platform}: {len(ok)}/{total} ok, response mean "
                         f"{sum(r['response_ms'] for r in ok) / len(ok):.1f} ms, prediction mean "
                         f"{sum(r['prediction_ms'] for r in ok) / len(ok):.1f} ms")
        else:
            lines.append(f"  probe {platform}: 0/{total} ok")
    for platform in sorted({r["platform"] for r in coldstart}):
        times = [r["start_to_first_200_ms"] for r in coldstart
                 if r["platform"] == platform and r["start_to_first_200_ms"] is not None]
        total = sum(1 for r in coldstart if r["platform"] == platform)
        lines.append(f"  cold start {platform}: {len(times)}/{total} ok"
                     + (f", start -> first 200 median {sorted(times)[len(times) // 2] / 1000:.2f} s" if times else ""))
    busy = [r for r in runs if r.get("busy")]  # issue 14
    if busy:
        lines.append(f"  BUSY MACHINE: {len(busy)} of {len(runs)} ab runs had other processes (or CPU steal) above "
                     f"busy_cpu_pct, up to {max(r.get('others_cpu_pct') or 0 for r in busy):.0f} % of a core; "
                     "raw/<run_key>/system.json names them")
    return lines
