"""`python -m analysis compare RUN_A RUN_B`: is B slower than A, beyond the noise? A verdict per cell and an exit
status for CI.

A cell is one platform at one concurrency (closed loop, ab), or at one offered rate (open loop, when both folders
hold rate_runs.csv / rate_requests.csv). Its samples are the served requests of its repetitions.

- Headline: the **mean** response time, B - A in ms and in % of A, with a two-stage bootstrap interval: each
  resample draws the cell's repetitions with replacement, then each drawn repetition's requests. The mean repeats
  where the median does not: the function at c=20 is bimodal (requests that waited out a listen-backlog SYN retry
  take ~1 s longer) and its median jumps between the modes from run to run, while the mean moves only with the
  share of slow requests, which `slow_share` shows beside it.
- Why two stages: requests of one repetition share its moment on the machine (the host's clock, its neighbours,
  the server's queue), so they are not independent samples of the system. Resampling requests alone gives an
  interval as narrow as if they were: two back-to-back runs of the same deployment then differ "significantly" by
  the 5-10 % a cloud VM drifts between them. Resampling repetitions first carries the repetition-to-repetition
  spread each run measured into the interval.
- Also: the difference of medians and of p99s with intervals from the same resamples (a p99 only where both cells
  have the 662 samples it needs), and a one-sided test of "B slower than A": Welch's t-test over the repetitions'
  mean times when both cells have at least 3 repetitions, else (a single open-loop run) a Mann-Whitney U test over
  requests, which the `test` column names.
- Machine speed: runs that recorded `reference_ms` (a fixed CPU workload timed before each ab run,
  analysis/bench/reference.py) show how much slower or faster B's machine was than A's; with
  ``--adjust-for-machine`` B's times are divided by that ratio before the statistics, so a slower host does not
  read as a slower deployment.
- Verdict: **slower** when the test says B is slower (p < alpha) *and* the whole interval of the mean's relative
  change lies above +threshold; **faster** the other way round; otherwise **same** (within noise).

Exit status: 0 no cell slower, 1 some cell slower, 2 the runs cannot be compared (a folder cannot be read, or
they differ in payload, model or matrix — the message says which).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from analysis import capacity, tables
from analysis import report as doc
from analysis.bench.schema import samples_needed
from analysis.load import Results, ResultsError, load_results

EXIT_SAME, EXIT_SLOWER, EXIT_INCOMPARABLE = 0, 1, 2
DIFFERENT_LOAD = "different load"  # an open-loop cell whose offered rates differ beyond the threshold: not compared
SATURATED = "saturated"  # an open-loop cell at or past its run's closed-loop capacity: not compared
ONE_RUN = "one run"  # an open-loop cell with a single run on a side: run-to-run noise unmeasured, not judged
SYN_RETRY_MS = 1000.0  # Linux's initial SYN retransmission timeout: the gap of the slow mode
MIN_REPS_FOR_T = 3  # repetitions per side for Welch's t over repetition means (else Mann-Whitney over requests)
BATCH_MEANS = "welch-t over batch means"


@dataclass(frozen=True)
class Settings:
    threshold_pct: float = 5.0
    alpha: float = 0.05
    level: float = 0.95
    resamples: int = 2000
    seed: int = 0
    common_cells: bool = False  # compare the cells both runs have instead of refusing another matrix
    adjust_for_machine: bool = False  # divide B's times by the ratio of the runs' reference_ms


class Incomparable(Exception):
    """The two runs measured different things; ``reasons`` names each difference."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


# ------------------------------------------------------------------------------------------ comparability
def _payload(m: dict[str, Any]) -> tuple[str, str]:
    """(identity, description) of the payload a run POSTed: its sha256 when recorded, else its name and size."""
    p = m.get("payload") or {}
    name = p.get("name") or m["config"].get("payload", "?")
    desc = f"{name}" + (f" ({p['bytes']} bytes)" if p.get("bytes") else "")
    return (p.get("sha256") or f"{name}:{p.get('bytes')}"), desc


def _model(r: Results) -> str | None:
    """Which model answered: the `model_sha256` (first 12 hex digits) that every prediction response carries, as
    the latency probe recorded it (raw/probe-<platform>/probe.jsonl); None when the run recorded none (no probe,
    or a run from before the probe kept it). Not the backend: keras vs litert is a change compare is for."""
    seen = set()
    for path in sorted((r.folder / "raw").glob("probe-*/probe.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                sha = json.loads(line).get("model_sha256")
            except (json.JSONDecodeError, AttributeError):
                continue
            if sha:
                seen.add(str(sha))
    return ", ".join(sorted(seen)) or None


def comparability(a: Results, b: Results, common_cells: bool = False) -> tuple[list[str], list[str]]:
    """(reasons the runs cannot be compared, notes about differences that do not prevent it). With
    ``common_cells`` another matrix is only a note: the cells both runs have are compared."""
    ma, mb = a.manifest, b.manifest
    reasons, notes = [], []
    (pa, da), (pb, db) = _payload(ma), _payload(mb)
    if pa != pb:
        reasons.append(f"different payload: A POSTed {da}, B {db}")
    model_a, model_b = _model(a), _model(b)
    if model_a and model_b and model_a != model_b:
        reasons.append(f"different model: A's sha256 begins {model_a}, B's {model_b}")
    elif not (model_a and model_b):
        notes.append("the model artefact's identity is not recorded in both runs, so it was not checked")
    matrix = notes if common_cells else reasons
    if set(a.platforms) != set(b.platforms):
        matrix.append(f"different matrix: platforms A {', '.join(a.platforms)}; B {', '.join(b.platforms)}")
    ca, cb = sorted(a.config["concurrency"]), sorted(b.config["concurrency"])
    if ca != cb:
        matrix.append(f"different matrix: concurrency A {ca}, B {cb}")
    for knob in ("keepalive", "accept_variable_length"):
        if a.config.get(knob, False) != b.config.get(knob, False):
            reasons.append(f"different request mode: {knob} A {a.config.get(knob)}, B {b.config.get(knob)}")
    for knob in ("repetitions", "requests_per_run"):
        if a.config.get(knob) != b.config.get(knob):
            notes.append(f"{knob} differs (A {a.config.get(knob)}, B {b.config.get(knob)}): the cells pool "
                         "different numbers of requests, which the intervals account for")
    for name, r in (("A", a), ("B", b)):
        if not r.complete:
            notes.append(f"run {name} ({r.manifest['run_id']}) is incomplete: " + "; ".join(r.incomplete_reasons))
        if r.manifest.get("status") == "complete" and any(c.get("busy") for c in r.manifest.get("system_checks") or []):
            notes.append(f"run {name} started on a busy machine (its report says what competed)")
    return reasons, notes


# --------------------------------------------------------------------------------------------------- samples
Reps = list[np.ndarray]  # one array of served request times per repetition (or per open-loop run)


def closed_loop_cells(r: Results) -> dict[tuple[str, str, float], Reps]:
    """(platform, "c", concurrency) -> the served requests' total_ms, one array per repetition (extra ones
    included)."""
    req = r.requests[(r.requests["experiment"] == "concurrency") & (r.requests["served"] == 1)]
    return {(str(p), "c", float(c)): [g["total_ms"].to_numpy(float) for _, g in cell.groupby("run_key", sort=True)]
            for (p, c), cell in req.groupby(["platform", "concurrency"], sort=False)}


def open_loop_cells(r: Results) -> tuple[dict[tuple[str, str, float], Reps], dict[tuple, float]]:
    """(platform, "rate % of capacity" or "rate rps", level) -> served latency_ms of the valid open-loop runs, one
    array per run, and each cell's offered rate; empty when the folder has no open-loop tables (runs made before
    they existed). The tables are read through the schema, like every other (capacity.load)."""
    runs, req = capacity.load(r)
    if not len(runs) or not len(req):
        return {}, {}
    ok = runs
    if "valid" in ok.columns:
        ok = ok[ok["valid"].fillna(0) == 1]
    if "outcome" in ok.columns:
        ok = ok[ok["outcome"].fillna("ok") == "ok"]
    cells: dict[tuple[str, str, float], Reps] = {}
    offered: dict[tuple, float] = {}
    served = req[req["served"] == 1]
    for row in ok.itertuples(index=False):
        pct = float(getattr(row, "capacity_pct", float("nan")))
        key = ((str(row.platform), "rate %", pct) if math.isfinite(pct)
               else (str(row.platform), "rate rps", round(float(row.offered_rps), 3)))
        mine = served[served["run_key"] == row.run_key]
        if len(mine):
            cells.setdefault(key, []).append(mine.sort_values("scheduled_s")["latency_ms"].to_numpy(float))
        offered[key] = float(row.offered_rps)
    return cells, offered


BATCHES = 5


def batches(runs: Reps) -> Reps:
    """Each run split into BATCHES consecutive batches of its requests in schedule order (batch means), for an
    open-loop cell with fewer than MIN_REPS_FOR_T runs: a run's requests share the queue and the machine's moments
    just as a repetition's do, so its batches stand in for repetitions in the interval and the test. A queue that
    grows during the run (at or past capacity) makes the batches disagree, and the interval says so."""
    out: Reps = []
    for times in runs:
        out += [b for b in np.array_split(times, min(BATCHES, len(times))) if len(b)]
    return out


def machine_reference(r: Results) -> np.ndarray | None:
    """The reference_ms of the run's concurrency runs (how fast its machine was, before each); None when the run
    recorded fewer than three (runs made before the column existed)."""
    ref = tables.reference_ms(r)
    return ref if len(ref) >= 3 else None


# ------------------------------------------------------------------------------------------------ statistics
def _ci(boot: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.nanpercentile(boot, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def two_stage_bootstrap(reps: Reps, rng: np.random.Generator, resamples: int,
                        chunk: int = 200) -> dict[str, np.ndarray]:
    """Mean, median and 99th percentile of ``resamples`` two-stage resamples: the repetitions drawn with
    replacement, then each drawn repetition's requests drawn with replacement (as many as it has). With one
    repetition this is the plain bootstrap over its requests."""
    x = np.concatenate(reps)
    sizes = np.array([len(r) for r in reps])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_reps, longest = len(reps), int(sizes.max())
    stats: dict[str, list[np.ndarray]] = {"mean": [], "median": [], "p99": []}
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        pick = rng.integers(0, n_reps, size=(b, n_reps))
        n = sizes[pick][:, :, None]
        pos = offsets[pick][:, :, None] + (rng.random((b, n_reps, longest)) * n).astype(np.int64)
        valid = np.arange(longest)[None, None, :] < n
        values = np.where(valid, x[np.minimum(pos, len(x) - 1)], np.nan).reshape(b, -1)
        stats["mean"].append(np.nanmean(values, axis=1))
        stats["median"].append(np.nanmedian(values, axis=1))
        stats["p99"].append(np.nanquantile(values, 0.99, axis=1))
    return {k: np.concatenate(v) for k, v in stats.items()}


def slower_test(a: Reps, b: Reps) -> tuple[str, float, float]:
    """(test name, p of "B slower", p of "B faster"): Welch's t over the repetitions' means where both sides have
    at least MIN_REPS_FOR_T, else Mann-Whitney U over the pooled requests."""
    ma, mb = np.array([r.mean() for r in a]), np.array([r.mean() for r in b])
    if min(len(ma), len(mb)) >= MIN_REPS_FOR_T and (ma.std() > 0 or mb.std() > 0):
        slower = st.ttest_ind(mb, ma, equal_var=False, alternative="greater").pvalue
        faster = st.ttest_ind(mb, ma, equal_var=False, alternative="less").pvalue
        return "welch-t over repetition means", float(slower), float(faster)
    xa, xb = np.concatenate(a), np.concatenate(b)
    return ("mann-whitney over requests", float(st.mannwhitneyu(xb, xa, alternative="greater").pvalue),
            float(st.mannwhitneyu(xb, xa, alternative="less").pvalue))


def compare_cell(a_reps: Reps, b_reps: Reps, s: Settings, seed: int,
                 machine: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Every statistic of one cell. ``machine``: both runs' reference_ms; with s.adjust_for_machine B's times are
    divided by the ratio of their medians (the ratio itself resampled with them)."""
    rng = np.random.default_rng(seed)
    ratio, ratio_boot = 1.0, np.ones(s.resamples)
    if machine is not None:
        ref_a, ref_b = machine
        ratio = float(np.median(ref_b) / np.median(ref_a))
        if s.adjust_for_machine:
            ratio_boot = (np.median(ref_b[rng.integers(0, len(ref_b), (s.resamples, len(ref_b)))], axis=1)
                          / np.median(ref_a[rng.integers(0, len(ref_a), (s.resamples, len(ref_a)))], axis=1))
    scale = ratio if (machine is not None and s.adjust_for_machine) else 1.0
    b_reps = [r / scale for r in b_reps]
    a, b = np.concatenate(a_reps), np.concatenate(b_reps)
    ba, bb = two_stage_bootstrap(a_reps, rng, s.resamples), two_stage_bootstrap(b_reps, rng, s.resamples)
    if scale != 1.0:  # the ratio's own uncertainty: each resample divides by a resampled ratio instead
        bb = {k: v * ratio / ratio_boot for k, v in bb.items()}
    row: dict[str, Any] = {"n_a": len(a), "n_b": len(b), "reps_a": len(a_reps), "reps_b": len(b_reps),
                           "machine_ratio": ratio if machine is not None else np.nan,
                           "adjusted_for_machine": int(scale != 1.0)}
    row.update(mean_a_ms=float(a.mean()), mean_b_ms=float(b.mean()), mean_diff_ms=float(b.mean() - a.mean()),
               mean_diff_pct=float(100 * (b.mean() / a.mean() - 1)))
    row["mean_diff_ms_ci_low"], row["mean_diff_ms_ci_high"] = _ci(bb["mean"] - ba["mean"], s.level)
    row["mean_diff_pct_ci_low"], row["mean_diff_pct_ci_high"] = _ci(100 * (bb["mean"] / ba["mean"] - 1), s.level)
    med_a, med_b = np.median(a), np.median(b)
    row.update(median_a_ms=float(med_a), median_b_ms=float(med_b), median_diff_ms=float(med_b - med_a))
    row["median_diff_ms_ci_low"], row["median_diff_ms_ci_high"] = _ci(bb["median"] - ba["median"], s.level)
    if min(len(a), len(b)) >= samples_needed(99):
        pa, pb = np.quantile(a, 0.99), np.quantile(b, 0.99)
        row.update(p99_a_ms=float(pa), p99_b_ms=float(pb), p99_diff_ms=float(pb - pa))
        row["p99_diff_ms_ci_low"], row["p99_diff_ms_ci_high"] = _ci(bb["p99"] - ba["p99"], s.level)
    else:
        row.update(p99_a_ms=np.nan, p99_b_ms=np.nan, p99_diff_ms=np.nan, p99_diff_ms_ci_low=np.nan,
                   p99_diff_ms_ci_high=np.nan)
    # the slow mode: requests at least one SYN retransmission (1 s) slower than A's 10th percentile
    cut = float(np.quantile(a, 0.10)) + SYN_RETRY_MS
    row.update(slow_share_a=float((a >= cut).mean()), slow_share_b=float((b >= cut).mean()))
    row["test"], row["p_b_slower"], row["p_b_faster"] = slower_test(a_reps, b_reps)
    row["verdict"] = verdict(row, s)
    return row


def verdict(row: dict[str, Any], s: Settings) -> str:
    if row["p_b_slower"] < s.alpha and row["mean_diff_pct_ci_low"] > s.threshold_pct:
        return "slower"
    if row["p_b_faster"] < s.alpha and row["mean_diff_pct_ci_high"] < -s.threshold_pct:
        return "faster"
    return "same"


def _machine(a: Results, b: Results, s: Settings, notes: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Both runs' reference_ms, or None when one lacks it; a note says how their machines' speeds compared."""
    ref_a, ref_b = machine_reference(a), machine_reference(b)
    if ref_a is None or ref_b is None:
        notes.append("machine speed: " + ("neither run" if ref_a is None and ref_b is None else
                                          f"only run {'A' if ref_a is not None else 'B'}")
                     + " recorded reference_ms, so a slower machine cannot be told from a slower deployment")
        if s.adjust_for_machine:
            notes.append("--adjust-for-machine: not applied (both runs need reference_ms)")
        return None
    change = 100 * (np.median(ref_b) / np.median(ref_a) - 1)
    notes.append(f"machine speed: B's reference workload took {change:+.1f} % as long as A's (median "
                 f"{np.median(ref_b):.1f} vs {np.median(ref_a):.1f} ms over {len(ref_b)} and {len(ref_a)} runs)"
                 + ("; B's times are divided by that ratio (--adjust-for-machine)" if s.adjust_for_machine
                    else "; B's times are not adjusted for it (--adjust-for-machine does)"))
    return ref_a, ref_b


HELD_BACK = {  # verdicts of open-loop cells that are shown but not judged, and why
    DIFFERENT_LOAD: "the offered rates differ by more than the threshold between the runs (their closed-loop "
                    "capacities differ; near saturation a few % more load changes latency many-fold): not compared",
    SATURATED: "at or past the closed-loop capacity, where the queue grows for as long as the run lasts (or does not, "
               "by a few % of capacity): shown, not judged",
    ONE_RUN: "one open-loop run on a side: its batch-means interval shows the spread within that run only, and the "
             "run-to-run noise (the machine's speed moves the knee) is unmeasured, so the cell is shown, not judged "
             "(the bench runs each rate once; cells with 3 or more runs are judged)",
}


def _held_back(row: dict[str, Any], batched: bool, s: Settings) -> str | None:
    """The verdict of an open-loop cell that is not judged (HELD_BACK), or None for a cell that is."""
    off_a, off_b = row["offered_a_rps"], row["offered_b_rps"]
    if math.isfinite(off_a) and math.isfinite(off_b) and off_a > 0 and abs(off_b / off_a - 1) * 100 > s.threshold_pct:
        return DIFFERENT_LOAD
    if row["load"] == "rate %" and row["level"] >= 100:
        return SATURATED
    if batched:
        return ONE_RUN
    return None


def compare(a: Results, b: Results, s: Settings) -> tuple[pd.DataFrame, list[str]]:
    """The table of every cell both runs have, and notes. Raises Incomparable when they measured different things."""
    reasons, notes = comparability(a, b, s.common_cells)
    cells_a, cells_b = closed_loop_cells(a), closed_loop_cells(b)
    rates_a, offered_a = open_loop_cells(a)
    rates_b, offered_b = open_loop_cells(b)
    if bool(rates_a) != bool(rates_b):
        notes.append("only run " + ("A" if rates_a else "B") + " has open-loop (rate) runs: they are not compared")
    elif rates_a:
        if set(rates_a) != set(rates_b):
            (notes if s.common_cells else reasons).append(
                f"different matrix: open-loop cells A {_levels(rates_a)}, B {_levels(rates_b)}")
        cells_a.update(rates_a)
        cells_b.update(rates_b)
    if reasons:
        raise Incomparable(reasons)
    machine = _machine(a, b, s, notes)
    rows: list[dict[str, Any]] = []
    held_back: dict[str, list[str]] = {}
    for i, key in enumerate(k for k in cells_a if k in cells_b):
        a_x, b_x = cells_a[key], cells_b[key]
        platform, kind, level = key
        row: dict[str, Any] = {"platform": platform, "load": kind, "level": level,
                               "offered_a_rps": offered_a.get(key, np.nan), "offered_b_rps": offered_b.get(key, np.nan)}
        batched = kind != "c" and min(len(a_x), len(b_x)) < MIN_REPS_FOR_T
        if batched:
            a_x, b_x = batches(a_x), batches(b_x)
        n_a, n_b = sum(len(x) for x in a_x), sum(len(x) for x in b_x)
        if min(n_a, n_b) < 2:
            row.update(n_a=n_a, n_b=n_b, verdict="same")
            notes.append(f"{_cell(row)}: too few served requests to compare ({n_a} vs {n_b})")
        else:
            row.update(compare_cell(a_x, b_x, s, s.seed + i, machine))
            if batched and row["test"].startswith("welch"):
                row["test"] = BATCH_MEANS
        held = _held_back(row, batched, s)
        if held:
            row["verdict"] = held
            held_back.setdefault(held, []).append(
                _cell(row) + (f" (A {row['offered_a_rps']:.1f}, B {row['offered_b_rps']:.1f} req/s)"
                              if held == DIFFERENT_LOAD else ""))
        rows.append(row)
    for held, cells in held_back.items():
        notes.append(f"{', '.join(cells)}: {HELD_BACK[held]}")
    missing = [k for k in cells_a if k not in cells_b] + [k for k in cells_b if k not in cells_a]
    if missing:  # a cell only one run has (--common-cells), or whose every run aborted in one of them
        notes.append("cells only one run has served requests for, not compared: "
                     + ", ".join(_cell({"platform": p, "load": k, "level": v}) for p, k, v in missing))
    order = {p: i for i, p in enumerate(a.platforms)}
    table = pd.DataFrame(rows)
    if len(table):
        table = table.assign(_k=table["platform"].map(order)).sort_values(["load", "_k", "level"]).drop(
            columns="_k").reset_index(drop=True)
    return table, notes


def _levels(cells: dict) -> str:
    return ", ".join(_cell({"platform": p, "load": k, "level": v}) for p, k, v in sorted(cells))


def _cell(row: dict[str, Any] | pd.Series) -> str:
    level = row["level"]
    if row["load"] == "c":
        return f"{row['platform']} c={int(level)}"
    unit = " % of capacity" if row["load"] == "rate %" else " req/s"
    return f"{row['platform']} at {level:g}{unit}"


# ------------------------------------------------------------------------------------------------- outputs
def figure(table: pd.DataFrame, s: Settings, path: Path, platforms: list[str]) -> Path | None:
    """Relative change of the mean per cell with its interval, the ±threshold band, coloured by verdict."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    d = table[table["verdict"].notna() & table.get("mean_diff_pct", pd.Series(dtype=float)).notna()] if len(
        table) else table
    if not len(d):
        return None
    colors = {"slower": "#d62728", "faster": "#2ca02c", "same": "#555555", DIFFERENT_LOAD: "#bbbbbb",
              SATURATED: "#e3b778", ONE_RUN: "#9ecae1"}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(d) + 2), 4.5))
    x = np.arange(len(d))
    for xi, (_, r) in zip(x, d.iterrows(), strict=True):
        err = [[r["mean_diff_pct"] - r["mean_diff_pct_ci_low"]], [r["mean_diff_pct_ci_high"] - r["mean_diff_pct"]]]
        ax.errorbar(xi, r["mean_diff_pct"], yerr=err, fmt="o", capsize=4, color=colors[r["verdict"]])
    # the axis fits the judged cells; a saturated or different-load cell far outside is cut at the edge, its
    # value written there, so it does not flatten every other interval
    judged = d[~d["verdict"].isin(list(HELD_BACK))]
    if len(judged):
        lo = min(float(judged["mean_diff_pct_ci_low"].min()), -2 * s.threshold_pct)
        hi = max(float(judged["mean_diff_pct_ci_high"].max()), 2 * s.threshold_pct)
        pad = 0.1 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        ax.set_ylim(lo, hi)
        for xi, (_, r) in zip(x, d.iterrows(), strict=True):
            v = r["mean_diff_pct"]
            if v > hi or v < lo:
                edge = hi if v > hi else lo
                ax.plot(xi, edge, "^" if v > hi else "v", color=colors[r["verdict"]])
                ax.annotate(f"{v:+.0f} %", (xi, edge), textcoords="offset points", xytext=(0, -12 if v > hi else 6),
                            ha="center", fontsize=7)
    ax.axhspan(-s.threshold_pct, s.threshold_pct, color="#cccccc", alpha=0.4,
               label=f"±{s.threshold_pct:g} % threshold")
    ax.axhline(0, color="black", linewidth=0.8)
    for name, color in colors.items():
        ax.plot([], [], "o", color=color, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels([_cell(r) for _, r in d.iterrows()], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("mean response time, B vs A (%)")
    ax.set_title(f"B vs A per cell: change of the mean, {100 * s.level:g} % two-stage bootstrap interval")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _int(value: Any) -> str:
    return str(int(value)) if isinstance(value, int | float) and math.isfinite(value) else "?"


def _pm(row: pd.Series, name: str, unit: str = " ms", digits: int = 1) -> str:
    est = row.get(name, np.nan)
    if not isinstance(est, int | float) or not math.isfinite(est):
        return "n/a"
    lo, hi = row.get(f"{name}_ci_low", np.nan), row.get(f"{name}_ci_high", np.nan)
    return f"{est:+.{digits}f}{unit} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def write(a: Results, b: Results, table: pd.DataFrame, notes: list[str], s: Settings, out: Path) -> tuple[Path, Path]:
    """compare.md, a self-contained compare.html, tables/compare.csv and figures/compare.png under ``out``."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    table.to_csv(out / "tables" / "compare.csv", index=False)
    fig = figure(table, s, out / "figures" / "compare.png", a.platforms)
    counts = table["verdict"].value_counts().to_dict() if len(table) else {}
    level = f"{100 * s.level:g} %"
    blocks: list[Any] = [
        doc.Bullets([f"**A** {a.manifest['run_id']} ({a.folder}); **B** {b.manifest['run_id']} ({b.folder})",
                     f"**Threshold** {s.threshold_pct:g} % of A's mean; test alpha {s.alpha:g}; "
                     f"{s.resamples} bootstrap resamples, seed {s.seed}",
                     "**Verdicts**: " + ", ".join(f"{counts.get(v, 0)} {v}"
                                   for v in ("slower", "same", "faster", *HELD_BACK))]),
        doc.Heading("Per cell"),
        doc.Table(*doc._rows(table, [
            ("cell", _cell),
            ("requests (repetitions) A / B", lambda r: f"{int(r['n_a'])} ({_int(r.get('reps_a'))}) / "
                                                       f"{int(r['n_b'])} ({_int(r.get('reps_b'))})"),
            ("mean A → B ms", lambda r: f"{r.get('mean_a_ms', np.nan):.1f} → {r.get('mean_b_ms', np.nan):.1f}"),
            (f"mean B - A, % [{level} CI]", lambda r: _pm(r, "mean_diff_pct", " %")),
            ("median B - A ms [CI]", lambda r: _pm(r, "median_diff_ms")),
            ("p99 B - A ms [CI]", lambda r: _pm(r, "p99_diff_ms") if math.isfinite(r.get("p99_diff_ms", np.nan))
             else f"too few samples (needs {samples_needed(99)})"),
            ("slow share A / B", lambda r: f"{100 * r.get('slow_share_a', np.nan):.1f} / "
                                           f"{100 * r.get('slow_share_b', np.nan):.1f} %"),
            ("p (B slower)", lambda r: f"{r.get('p_b_slower', np.nan):.3g}"),
            ("verdict", lambda r: r["verdict"].upper() if r["verdict"] != "same" else "same"),
        ]) if len(table) else ([], []), "compare.csv",
            "Headline: the mean (it repeats where a bimodal cell's median jumps between modes), B - A in % of A "
            f"with a {level} two-stage bootstrap interval (repetitions drawn with replacement, then each drawn "
            "repetition's requests), so the spread between repetitions, not only between requests, is in it; "
            "medians and p99s (only with 662 requests on both sides) likewise. slow share: requests at least 1 s "
            "(one SYN retransmission) slower than A's 10th percentile. p: one-sided Welch t-test of B's repetition "
            "means against A's (Mann-Whitney U over requests where a side has fewer than 3 repetitions). slower = "
            f"p < {s.alpha:g} and the mean's whole interval above +{s.threshold_pct:g} %; faster likewise below "
            f"-{s.threshold_pct:g} %; else same within noise."
            + (" B's times were divided by the machine-speed ratio of the notes (--adjust-for-machine)."
               if s.adjust_for_machine else "")),
        doc.Figure(fig, "Change of the mean per cell with its bootstrap interval; the grey band is the threshold."),
    ]
    if notes:
        blocks += [doc.Heading("Notes"), doc.Bullets(notes)]
    title = f"Comparison: {b.manifest['run_id']} (B) against {a.manifest['run_id']} (A)"
    md, html_path = out / "compare.md", out / "compare.html"
    md.write_text(doc._markdown(title, blocks, out), encoding="utf-8")
    html_path.write_text(doc._html(title, blocks), encoding="utf-8")
    return md, html_path


# ------------------------------------------------------------------------------------------------------ CLI
DESCRIPTION = ("Compare two benchmark runs, A (the baseline) and B: per platform x concurrency (and per offered rate "
               "when both have open-loop runs) the difference of means (the headline), medians and p99s with "
               "two-stage bootstrap intervals (repetitions, then their requests), a one-sided test of 'B slower than "
               "A' (Welch's t over repetition means), and a verdict "
               "per cell: slower, faster or same within noise. Writes compare.md, compare.html, tables/compare.csv "
               "and figures/compare.png.")
EPILOG = (f"Exit status: {EXIT_SAME} no cell is slower beyond the threshold, {EXIT_SLOWER} at least one is, "
          f"{EXIT_INCOMPARABLE} the runs cannot be compared (a folder cannot be read, or they differ in payload, "
          "model, or matrix — the last only without --common-cells; the message names each difference). A run "
          "compared with itself is 'same' everywhere.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="the baseline run folder, results/<run_id>/")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the run to judge against it")
    p.add_argument("--threshold", type=float, default=Settings.threshold_pct, metavar="PCT",
                   help="smallest change of a cell's mean, in %% of A's, that counts as slower or faster; set it "
                        "at or above the noise floor an A/A comparison shows on your machine (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=Settings.alpha,
                   help="significance level of the one-sided tests (default: %(default)s)")
    p.add_argument("--confidence", type=float, default=Settings.level, metavar="LEVEL",
                   help="confidence level of the bootstrap intervals, between 0 and 1 (default: %(default)s)")
    p.add_argument("--bootstrap-resamples", type=int, default=Settings.resamples, metavar="N",
                   help="bootstrap resamples per cell and statistic (default: %(default)s)")
    p.add_argument("--seed", type=int, default=Settings.seed,
                   help="random seed of the bootstrap, so a comparison can be reproduced exactly "
                        "(default: %(default)s)")
    p.add_argument("--common-cells", action="store_true",
                   help="compare the cells both runs have when their matrices differ (e.g. a baseline from before "
                        "a platform was added), instead of exiting with status 2; payload and model must still match")
    p.add_argument("--adjust-for-machine", action="store_true",
                   help="divide B's times by how much longer B's machine took for the fixed reference workload "
                        "than A's (runs.csv reference_ms, timed before each ab run), so a slower host is not "
                        "read as a slower deployment; both runs must have recorded it")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where to write the comparison (default: RUN_B/compare-<run id of A>); files in it are "
                        "overwritten")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not 0 < args.confidence < 1:
        parser.error(f"--confidence must be between 0 and 1, got {args.confidence}")
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.threshold < 0:
        parser.error(f"--threshold must be >= 0, got {args.threshold}")
    if args.bootstrap_resamples < 100:
        parser.error("--bootstrap-resamples must be at least 100")
    s = Settings(args.threshold, args.alpha, args.confidence, args.bootstrap_resamples, args.seed, args.common_cells,
                 args.adjust_for_machine)
    try:
        a, b = load_results(args.run_a), load_results(args.run_b)
        table, notes = compare(a, b, s)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INCOMPARABLE
    except Incomparable as exc:
        print(f"cannot compare {args.run_a} with {args.run_b}:", file=sys.stderr)
        for reason in exc.reasons:
            print(f"  - {reason}", file=sys.stderr)
        return EXIT_INCOMPARABLE
    out = args.out or Path(args.run_b) / f"compare-{a.manifest['run_id']}"
    md, html_path = write(a, b, table, notes, s, out)
    for _, r in table.iterrows():
        print(f"{_cell(r):28} {r['verdict']:7} mean {_pm(r, 'mean_diff_pct', ' %')}, "
              f"p(B slower) {r.get('p_b_slower', np.nan):.3g}")
    for note in notes:
        print(f"note: {note}")
    slower = table[table["verdict"] == "slower"] if len(table) else table
    print(f"verdict: {len(slower)} of {len(table)} cell(s) slower beyond {s.threshold_pct:g} %"
          + (": " + ", ".join(_cell(r) for _, r in slower.iterrows()) if len(slower) else ""))
    print(f"report:  {md}\n         {html_path}")
    print(json.dumps({"slower": len(slower), "cells": len(table)}))
    return EXIT_SLOWER if len(slower) else EXIT_SAME
