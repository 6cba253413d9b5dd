"""`python -m analysis compare RUN_A RUN_B`: is B worse than A, beyond the noise? A verdict per cell and an exit
status for CI that a broken run cannot pass.

A cell is one platform at one concurrency (closed loop, ab), or at one offered rate (open loop, when both folders
hold rate_runs.csv / rate_requests.csv). Its samples are its repetitions (for an open-loop rate: its runs).

- Latency headline: the ratio B / A of the **geometric means of the repetitions' mean times**, with a Student-t
  interval on the log repetition means (Welch: each side its own variance). Repetitions, not requests, are the
  samples: requests of one repetition share its moment on the machine (its clock, its neighbours, the server's
  queue). The mean of each repetition repeats where the median does not (the function's c=20 cell is bimodal:
  requests that waited out a listen-backlog SYN retry take ~1 s longer), and its logarithm is close enough to
  normal for the t-interval to keep its coverage with 3 to 5 repetitions, which a bootstrap over 5 repetitions
  does not (measured by scripts/compare-false-alarms.py).
- **slower** when the one-sided t-test of "B / A > 1 + threshold" rejects after Holm's correction over every test
  that counts for the exit status, *and* the whole interval lies above +threshold; **faster** likewise below
  -threshold (its own Holm family); else **same**.
- Errors: the share of attempts without a complete 2xx answer, per cell. A one-sided Fisher exact test of two
  proportions (B's failures given both runs' attempts and total failures are hypergeometric), its counts divided by
  the repetitions' over-dispersion where they disagree more than binomial chance allows (and then referred to t on
  the dispersion's degrees of freedom, as it is estimated from the repetitions). **more errors** when
  it rejects after Holm's correction (same family as "slower") and B's share is more than --error-threshold
  points above A's.
- Not judged, and why: a cell with fewer than 3 repetitions on a side ("one run": its run-to-run noise is
  unmeasured), an open-loop cell at a different offered load or at or past capacity, a cell with an invalid
  open-loop run. **not comparable**: a cell only one run has, or one with too few served requests. **busy
  machine**: a repetition of the cell was flagged busy (runs.csv `busy`) and fewer than 3 repetitions of a side
  were not; with 3 or more on each side, the cell is judged on those and a note names the ones left out.
- Machine speed (`--adjust-for-machine`): B's closed-loop times are divided by the ratio of the runs'
  `reference_ms`, except the fixed ~1 s of a SYN retransmission (a kernel timer, not CPU work); open-loop cells are
  not adjusted (their offered rates already follow each run's own capacity, and queueing near the knee is not
  proportional to the service time).

Exit status: 0 nothing worse; 1 a cell is slower or has more errors; 2 the comparison cannot be trusted: the runs
differ in payload, model or matrix (nothing is written), or a run is incomplete, a cell ran on a busy machine with
fewer than 3 quiet repetitions on a side, a cell is not comparable, or no cell could be judged (the report is
written, and the reasons printed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from analysis import capacity, headline, tables
from analysis import report as doc
from analysis.bench.schema import samples_needed
from analysis.load import Results, ResultsError, load_results
from analysis.summarize import per_run

EXIT_SAME, EXIT_SLOWER, EXIT_INCOMPARABLE = 0, 1, 2
SLOWER, FASTER, SAME = "slower", "faster", "same"
MORE_ERRORS, FEWER_ERRORS, NOT_JUDGED = "more errors", "fewer errors", "not judged"
# the cell's own interval lies beyond the threshold, but its test does not reject once corrected for the family
SLOWER_UNCONFIRMED, FASTER_UNCONFIRMED = "slower (unconfirmed)", "faster (unconfirmed)"
DIFFERENT_LOAD = "different load"  # an open-loop cell whose offered rates differ beyond the threshold: not compared
SATURATED = "saturated"  # an open-loop cell at or past its run's closed-loop capacity: not compared
ONE_RUN = "one run"  # fewer than MIN_REPS repetitions (runs) on a side: run-to-run noise unmeasured, not judged
INVALID = "invalid run"  # an open-loop run whose generator fell behind (valid = 0) or that sent nothing
NOT_COMPARABLE = "not comparable"  # only one run has the cell, or too few served requests to judge it
BUSY = "busy machine"  # repetitions ran while something else competed for the CPUs, too few others to judge on
SYN_RETRY_MS = 1000.0  # Linux's initial SYN retransmission timeout: the gap of the slow mode
ADJUST_CUT_QUANTILE = 0.01  # --adjust-for-machine: requests 1 s above this quantile of A's waited out a SYN retry
MIN_REPS = 3  # repetitions per side for a judged cell
MIN_SERVED_PER_REP = 10  # served requests a repetition needs for its mean to count
BATCHES = 5  # a single run is split into this many batches for a descriptive interval
LOG_T = "t over log repetition means"
LOG_T_BATCHES = "t over log batch means (within one run)"


@dataclass(frozen=True)
class Settings:
    threshold_pct: float = 5.0
    alpha: float = 0.05
    level: float = 0.95
    error_threshold_pp: float = 1.0  # smallest change of a cell's error share, in percentage points, that counts
    common_cells: bool = False  # compare the cells both runs have instead of refusing another matrix
    adjust_for_machine: bool = False  # divide B's times by the ratio of the runs' reference_ms


class Incomparable(Exception):
    """The two runs measured different things; ``reasons`` names each difference."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


@dataclass
class Comparison:
    """The table of cells, notes, the reasons for exit status 2 (``problems``) and the Holm family's size."""

    table: pd.DataFrame
    notes: list[str]
    problems: list[str]
    family: dict[str, int] = field(default_factory=dict)

    @property
    def worse(self) -> pd.DataFrame:
        t = self.table
        return t[(t["verdict"] == SLOWER) | (t["errors_verdict"] == MORE_ERRORS)] if len(t) else t

    @property
    def exit_status(self) -> int:
        if self.problems:
            return EXIT_INCOMPARABLE
        return EXIT_SLOWER if len(self.worse) else EXIT_SAME


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


def comparability(a: Results, b: Results, common_cells: bool = False) -> tuple[list[str], list[str], list[str]]:
    """(reasons the runs cannot be compared at all, problems that make the comparison untrustworthy (exit 2, the
    report still written), notes). With ``common_cells`` another matrix is only a note."""
    ma, mb = a.manifest, b.manifest
    reasons, problems, notes = [], [], []
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
            problems.append(f"run {name} ({r.manifest['run_id']}) is incomplete: " + "; ".join(r.incomplete_reasons))
        if any(c.get("busy") for c in r.manifest.get("system_checks") or []):
            notes.append(f"run {name} started on a busy machine (its report says what competed); each cell's own "
                         "repetitions are checked below")
    return reasons, problems, notes


# --------------------------------------------------------------------------------------------------- samples
Reps = list[np.ndarray]  # one array of served request times per repetition (or per open-loop run)


@dataclass
class Side:
    """One run's samples of one cell: per repetition (or open-loop run) its served times, attempts and failures."""

    reps: Reps = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    busy: dict[int, str] = field(default_factory=dict)  # position in `reps` -> "r<repetition> (why)", flagged busy
    invalid: list[str] = field(default_factory=list)  # open-loop runs left out: "<run_key>: why"
    offered_rps: float = math.nan

    def without_busy(self) -> Side:
        """The repetitions not flagged busy."""
        keep = [i for i in range(len(self.reps)) if i not in self.busy]
        return Side(reps=[self.reps[i] for i in keep], attempts=[self.attempts[i] for i in keep],
                    errors=[self.errors[i] for i in keep], invalid=list(self.invalid), offered_rps=self.offered_rps)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else 0


def closed_loop_cells(r: Results) -> dict[tuple[str, str, float], Side]:
    """(platform, "c", concurrency) -> its repetitions (extra ones included): served requests' total_ms, and the
    run's attempts (served + errors, runs.csv) and errors, and which repetitions runs.csv flags busy."""
    runs = r.runs[r.runs["experiment"] == "concurrency"]
    req = r.requests[(r.requests["experiment"] == "concurrency") & (r.requests["served"] == 1)]
    times = {k: g["total_ms"].to_numpy(float) for k, g in req.groupby("run_key", sort=False)}
    cells: dict[tuple[str, str, float], Side] = {}
    for (p, c), g in runs.groupby(["platform", "concurrency"], sort=False):
        side = cells.setdefault((str(p), "c", float(c)), Side())
        for row in g.sort_values("repetition").to_dict("records"):
            served, errors = _int(row.get("served")), _int(row.get("errors"))
            x = times.get(row["run_key"], np.empty(0))
            side.reps.append(x)
            side.errors.append(errors)
            side.attempts.append(served + errors if served + errors else len(x))
            if _int(row.get("busy")) == 1:
                side.busy[len(side.reps) - 1] = (f"r{int(row['repetition'])} (others' CPU "
                                                 f"{row.get('others_cpu_pct', math.nan):.0f} %, steal "
                                                 f"{row.get('steal_pct', math.nan):.0f} %)")
    return cells


def open_loop_cells(r: Results) -> dict[tuple[str, str, float], Side]:
    """(platform, "rate %" or "rate rps", level) -> its open-loop runs: the valid ones' served latency_ms in schedule
    order, scheduled requests and failed ones (errors + dropped); the invalid ones (valid = 0, or an outcome other
    than ok) named apart. Empty when the folder has no open-loop tables. Read through the schema (capacity.load).
    A capacity search's probes (search_probe set) are left out: their rates depend on the run's own measurements, so
    they are the search's evidence, compared as brackets (search_notes), not cells of a common matrix."""
    runs, req = capacity.load(r)
    if len(runs) and "search_probe" in runs:
        runs = runs[pd.to_numeric(runs["search_probe"], errors="coerce").isna()]
    if not len(runs):
        return {}
    served = req[req["served"] == 1] if len(req) else req
    by_run = {k: g.sort_values("scheduled_s")["latency_ms"].to_numpy(float) for k, g in served.groupby("run_key")}
    cells: dict[tuple[str, str, float], Side] = {}
    for row in runs.to_dict("records"):
        pct = float(row.get("capacity_pct", math.nan))
        key = ((str(row["platform"]), "rate %", pct) if math.isfinite(pct)
               else (str(row["platform"]), "rate rps", round(float(row["offered_rps"]), 3)))
        side = cells.setdefault(key, Side())
        outcome = row.get("outcome") if isinstance(row.get("outcome"), str) else "ok"
        valid = row.get("valid")
        if outcome != "ok" or (isinstance(valid, int | float) and math.isfinite(valid) and valid != 1):
            why = row.get("invalid_reason") if isinstance(row.get("invalid_reason"), str) else None
            side.invalid.append(f"{row['run_key']}: " + (why or (f"outcome {outcome}" if outcome != "ok"
                                                                 else "the generator fell behind (valid = 0)")))
            continue
        side.reps.append(by_run.get(row["run_key"], np.empty(0)))
        side.attempts.append(_int(row.get("scheduled")))
        side.errors.append(_int(row.get("errors")) + _int(row.get("dropped")))
        side.offered_rps = float(row["offered_rps"])
    return cells


def search_notes(a: Results, b: Results) -> list[str]:
    """One line per platform that had a capacity search in either run: both brackets and how far apart their
    midpoints are (shown, not judged: a bracket is the search's resolution, not a sample with an interval)."""
    brackets: dict[str, dict[str, tuple[float, float]]] = {}
    shares: dict[str, dict[str, tuple[float, float]]] = {}  # a calibrated search's bracket in % (rate.rate_search)
    for name, r in (("A", a), ("B", b)):
        found = capacity.load_searches(r)
        for row in found.to_dict("records") if len(found) else []:
            brackets.setdefault(str(row["platform"]), {})[name] = (float(row["low_rps"]), float(row["high_rps"]))
            pct = (capacity.number_or_nan(row.get("low_pct")), capacity.number_or_nan(row.get("high_pct")))
            if any(map(math.isfinite, pct)):
                shares.setdefault(str(row["platform"]), {})[name] = pct
    notes = []
    for platform, sides in brackets.items():
        text = "; ".join(f"{n} {_bracket(*sides[n])} req/s" for n in ("A", "B") if n in sides)
        if len(sides) == 2 and all(map(math.isfinite, (*sides["A"], *sides["B"]))):
            mid_a, mid_b = sum(sides["A"]) / 2, sum(sides["B"]) / 2
            text += f" (midpoints {100 * (mid_b - mid_a) / mid_a:+.1f} %)"
        pct = shares.get(platform, {})
        if pct:
            text += "; of the throughput measured before each probe: " + "; ".join(
                f"{n} {_bracket(*pct[n])} %" for n in ("A", "B") if n in pct)
            if len(pct) == 2 and all(map(math.isfinite, (*pct["A"], *pct["B"]))):
                mid_a, mid_b = sum(pct["A"]) / 2, sum(pct["B"]) / 2
                text += f" (midpoints {100 * (mid_b - mid_a) / mid_a:+.1f} %)"
        elif len(sides) == 1:
            text += ", only this run searched"
        notes.append(f"capacity at the objective by search, {platform}: {text}; not judged")
    return notes


def headline_notes(a: Results, b: Results) -> list[str]:
    """One line per function platform both runs measured against the same baseline: each run's headline ratio
    (analysis/headline.py: the paired step's median at c=1, the repetitions' geometric mean at each concurrency)
    and B's change from A's, so that two back-to-back runs show whether their headline repeats (shown, not judged:
    each cell's own change is judged above)."""
    if a.baseline is None or a.baseline != b.baseline:
        return []
    tables_ = [headline.headline_table(r, per_run(r)) for r in (a, b)]
    if not all(len(t) for t in tables_):
        return []
    notes = []
    for platform in [p for p in a.function_platforms if p in b.function_platforms]:
        parts = []
        rows = [t[t["platform"] == platform].set_index(["source", "concurrency"])["ratio"] for t in tables_]
        for key in [k for k in rows[0].index if k in rows[1].index]:
            ra, rb = float(rows[0][key]), float(rows[1][key])
            if not (math.isfinite(ra) and math.isfinite(rb)):
                continue
            what = "c=1 paired median" if key[0] == "paired" else f"c={key[1]}" + (
                " blocks" if key[0] == "probe blocks" else "")
            parts.append(f"{what} {ra:.2f}x → {rb:.2f}x ({100 * (rb - ra) / ra:+.1f} %)")
        if parts:
            notes.append(f"headline ratio {platform} / {a.baseline}, A → B: " + "; ".join(parts) + "; not judged")
    return notes


def _bracket(low: float, high: float) -> str:
    if not math.isfinite(low):
        return f"< {high:g}"
    if not math.isfinite(high):
        return f"> {low:g}"
    return f"[{low:g}, {high:g}]"


def batches(runs: Reps) -> Reps:
    """Each run split into BATCHES consecutive batches of its requests in schedule order (batch means), for a side
    with fewer than MIN_REPS repetitions: a descriptive interval of the spread within that run, never a verdict."""
    out: Reps = []
    for times in runs:
        if len(times):
            out += [b for b in np.array_split(times, min(BATCHES, len(times))) if len(b)]
    return out


def machine_reference(r: Results) -> np.ndarray | None:
    """The reference_ms of the run's concurrency runs (how fast its machine was, before each); None when the run
    recorded fewer than three (runs made before the column existed)."""
    ref = tables.reference_ms(r)
    return ref if len(ref) >= 3 else None


@dataclass(frozen=True)
class Machine:
    """B's machine against A's: ``ratio`` of the medians of reference_ms, and the variance of its logarithm (the
    large-sample variance of a median, pi/2 * var / n, per side), added to a cell's when B is adjusted."""

    ratio: float
    log_var: float


def adjust(times: np.ndarray, ratio: float, cut: float) -> np.ndarray:
    """B's times on A's machine: divided by ``ratio``, except the fixed SYN retransmission delay of a request in the
    slow mode (at or above ``cut``, in B's times), which a faster CPU does not shorten."""
    slow = times >= cut
    return np.where(slow, (times - SYN_RETRY_MS) / ratio + SYN_RETRY_MS, times / ratio)


# ------------------------------------------------------------------------------------------------ statistics
def log_t(a: np.ndarray, b: np.ndarray, level: float, threshold_pct: float,
          extra_var: float = 0.0) -> dict[str, float]:
    """Welch's t on the logarithms of two samples of positive means (repetition means): the ratio of geometric
    means B / A with its ``level`` interval, and one-sided p-values of "B / A > 1 + threshold" (p_b_slower) and
    "B / A < 1 - threshold" (p_b_faster). ``extra_var`` is added to the variance of the log ratio."""
    la, lb = np.log(a), np.log(b)
    d = float(lb.mean() - la.mean())
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    se = math.sqrt(va + vb + extra_var)
    denom = (va**2 / (len(la) - 1) if va else 0.0) + (vb**2 / (len(lb) - 1) if vb else 0.0)
    df = (va + vb) ** 2 / denom if denom > 0 else float(len(la) + len(lb) - 2)
    up = math.log1p(threshold_pct / 100)
    down = math.log1p(-threshold_pct / 100) if threshold_pct < 100 else -math.inf
    if se > 0:
        q = float(st.t.ppf(0.5 + level / 2, df))
        lo, hi = d - q * se, d + q * se
        p_slower = float(st.t.sf((d - up) / se, df))
        p_faster = float(st.t.cdf((d - down) / se, df)) if math.isfinite(down) else 1.0
    else:  # identical repetitions: the difference is known exactly
        lo = hi = d
        p_slower, p_faster = float(d > up), float(d < down)
    return {"mean_ratio": math.exp(d), "mean_ratio_ci_low": math.exp(lo), "mean_ratio_ci_high": math.exp(hi),
            "df": df, "p_b_slower": p_slower, "p_b_faster": p_faster}


def error_test(a: Side, b: Side) -> dict[str, float]:
    """Error shares and the one-sided tests of "B fails more" / "B fails less".

    Fisher's exact test: given the attempts of each run and the total k of failures, B's count is hypergeometric
    under "same error rate" (exact at any rate, where a binomial with B's share of the attempts is conservative
    once failures are frequent). Failures cluster in repetitions (a backlog that overflowed, a bad minute), so the
    counts are first divided by the over-dispersion phi = Pearson chi-square / degrees of freedom of every
    repetition of both runs around its own run's share, where that exceeds 1 (the quasi-binomial correction: each
    run its own rate, phi shared; a run without failures adds no degrees of freedom), and rounded to whole
    numbers: n attempts clustered phi-fold weigh as much as n / phi independent ones. A phi estimated from 5 + 5
    repetitions is itself uncertain, and taking it as known makes the test reject too often (8 of 200 A/A pairs
    failed in scripts/compare-false-alarms.py --seed 1 --error-rate 0.05, 6 of 200 with this), so where it exceeds
    1 the test's p-value is read as a normal deviate and referred to Student's t on phi's degrees of freedom: the
    quasi-likelihood F(1, df) test."""
    na, nb = sum(a.attempts), sum(b.attempts)
    ea, eb = sum(a.errors), sum(b.errors)
    row = {"attempts_a": na, "attempts_b": nb, "errors_a": ea, "errors_b": eb,
           "error_pct_a": 100 * ea / na if na else math.nan, "error_pct_b": 100 * eb / nb if nb else math.nan}
    row["error_diff_pp"] = row["error_pct_b"] - row["error_pct_a"]
    chi2, dof = 0.0, 0
    for side, n, e in ((a, na, ea), (b, nb, eb)):
        share = e / n if n else 0.0
        if not 0 < share < 1:  # a run with no failures (or nothing else) says nothing about their spread
            continue
        for ni, ei in zip(side.attempts, side.errors, strict=True):
            if ni:
                chi2 += (ei - ni * share) ** 2 / (ni * share * (1 - share))
        dof += max(sum(1 for attempts in side.attempts if attempts) - 1, 0)
    phi = max(1.0, chi2 / dof) if dof else 1.0
    row["error_dispersion"], row["error_dispersion_df"] = phi, dof

    def whole(x: float) -> int:
        return math.floor(x / phi + 0.5)

    # effective counts: attempts at least 1 where there were any, failures at most the attempts
    na_e, nb_e = (max(whole(n), 1) if n else 0 for n in (na, nb))
    ea_e, eb_e = min(whole(ea), na_e), min(whole(eb), nb_e)
    k = ea_e + eb_e
    if k <= 0 or not (na_e and nb_e):
        row["p_more_errors"] = row["p_fewer_errors"] = 1.0
    else:  # X ~ Hypergeometric(population na + nb, k failures in it, nb drawn): P(X >= eb), P(X <= eb)
        row["p_more_errors"] = float(st.hypergeom.sf(eb_e - 1, na_e + nb_e, k, nb_e))
        row["p_fewer_errors"] = float(st.hypergeom.cdf(eb_e, na_e + nb_e, k, nb_e))
        if phi > 1:  # phi estimated, not known: the normal deviate of each p-value against t on its df
            for name in ("p_more_errors", "p_fewer_errors"):
                z = float(st.norm.isf(row[name]))
                if z > 0:
                    row[name] = float(st.t.sf(z, dof))
    return row


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values: the family-wise error rate stays at most alpha for any dependence."""
    m = len(p)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def describe(a: Reps, b: Reps, row: dict[str, Any]) -> None:
    """Point values beside the headline: pooled medians and p99s (a p99 only with the 662 samples it needs) and
    the share of requests in the slow mode (at least one SYN retransmission slower than A's 10th percentile)."""
    x, y = np.concatenate(a) if a else np.empty(0), np.concatenate(b) if b else np.empty(0)
    row["n_a"], row["n_b"] = len(x), len(y)
    if not (len(x) and len(y)):
        return
    row.update(median_a_ms=float(np.median(x)), median_b_ms=float(np.median(y)))
    row["median_diff_ms"] = row["median_b_ms"] - row["median_a_ms"]
    if min(len(x), len(y)) >= samples_needed(99):
        row.update(p99_a_ms=float(np.quantile(x, 0.99)), p99_b_ms=float(np.quantile(y, 0.99)))
        row["p99_diff_ms"] = row["p99_b_ms"] - row["p99_a_ms"]
    cut = float(np.quantile(x, 0.10)) + SYN_RETRY_MS
    row.update(slow_share_a=float((x >= cut).mean()), slow_share_b=float((y >= cut).mean()))


def _usable(reps: Reps) -> Reps:
    return [r for r in reps if len(r) >= MIN_SERVED_PER_REP]


def compare_cell(key: tuple[str, str, float], a: Side | None, b: Side | None, s: Settings,
                 machine: Machine | None) -> tuple[dict[str, Any], str | None]:
    """Every statistic of one cell, its verdicts before the family correction (the judged ones read "judge"),
    and why it makes the comparison untrustworthy (exit 2), or None."""
    platform, kind, level = key
    row: dict[str, Any] = {"platform": platform, "load": kind, "level": level,
                           "offered_a_rps": a.offered_rps if a else math.nan,
                           "offered_b_rps": b.offered_rps if b else math.nan}
    if a is None or b is None:
        row.update(reps_a=len(a.reps) if a else 0, reps_b=len(b.reps) if b else 0,
                   verdict=NOT_COMPARABLE, errors_verdict=NOT_JUDGED, invalid_runs="", busy_left_out="",
                   reason=f"only run {'A' if a else 'B'} has this cell")
        return row, None if s.common_cells else row["reason"]
    row["busy_left_out"] = ""
    if kind == "c" and (a.busy or b.busy):
        clean_a, clean_b = a.without_busy(), b.without_busy()
        if min(len(clean_a.reps), len(clean_b.reps)) >= MIN_REPS:
            # judged on the repetitions measured on a quiet machine, enough of them on each side; named in a note
            row["busy_left_out"] = _busy_text(a, b)
            a, b = clean_a, clean_b
    row.update(reps_a=len(a.reps), reps_b=len(b.reps))
    b_reps = b.reps
    if machine is not None and s.adjust_for_machine and kind == "c" and any(len(r) for r in a.reps):
        # the slow mode on B's machine: 1 s above the fastest requests (A's 1st percentile, scaled to B's speed): a
        # SYN retry on even a fast request lands above it, and the fast mode stays below while it spans under 1 s
        cut = machine.ratio * float(np.quantile(np.concatenate(a.reps), ADJUST_CUT_QUANTILE)) + SYN_RETRY_MS
        b_reps = [adjust(r, machine.ratio, cut) for r in b.reps]
    row["adjusted_for_machine"] = int(b_reps is not b.reps)
    row["machine_ratio"] = machine.ratio if machine else math.nan
    describe(a.reps, b_reps, row)
    row.update(error_test(a, b))
    few = min(len(a.reps), len(b.reps)) < MIN_REPS
    ua, ub = _usable(a.reps), _usable(b_reps)
    if not few and min(len(ua), len(ub)) >= MIN_REPS:  # over repetitions where both sides have enough
        means_a, means_b, row["interval"] = [r.mean() for r in ua], [r.mean() for r in ub], LOG_T
    else:  # descriptive: batches of what there is
        ba, bb = batches(a.reps if few else ua), batches(b_reps if few else ub)
        means_a, means_b, row["interval"] = [x.mean() for x in ba], [x.mean() for x in bb], LOG_T_BATCHES
    if min(len(means_a), len(means_b)) >= 2 and min(*means_a, *means_b) > 0:
        extra = machine.log_var if machine is not None and row["adjusted_for_machine"] else 0.0
        row.update(log_t(np.array(means_a), np.array(means_b), s.level, s.threshold_pct, extra))
        row["mean_a_ms"] = float(np.exp(np.mean(np.log(means_a))))
        row["mean_b_ms"] = float(np.exp(np.mean(np.log(means_b))))
        row["mean_diff_ms"] = row["mean_b_ms"] - row["mean_a_ms"]
        for suffix in ("", "_ci_low", "_ci_high"):
            row[f"mean_diff_pct{suffix}"] = 100 * (row[f"mean_ratio{suffix}"] - 1)
    else:
        row["interval"] = ""
    problem = _status(row, a, b, len(ua), len(ub), s)
    # errors are judged wherever the cell has its repetitions and was measured under the same conditions, even
    # where too few requests were served to judge latency (a run that fails everything)
    judge_errors = row["verdict"] in ("judge", NOT_COMPARABLE) and not few
    if judge_errors and row["errors_a"] + row["errors_b"] == 0:  # no test can reject: kept out of the family
        row["errors_verdict"] = SAME
    else:
        row["errors_verdict"] = "judge" if judge_errors else NOT_JUDGED
    return row, problem


def _status(row: dict[str, Any], a: Side, b: Side, usable_a: int, usable_b: int, s: Settings) -> str | None:
    """Set the cell's latency verdict when it is not judged, and its reason, most telling first ("judge" for a
    cell to judge); return why the cell makes the comparison untrustworthy (exit 2), or None."""
    kind, few = row["load"], min(len(a.reps), len(b.reps)) < MIN_REPS
    invalid = a.invalid + b.invalid
    row["invalid_runs"] = "; ".join(invalid)
    problem = None
    if kind == "c" and (a.busy or b.busy):
        row["verdict"] = BUSY
        clean = min(len(a.reps) - len(a.busy), len(b.reps) - len(b.busy))
        row["reason"] = (f"{_busy_text(a, b)}; {clean} repetition(s) on a side without them, {MIN_REPS} needed to "
                         f"judge the cell on those")
        problem = f"ran on a busy machine: {row['reason']}"
    elif invalid and few:
        row["verdict"], row["reason"] = INVALID, "; ".join(invalid)
        if min(len(a.reps) + len(a.invalid), len(b.reps) + len(b.invalid)) >= MIN_REPS:
            # a cell that would have been judged lost the runs it needed
            problem = f"fewer than {MIN_REPS} valid open-loop runs on a side ({row['reason']})"
    elif kind != "c" and _different_load(row, s):
        row["verdict"] = DIFFERENT_LOAD
        row["reason"] = f"offered A {row['offered_a_rps']:.1f}, B {row['offered_b_rps']:.1f} req/s"
    elif kind == "rate %" and row["level"] >= 100:
        row["verdict"], row["reason"] = SATURATED, "at or past the closed-loop capacity"
    elif few:
        row["verdict"] = ONE_RUN
        row["reason"] = f"{min(len(a.reps), len(b.reps))} repetition(s) on a side, {MIN_REPS} needed to judge"
    elif min(usable_a, usable_b) < MIN_REPS:
        row["verdict"] = NOT_COMPARABLE
        row["reason"] = (f"too few served requests: {usable_a} of A's {len(a.reps)} and {usable_b} of B's "
                         f"{len(b.reps)} repetitions served at least {MIN_SERVED_PER_REP}")
        problem = row["reason"]
    elif "mean_ratio" not in row:
        row["verdict"], row["reason"] = NOT_COMPARABLE, "a repetition's mean time is not positive"
        problem = row["reason"]
    else:
        row["verdict"], row["reason"] = "judge", ""
    return problem


def _busy_text(a: Side, b: Side) -> str:
    return "; ".join(f"run {n} repetition(s) {', '.join(side.busy.values())}"
                     for n, side in (("A", a), ("B", b)) if side.busy)


def _different_load(row: dict[str, Any], s: Settings) -> bool:
    off_a, off_b = row["offered_a_rps"], row["offered_b_rps"]
    # |B - A| * 100 > threshold * A rather than |B / A - 1| * 100 > threshold: exact at the boundary (105 against
    # 100 at 5 % is not "beyond"), where the ratio's rounding would say 5.000000000000004
    return bool(math.isfinite(off_a) and math.isfinite(off_b) and off_a > 0
                and abs(off_b - off_a) * 100 > s.threshold_pct * off_a)


def _machine(a: Results, b: Results, s: Settings, notes: list[str]) -> Machine | None:
    """B's machine speed against A's, or None when one run lacks reference_ms; a note says how they compared."""
    ref_a, ref_b = machine_reference(a), machine_reference(b)
    if ref_a is None or ref_b is None:
        notes.append("machine speed: " + ("neither run" if ref_a is None and ref_b is None else
                                          f"only run {'A' if ref_a is not None else 'B'}")
                     + " recorded reference_ms, so a slower machine cannot be told from a slower deployment")
        if s.adjust_for_machine:
            notes.append("--adjust-for-machine: not applied (both runs need reference_ms)")
        return None
    ratio = float(np.median(ref_b) / np.median(ref_a))
    log_var = math.pi / 2 * (np.log(ref_a).var(ddof=1) / len(ref_a) + np.log(ref_b).var(ddof=1) / len(ref_b))
    notes.append(f"machine speed: B's reference workload took {100 * (ratio - 1):+.1f} % as long as A's (median "
                 f"{np.median(ref_b):.1f} vs {np.median(ref_a):.1f} ms over {len(ref_b)} and {len(ref_a)} runs)"
                 + ("; B's closed-loop times are divided by that ratio, except the fixed 1 s of a SYN retry, and "
                    "the ratio's own uncertainty widens the intervals; open-loop cells are not adjusted "
                    "(--adjust-for-machine)" if s.adjust_for_machine
                    else "; B's times are not adjusted for it (--adjust-for-machine does)"))
    return Machine(ratio, float(log_var))


HELD_BACK = {  # verdicts of cells that are shown but not judged, and why
    DIFFERENT_LOAD: "the offered rates differ by more than the threshold between the runs (their closed-loop "
                    "capacities differ; near saturation a few % more load changes latency many-fold): not compared",
    SATURATED: "at or past the closed-loop capacity, where the queue grows for as long as the run lasts (or does not, "
               "by a few % of capacity): shown, not judged",
    ONE_RUN: f"fewer than {MIN_REPS} repetitions (open loop: runs) on a side: the interval (over batches of one run "
             "where a side has a single one) shows the spread within the run only, and the run-to-run noise (the "
             "machine's speed moves it) is unmeasured, so the cell is shown, not judged",
    INVALID: "an open-loop run whose generator fell behind its schedule (valid = 0) or that sent nothing: its "
             "latencies are not the offered load's, so it is left out and named",
}


def compare(a: Results, b: Results, s: Settings) -> Comparison:
    """Every cell of either run, judged where it can be. Raises Incomparable when they measured different things."""
    reasons, problems, notes = comparability(a, b, s.common_cells)
    cells_a, cells_b = closed_loop_cells(a), closed_loop_cells(b)
    rates_a, rates_b = open_loop_cells(a), open_loop_cells(b)
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
    notes.extend(search_notes(a, b))
    notes.extend(headline_notes(a, b))
    machine = _machine(a, b, s, notes)
    rows: list[dict[str, Any]] = []
    for key in [*cells_a, *(k for k in cells_b if k not in cells_a)]:
        row, problem = compare_cell(key, cells_a.get(key), cells_b.get(key), s, machine)
        if problem:
            problems.append(f"{_cell(row)}: {problem}")
        rows.append(row)
    table = pd.DataFrame(rows)
    family = _judge(table, s)
    held = table[table["verdict"].isin(list(HELD_BACK))] if len(table) else table
    for verdict, cells in held.groupby("verdict", sort=False) if len(held) else []:
        notes.append(f"{', '.join(_cell(r) + (f' ({r.reason})' if r.reason else '') for r in cells.itertuples())}: "
                     f"{HELD_BACK[str(verdict)]}")
    quiet = table[table["busy_left_out"].astype(str) != ""] if len(table) else table
    if len(quiet):
        notes.append(f"repetitions that ran on a busy machine left out, each cell judged on the others ({MIN_REPS} "
                     "or more a side): " + "; ".join(f"{_cell(r)} ({r['busy_left_out']})" for _, r in quiet.iterrows()))
    partly = table[(table["invalid_runs"].astype(str) != "") & (table["verdict"] != INVALID)] if len(table) else table
    if len(partly):
        notes.append("invalid open-loop runs left out, the cell judged on its valid ones: "
                     + "; ".join(f"{_cell(r)} ({r['invalid_runs']})" for _, r in partly.iterrows()))
    if s.common_cells:
        only = table[table["reason"].astype(str).str.startswith("only run")] if len(table) else table
        if len(only):
            notes.append("cells only one run has, not compared (--common-cells): "
                         + ", ".join(_cell(r) for _, r in only.iterrows()))
    if not family["latency"] and not family["errors"]:
        problems.append(f"no cell could be judged: a judged cell needs {MIN_REPS} repetitions on each side, "
                        "measured under the same conditions")
    if len(table):
        order = {p: i for i, p in enumerate([*a.platforms, *(p for p in b.platforms if p not in a.platforms)])}
        table = table.assign(_k=table["platform"].map(order)).sort_values(["load", "_k", "level"]).drop(
            columns="_k").reset_index(drop=True)
    return Comparison(table, notes, problems, family)


def _judge(table: pd.DataFrame, s: Settings) -> dict[str, int]:
    """Resolve the "judge" verdicts with Holm's correction: one family of the tests that count for the exit status
    (B slower, B more errors), another of those that do not (B faster, B fewer errors)."""
    if not len(table):
        return {"latency": 0, "errors": 0}
    lat = table.index[table["verdict"] == "judge"]
    err = table.index[table["errors_verdict"] == "judge"]
    for cols in (("p_b_slower", "p_more_errors"), ("p_b_faster", "p_fewer_errors")):
        pvals = [float(table.at[i, cols[0]]) for i in lat] + [float(table.at[i, cols[1]]) for i in err]
        adjusted = holm(pvals)
        for i, p in zip(lat, adjusted[: len(lat)], strict=True):
            table.loc[i, f"{cols[0]}_holm"] = p
        for i, p in zip(err, adjusted[len(lat):], strict=True):
            table.loc[i, f"{cols[1]}_holm"] = p
    for i in lat:
        r = table.loc[i]
        if r["p_b_slower_holm"] < s.alpha and r["mean_diff_pct_ci_low"] > s.threshold_pct:
            table.at[i, "verdict"] = SLOWER
        elif r["p_b_faster_holm"] < s.alpha and r["mean_diff_pct_ci_high"] < -s.threshold_pct:
            table.at[i, "verdict"] = FASTER
        elif r["mean_diff_pct_ci_low"] > s.threshold_pct:
            table.at[i, "verdict"] = SLOWER_UNCONFIRMED
        elif r["mean_diff_pct_ci_high"] < -s.threshold_pct:
            table.at[i, "verdict"] = FASTER_UNCONFIRMED
        else:
            table.at[i, "verdict"] = SAME
    for i in err:
        r = table.loc[i]
        if r["p_more_errors_holm"] < s.alpha and r["error_diff_pp"] > s.error_threshold_pp:
            table.at[i, "errors_verdict"] = MORE_ERRORS
        elif r["p_fewer_errors_holm"] < s.alpha and r["error_diff_pp"] < -s.error_threshold_pp:
            table.at[i, "errors_verdict"] = FEWER_ERRORS
        else:
            table.at[i, "errors_verdict"] = SAME
    return {"latency": len(lat), "errors": len(err)}


def _levels(cells: dict) -> str:
    return ", ".join(_cell({"platform": p, "load": k, "level": v}) for p, k, v in sorted(cells))


def _cell(row: dict[str, Any] | pd.Series | Any) -> str:
    get = row.get if hasattr(row, "get") else (lambda k: getattr(row, k))
    level = get("level")
    if get("load") == "c":
        return f"{get('platform')} c={int(level)}"
    unit = " % of capacity" if get("load") == "rate %" else " req/s"
    return f"{get('platform')} at {level:g}{unit}"


# ------------------------------------------------------------------------------------------------- outputs
COLORS = {SLOWER: "#d62728", FASTER: "#2ca02c", SAME: "#555555", SLOWER_UNCONFIRMED: "#f4a6a6",
          FASTER_UNCONFIRMED: "#a6dba0", DIFFERENT_LOAD: "#bbbbbb", SATURATED: "#e3b778",
          ONE_RUN: "#9ecae1", INVALID: "#9467bd", NOT_COMPARABLE: "#000000", BUSY: "#ff7f0e"}


def figure(table: pd.DataFrame, s: Settings, path: Path) -> Path | None:
    """Change of the geometric mean per cell with its interval, the ±threshold band, coloured by verdict."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    d = table[table["mean_diff_pct"].notna()] if len(table) and "mean_diff_pct" in table else table.iloc[0:0]
    if not len(d):
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(d) + 2), 4.5))
    x = np.arange(len(d))
    for xi, (_, r) in zip(x, d.iterrows(), strict=True):
        err = [[r["mean_diff_pct"] - r["mean_diff_pct_ci_low"]], [r["mean_diff_pct_ci_high"] - r["mean_diff_pct"]]]
        ax.errorbar(xi, r["mean_diff_pct"], yerr=err, fmt="o", capsize=4, color=COLORS[r["verdict"]])
    # the axis fits the judged cells; a held-back cell far outside is cut at the edge, its value written there
    judged = d[d["verdict"].isin([SLOWER, FASTER, SAME, SLOWER_UNCONFIRMED, FASTER_UNCONFIRMED])]
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
                ax.plot(xi, edge, "^" if v > hi else "v", color=COLORS[r["verdict"]])
                ax.annotate(f"{v:+.0f} %", (xi, edge), textcoords="offset points", xytext=(0, -12 if v > hi else 6),
                            ha="center", fontsize=7)
    ax.axhspan(-s.threshold_pct, s.threshold_pct, color="#cccccc", alpha=0.4,
               label=f"±{s.threshold_pct:g} % threshold")
    ax.axhline(0, color="black", linewidth=0.8)
    for name in sorted(set(d["verdict"])):
        ax.plot([], [], "o", color=COLORS[name], label=name)
    ax.set_xticks(x)
    ax.set_xticklabels([_cell(r) for _, r in d.iterrows()], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("geometric mean of repetition means, B vs A (%)")
    ax.set_title(f"B vs A per cell: {100 * s.level:g} % t-interval on log repetition means")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _num(r: pd.Series, name: str) -> float:
    v = r.get(name, math.nan)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan


def _pm(row: pd.Series, name: str, unit: str = " %", digits: int = 1) -> str:
    est = _num(row, name)
    if not math.isfinite(est):
        return "n/a"
    lo, hi = _num(row, f"{name}_ci_low"), _num(row, f"{name}_ci_high")
    return f"{est:+.{digits}f}{unit} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _ms(row: pd.Series, name: str) -> str:
    v = _num(row, name)
    return f"{v:+.1f}" if math.isfinite(v) else "n/a"


def _family_line(c: Comparison, s: Settings) -> str:
    m = c.family["latency"] + c.family["errors"]
    return (f"Holm's correction over {m} one-sided test(s) that count for the exit status ({c.family['latency']} "
            f"'slower', {c.family['errors']} 'more errors'; 'faster' and 'fewer errors' form a second family), "
            f"family-wise error rate at most {s.alpha:g}")


def write(a: Results, b: Results, c: Comparison, s: Settings, out: Path) -> tuple[Path, Path]:
    """compare.md, a self-contained compare.html, tables/compare.csv and figures/compare.png under ``out``."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    table = c.table
    table.to_csv(out / "tables" / "compare.csv", index=False)
    fig = figure(table, s, out / "figures" / "compare.png")
    counts = table["verdict"].value_counts().to_dict() if len(table) else {}
    errs = table["errors_verdict"].value_counts().to_dict() if len(table) else {}
    level = f"{100 * s.level:g} %"
    blocks: list[Any] = [
        doc.Bullets([f"**A** {a.manifest['run_id']} ({a.folder}); **B** {b.manifest['run_id']} ({b.folder})",
                     f"**Exit status {c.exit_status}**: " + {
                         EXIT_SAME: "no cell is worse", EXIT_SLOWER: "a cell is slower or fails more",
                         EXIT_INCOMPARABLE: "the comparison cannot be trusted (see below)"}[c.exit_status],
                     f"**Threshold** {s.threshold_pct:g} % of A's mean, {s.error_threshold_pp:g} points of error "
                     f"share; alpha {s.alpha:g}; {_family_line(c, s)}",
                     "**Latency**: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in
                                                 (SLOWER, SLOWER_UNCONFIRMED, SAME, FASTER_UNCONFIRMED, FASTER, BUSY,
                                                  NOT_COMPARABLE, *HELD_BACK)),
                     "**Errors**: " + ", ".join(f"{errs.get(v, 0)} {v}" for v in
                                                (MORE_ERRORS, SAME, FEWER_ERRORS, NOT_JUDGED))]),
    ]
    if c.problems:
        blocks += [doc.Heading("Why the comparison cannot be trusted (exit status 2)"), doc.Bullets(c.problems)]
    blocks += [
        doc.Heading("Per cell"),
        doc.Table(*doc._rows(table, [
            ("cell", _cell),
            ("repetitions A / B", lambda r: f"{int(r['reps_a'])} / {int(r['reps_b'])}"),
            ("mean A → B ms", lambda r: f"{_num(r, 'mean_a_ms'):.1f} → {_num(r, 'mean_b_ms'):.1f}"),
            (f"B / A - 1 [{level} CI]", lambda r: _pm(r, "mean_diff_pct")),
            ("median B - A ms", lambda r: _ms(r, "median_diff_ms")),
            ("p99 B - A ms", lambda r: _ms(r, "p99_diff_ms") if math.isfinite(_num(r, "p99_diff_ms"))
             else f"too few samples (needs {samples_needed(99)})"),
            ("slow share A / B", lambda r: f"{100 * _num(r, 'slow_share_a'):.1f} / "
                                           f"{100 * _num(r, 'slow_share_b'):.1f} %"),
            ("p slower (Holm)", lambda r: f"{_num(r, 'p_b_slower_holm'):.3g}"),
            ("verdict", lambda r: r["verdict"].upper() if r["verdict"] == SLOWER else r["verdict"]),
            ("errors A → B %", lambda r: f"{_num(r, 'error_pct_a'):.2f} → {_num(r, 'error_pct_b'):.2f}"),
            ("p more errors (Holm)", lambda r: f"{_num(r, 'p_more_errors_holm'):.3g}"),
            ("errors", lambda r: r["errors_verdict"].upper() if r["errors_verdict"] == MORE_ERRORS
             else r["errors_verdict"]),
        ]) if len(table) else ([], []), "compare.csv",
            "Headline: the geometric mean over repetitions of each repetition's mean response time, B / A - 1, with a "
            f"{level} Student-t interval on the log repetition means (Welch); the interval holds for each cell on "
            "its own. slower = the one-sided t-test of 'B / A above 1 + threshold' rejects at alpha after Holm's "
            f"correction and the whole interval lies above +{s.threshold_pct:g} %; faster likewise below "
            f"-{s.threshold_pct:g} %; (unconfirmed): the interval lies beyond the threshold but the corrected "
            "test does not reject, so it does not count; else same. Medians and p99s pool the served requests (a "
            "p99 only with 662 on both sides) and are shown, not judged. slow share: requests at least 1 s (one SYN "
            "retransmission) slower than A's 10th percentile. errors: attempts without a complete 2xx answer; "
            "more errors = Fisher's exact test of two proportions (counts divided by the repetitions' "
            f"over-dispersion) rejects after Holm and B's share is more than {s.error_threshold_pp:g} points above A's."
            + (" B's closed-loop times were divided by the machine-speed ratio of the notes, except the fixed 1 s "
               "of a SYN retry (--adjust-for-machine)." if s.adjust_for_machine else "")),
        doc.Figure(fig, "Change of the geometric mean per cell with its t-interval; the grey band is the threshold."),
    ]
    if c.notes:
        blocks += [doc.Heading("Notes"), doc.Bullets(c.notes)]
    title = f"Comparison: {b.manifest['run_id']} (B) against {a.manifest['run_id']} (A)"
    md, html_path = out / "compare.md", out / "compare.html"
    md.write_text(doc._markdown(title, blocks, out), encoding="utf-8")
    html_path.write_text(doc._html(title, blocks), encoding="utf-8")
    return md, html_path


# ------------------------------------------------------------------------------------------------------ CLI
DESCRIPTION = ("Compare two benchmark runs, A (the baseline) and B: per platform x concurrency (and per offered rate "
               "when both have open-loop runs) the ratio B / A of the geometric means of the repetitions' mean "
               "times with a t-interval on their logarithms, and the error shares with an exact two-proportion "
               "test; a verdict per cell (slower, faster, same; more errors, fewer errors, same), the tests "
               "corrected for their number with Holm's method. Cells that cannot be judged say why. Writes "
               "compare.md, compare.html, tables/compare.csv and figures/compare.png.")
EPILOG = (f"Exit status: {EXIT_SAME} no cell is worse; {EXIT_SLOWER} a cell is slower beyond the threshold or fails "
          f"more; {EXIT_INCOMPARABLE} the comparison cannot be trusted: a folder cannot be read, the runs differ in "
          "payload, model or matrix (the last only without --common-cells; nothing is written), or a run is "
          "incomplete, a cell ran on a busy machine (runs.csv busy) with fewer than 3 quiet repetitions a side, a "
          "cell only one run has or with too few served requests, or no cell could be judged (the report is "
          "written; the reasons are printed). A run "
          "compared with itself is 'same' everywhere, unless it is itself incomplete or busy.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="the baseline run folder, results/<run_id>/")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the run to judge against it")
    p.add_argument("--threshold", type=float, default=Settings.threshold_pct, metavar="PCT",
                   help="smallest change of a cell's mean, in %% of A's, that counts as slower or faster; set it "
                        "at or above the noise floor an A/A comparison shows on your machine (default: %(default)s)")
    p.add_argument("--error-threshold", type=float, default=Settings.error_threshold_pp, metavar="POINTS",
                   help="smallest change of a cell's error share, in percentage points, that counts as more or "
                        "fewer errors (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=Settings.alpha,
                   help="family-wise significance level: Holm's correction keeps the chance that any counted test "
                        "rejects by chance at most this (default: %(default)s)")
    p.add_argument("--confidence", type=float, default=Settings.level, metavar="LEVEL",
                   help="confidence level of each cell's t-interval, between 0 and 1 (default: %(default)s)")
    p.add_argument("--bootstrap-resamples", type=int, metavar="N",
                   help="ignored: compare no longer resamples (kept so that older command lines still run)")
    p.add_argument("--seed", type=int, help="ignored: compare draws no random numbers (kept so that older command "
                                            "lines still run); the same two runs always give the same result")
    p.add_argument("--common-cells", action="store_true",
                   help="compare the cells both runs have when their matrices differ (e.g. a baseline from before "
                        "a platform was added), instead of exiting with status 2; the cells only one run has are "
                        "listed as not comparable; payload and model must still match")
    p.add_argument("--adjust-for-machine", action="store_true",
                   help="divide B's closed-loop times by how much longer B's machine took for the fixed reference "
                        "workload than A's (runs.csv reference_ms, timed before each ab run), except the fixed 1 s "
                        "of a SYN retransmission, so a slower host is not read as a slower deployment; both runs "
                        "must have recorded it; open-loop cells are not adjusted")
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
    if args.error_threshold < 0:
        parser.error(f"--error-threshold must be >= 0, got {args.error_threshold}")
    s = Settings(args.threshold, args.alpha, args.confidence, args.error_threshold, args.common_cells,
                 args.adjust_for_machine)
    try:
        a, b = load_results(args.run_a), load_results(args.run_b)
        c = compare(a, b, s)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INCOMPARABLE
    except Incomparable as exc:
        print(f"cannot compare {args.run_a} with {args.run_b}:", file=sys.stderr)
        for reason in exc.reasons:
            print(f"  - {reason}", file=sys.stderr)
        return EXIT_INCOMPARABLE
    out = args.out or Path(args.run_b) / f"compare-{a.manifest['run_id']}"
    md, html_path = write(a, b, c, s, out)
    table = c.table
    for _, r in table.iterrows():
        print(f"{_cell(r):28} {r['verdict']:20} mean {_pm(r, 'mean_diff_pct')}, p(slower, Holm) "
              f"{_num(r, 'p_b_slower_holm'):.3g}; errors {_num(r, 'error_pct_a'):.2f} -> "
              f"{_num(r, 'error_pct_b'):.2f} % {r['errors_verdict']}")
    for note in c.notes:
        print(f"note: {note}")
    print(f"tests: {_family_line(c, s)}")
    for problem in c.problems:
        print(f"cannot be trusted: {problem}")
    worse = c.worse
    why = [f"{_cell(r)} ({', '.join(v for v in (r['verdict'], r['errors_verdict']) if v in (SLOWER, MORE_ERRORS))})"
           for _, r in worse.iterrows()]
    print(f"verdict: {len(worse)} of {len(table)} cell(s) worse (slower beyond {s.threshold_pct:g} % or more "
          f"errors beyond {s.error_threshold_pp:g} points)" + (": " + ", ".join(why) if why else "")
          + (f"; exit status 2: {len(c.problems)} reason(s) above" if c.problems else ""))
    print(f"report:  {md}\n         {html_path}")
    slower = int((table["verdict"] == SLOWER).sum()) if len(table) else 0
    more = int((table["errors_verdict"] == MORE_ERRORS).sum()) if len(table) else 0
    print(json.dumps({"slower": slower, "more_errors": more, "untrusted": len(c.problems), "cells": len(table),
                      "exit": c.exit_status}))
    return c.exit_status
