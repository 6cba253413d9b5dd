"""The open-loop tables: latency against offered load, the knee, and each platform's capacity at the latency
objective, beside the closed-loop (ab) sweep at the same throughput.

The objective is MLPerf LoadGen's Server-scenario shape, counted in one share (analysis/bench/schema.py, issue 24):
at most 1 % of the *scheduled* requests may miss it, a request missing it when it was served slower than slo_p99_ms
(latency from its scheduled send time), failed, or was dropped. With no failures that is the statement "p99 <= SLO";
failures count against the same 1 %, never as a second allowance. It can be judged with fewer requests than a p99
needs to be *reported* (662): the share gets a Clopper-Pearson interval, so a verdict from few requests is wide,
not hidden; proving it (the upper end <= 1 %) takes schema.requests_to_prove requests (368 at 95 %).

- The runs of one offered rate (its repetitions, rate_repetitions, and repeated probes of a capacity search) are
  pooled: their misses over their scheduled requests make the rate's share; p50/p99 pool their served requests.
- A rate *meets* the objective when its share is <= 1 %; *surely* when the interval's upper end is <= 1 %; it
  *breaks* it surely when the lower end is > 1 %.
- Capacity at the objective: the highest offered rate that meets it with every lower rate meeting it too. Its
  interval: from the highest of those rates that meets it surely, to the first rate above the capacity that breaks
  it surely ("<" or ">" when the rates tried do not reach that far).
- A capacity search (rate_search.csv) adds its bracket: the highest rate its probes showed to meet the objective
  (run twice) and the lowest above it shown to miss it.
- The knee: the first offered rate whose median latency is more than twice the median at the lowest rate tried.
- Runs whose generator fell behind (valid = 0) and runs that sent nothing are left out of every number here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.bench import schema
from analysis.bench.config import DEFAULTS, rate_repetition
from analysis.load import REBUILD_HINT, Results, ResultsError, _read_table

OBJECTIVE_SHARE = schema.OBJECTIVE_SHARE  # at most 1 % of the scheduled requests slow, failed or dropped
KNEE_FACTOR = 2.0
share_ci = schema.share_ci  # one definition: the capacity search judges its probes with it too
requests_to_prove = schema.requests_to_prove


def _empty(table: schema.Table) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if k.startswith("str") else float)
                         for c, k in table.needed.items()})


def _load_table(results: Results, table: schema.Table) -> pd.DataFrame:
    path = Path(results.folder) / table.file
    if not path.exists():
        return _empty(table)
    problems: list[str] = []
    frame = _read_table(path, table.needed, problems)
    if problems:
        raise ResultsError(Path(results.folder), [*problems, REBUILD_HINT])
    return frame


def load(results: Results) -> tuple[pd.DataFrame, pd.DataFrame]:
    """rate_runs.csv and rate_requests.csv of the run, validated like every other table (empty when absent)."""
    return _load_table(results, schema.RATE_RUNS), _load_table(results, schema.RATE_REQUESTS)


def load_searches(results: Results) -> pd.DataFrame:
    """rate_search.csv (issue 24): one row per capacity search; empty when the run made none."""
    return _load_table(results, schema.RATE_SEARCH)


def slo_ms(results: Results) -> float:
    return float(results.config.get("slo_p99_ms", DEFAULTS["slo_p99_ms"]))


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else 0


def rate_table(runs: pd.DataFrame, requests: pd.DataFrame, slo: float, level: float) -> pd.DataFrame:
    """One row per open-loop run: the run's own numbers plus the objective's share and its interval.

    missed = served requests slower than the SLO (slow) + errors + dropped (failed); missed_share = missed /
    scheduled, with its Clopper-Pearson interval. slow_share (of the served) and failed_share (of the scheduled) are
    kept to show where the misses came from. `usable` is 0 for a run whose generator fell behind or that sent
    nothing: those enter no figure or capacity. `repetition`: from the run key (-r<N>; none: 1).
    """
    rows = []
    for _, r in runs.iterrows():
        row = r.to_dict()
        served = requests[(requests["run_key"] == r["run_key"]) & (requests["served"] == 1)]
        slow = int((served["latency_ms"] > slo).sum())
        scheduled = _count(r["scheduled"])
        failed = _count(r["errors"]) + _count(r["dropped"])
        missed = slow + failed
        m, m_lo, m_hi = share_ci(missed, scheduled, level)
        usable = bool(r.get("outcome") == "ok" and r["valid"] == 1 and scheduled > 0)
        row.update(repetition=rate_repetition(str(r["run_key"])), slow=slow,
                   slow_share=slow / len(served) if len(served) else math.nan, failed=failed,
                   failed_share=failed / scheduled if scheduled else math.nan, missed=missed, missed_share=m,
                   missed_share_ci_low=m_lo, missed_share_ci_high=m_hi, usable=int(usable),
                   meets=int(usable and m <= OBJECTIVE_SHARE), meets_surely=int(usable and m_hi <= OBJECTIVE_SHARE),
                   breaks_surely=int(usable and m_lo > OBJECTIVE_SHARE))
        rows.append(row)
    columns = [*runs.columns, "repetition", "slow", "slow_share", "failed", "failed_share", "missed", "missed_share",
               "missed_share_ci_low", "missed_share_ci_high", "usable", "meets", "meets_surely", "breaks_surely"]
    return pd.DataFrame(rows, columns=columns)


RATE_COLUMNS = ["platform", "offered_rps", "capacity_pct", "runs", "run_keys", "scheduled", "served", "missed",
                "missed_share", "missed_share_ci_low", "missed_share_ci_high", "meets", "meets_surely",
                "breaks_surely", "p50_ms", "p99_ms"]


def rate_levels(rates: pd.DataFrame, requests: pd.DataFrame, level: float) -> pd.DataFrame:
    """One row per platform and offered rate over its usable runs (repetitions and repeated probes pooled): their
    misses over their scheduled requests, the interval, the verdicts, and p50/p99 of their pooled served requests
    (empty below schema.samples_needed)."""
    usable = rates[rates["usable"] == 1] if len(rates) else rates
    rows = []
    if len(usable):
        keyed = usable.assign(_rate=usable["offered_rps"].astype(float).round(4))
        for (platform, rate), g in keyed.groupby(["platform", "_rate"], sort=True):
            scheduled, missed = int(g["scheduled"].sum()), int(g["missed"].sum())
            m, lo, hi = share_ci(missed, scheduled, level)
            lat = requests.loc[requests["run_key"].isin(g["run_key"]) & (requests["served"] == 1),
                               "latency_ms"].to_numpy(dtype=float)
            pct = g["capacity_pct"].dropna()
            rows.append({
                "platform": platform, "offered_rps": float(rate),
                "capacity_pct": float(pct.iloc[0]) if len(pct) else math.nan, "runs": len(g),
                "run_keys": " ".join(g["run_key"]), "scheduled": scheduled, "served": len(lat), "missed": missed,
                "missed_share": m, "missed_share_ci_low": lo, "missed_share_ci_high": hi,
                "meets": int(m <= OBJECTIVE_SHARE), "meets_surely": int(hi <= OBJECTIVE_SHARE),
                "breaks_surely": int(lo > OBJECTIVE_SHARE),
                "p50_ms": float(np.percentile(lat, 50)) if len(lat) >= schema.samples_needed(50) else math.nan,
                "p99_ms": float(np.percentile(lat, 99)) if len(lat) >= schema.samples_needed(99) else math.nan,
            })
    return pd.DataFrame(rows, columns=RATE_COLUMNS)


def closed_loop_cells(results: Results) -> pd.DataFrame:
    """The ab sweep per platform and concurrency: median served req/s over its repetitions (the rule the rate step
    used for the capacity), and p50/p99 of the pooled served requests (empty below the samples they need)."""
    runs = results.runs[results.runs["experiment"] == "concurrency"]
    req = results.requests
    rows = []
    for (platform, conc), g in runs.groupby(["platform", "concurrency"], sort=True):
        times = req.loc[req["run_key"].isin(g["run_key"]) & (req["served"] == 1), "total_ms"].to_numpy(dtype=float)
        rows.append({
            "platform": platform, "concurrency": int(conc), "served_rps": float(g["served_per_s"].median()),
            "served": len(times),
            "p50_ms": float(np.percentile(times, 50)) if len(times) >= schema.samples_needed(50) else math.nan,
            "p99_ms": float(np.percentile(times, 99)) if len(times) >= schema.samples_needed(99) else math.nan,
        })
    return pd.DataFrame(rows, columns=["platform", "concurrency", "served_rps", "served", "p50_ms", "p99_ms"])


def _interp_log(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """ys at x, linear in x and in log(y), inside the rates tried only."""
    ok = np.isfinite(ys) & (ys > 0)
    xs, ys = xs[ok], ys[ok]
    if len(xs) == 0 or x < xs.min() or x > xs.max():
        return math.nan
    return float(np.exp(np.interp(x, xs, np.log(ys))))


def capacity_table(levels: pd.DataFrame, rates: pd.DataFrame, cells: pd.DataFrame, slo: float,
                   platforms: list[str], searches: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per platform: the closed-loop capacity, the knee, the capacity at the objective with its interval (from the
    offered rates, each pooling its runs: rate_levels), and the bracket of a capacity search when one ran."""
    rows = []
    for platform in platforms:
        d = levels[levels["platform"] == platform].sort_values("offered_rps")
        allruns = rates[rates["platform"] == platform]
        if not len(allruns):
            continue
        closed = cells[cells["platform"] == platform]
        row = {"platform": platform, "slo_p99_ms": slo,
               "rates_tried": int(allruns["offered_rps"].astype(float).round(4).nunique()), "runs_tried": len(allruns),
               "invalid_runs": int((allruns["usable"] == 0).sum()), "usable_runs": int(d["runs"].sum()),
               "closed_loop_capacity_rps": float(closed["served_rps"].max()) if len(closed) else math.nan}
        offered = d["offered_rps"].to_numpy(dtype=float)
        meets = d["meets"].to_numpy(dtype=bool)
        sure = d["meets_surely"].to_numpy(dtype=bool)
        broken = d["breaks_surely"].to_numpy(dtype=bool)
        n_ok = int(np.argmin(meets)) if not meets.all() else len(meets)  # leading run of rates that meet it
        row["capacity_rps"] = offered[n_ok - 1] if n_ok else math.nan
        surely = [i for i in range(n_ok) if sure[i]]  # latency grows with load: below a sure rate it holds too
        row["capacity_ci_low_rps"] = offered[surely[-1]] if surely else math.nan
        above = [i for i in range(n_ok, len(offered)) if broken[i]]
        row["capacity_ci_high_rps"] = offered[above[0]] if above else math.nan
        row["lowest_rate_rps"] = offered[0] if len(offered) else math.nan
        row["highest_rate_rps"] = offered[-1] if len(offered) else math.nan
        row["capacity_runs"] = int(d["runs"].iloc[n_ok - 1]) if n_ok else 0
        row["capacity_served"] = int(d["served"].iloc[n_ok - 1]) if n_ok else 0
        row["capacity_p99_ms"] = float(d["p99_ms"].iloc[n_ok - 1]) if n_ok else math.nan
        row["capacity_pct_of_closed_loop"] = 100 * row["capacity_rps"] / row["closed_loop_capacity_rps"]
        p50 = d["p50_ms"].to_numpy(dtype=float)
        knee_low = knee_high = math.nan
        if len(p50) and math.isfinite(p50[0]):
            above_knee = [i for i in range(1, len(p50)) if math.isfinite(p50[i]) and p50[i] > KNEE_FACTOR * p50[0]]
            if above_knee:
                knee_low, knee_high = offered[above_knee[0] - 1], offered[above_knee[0]]
        row.update(knee_low_rps=knee_low, knee_high_rps=knee_high, baseline_p50_ms=p50[0] if len(p50) else math.nan)
        row.update(_search_columns(searches, platform))
        rows.append(row)
    return pd.DataFrame(rows, columns=CAPACITY_COLUMNS)


CAPACITY_COLUMNS = ["platform", "slo_p99_ms", "closed_loop_capacity_rps", "capacity_rps", "capacity_ci_low_rps",
                    "capacity_ci_high_rps", "capacity_pct_of_closed_loop", "capacity_runs", "capacity_served",
                    "capacity_p99_ms", "knee_low_rps", "knee_high_rps", "baseline_p50_ms", "lowest_rate_rps",
                    "highest_rate_rps", "rates_tried", "runs_tried", "invalid_runs", "usable_runs", "search_low_rps",
                    "search_high_rps", "search_width_pct", "search_converged", "search_boundary_confirmed",
                    "search_probes", "search_stop_reason", "search_low_pct", "search_high_pct"]


def _search_columns(searches: pd.DataFrame | None, platform: str) -> dict[str, object]:
    """The capacity search's bracket for the platform (its last search), NaN/empty without one."""
    none = {"search_low_rps": math.nan, "search_high_rps": math.nan, "search_width_pct": math.nan,
            "search_converged": math.nan, "search_boundary_confirmed": math.nan, "search_probes": 0,
            "search_stop_reason": "", "search_low_pct": math.nan, "search_high_pct": math.nan}
    if searches is None or not len(searches):
        return none
    mine = searches[searches["platform"] == platform]
    if not len(mine):
        return none
    s = mine.iloc[-1]
    return {"search_low_rps": float(s["low_rps"]), "search_high_rps": float(s["high_rps"]),
            "search_width_pct": float(s["width_pct"]) if "width_pct" in s else math.nan,
            "search_converged": float(s["converged"]), "search_boundary_confirmed": float(s["boundary_confirmed"]),
            "search_probes": int(s["probes"]),
            "search_stop_reason": str(s["stop_reason"]) if isinstance(s.get("stop_reason"), str) else "",
            # a calibrated search (the plan step's): its bracket in % of the throughput measured before each probe
            "search_low_pct": number_or_nan(s.get("low_pct")), "search_high_pct": number_or_nan(s.get("high_pct"))}


def number_or_nan(value: object) -> float:
    """A float, NaN for a missing or empty value (a column older runs lack)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def omission_table(levels: pd.DataFrame, cells: pd.DataFrame, platforms: list[str]) -> pd.DataFrame:
    """Each closed-loop cell beside the open-loop latency at the same request rate (interpolated between the offered
    rates tried, each rate's usable runs pooled, with enough samples only): what ab's closed loop leaves out."""
    rows = []
    for platform in platforms:
        d = levels[levels["platform"] == platform].sort_values("offered_rps")
        if not len(d):
            continue
        xs = d["offered_rps"].to_numpy(dtype=float)
        for _, c in cells[cells["platform"] == platform].iterrows():
            open50 = _interp_log(c["served_rps"], xs, d["p50_ms"].to_numpy(dtype=float))
            open99 = _interp_log(c["served_rps"], xs, d["p99_ms"].to_numpy(dtype=float))
            rows.append({"platform": platform, "concurrency": c["concurrency"], "served_rps": c["served_rps"],
                         "closed_p50_ms": c["p50_ms"], "closed_p99_ms": c["p99_ms"], "open_p50_ms": open50,
                         "open_p99_ms": open99, "p50_ratio": open50 / c["p50_ms"], "p99_ratio": open99 / c["p99_ms"]})
    return pd.DataFrame(rows, columns=["platform", "concurrency", "served_rps", "closed_p50_ms", "closed_p99_ms",
                                       "open_p50_ms", "open_p99_ms", "p50_ratio", "p99_ratio"])


def tables(results: Results, level: float) -> dict[str, pd.DataFrame]:
    """The report's open-loop tables: open_loop_runs, open_loop_rates (each rate's runs pooled), open_loop_capacity,
    open_loop_vs_closed (CSV names)."""
    runs, requests = load(results)
    slo = slo_ms(results)
    rates = rate_table(runs, requests, slo, level)
    order = {p: i for i, p in enumerate(results.platforms)}

    def report_order(frame: pd.DataFrame, extra: list[str]) -> pd.DataFrame:  # platforms as listed, then by rate
        if not len(frame):
            return frame
        return frame.sort_values(["platform", "offered_rps", *extra], key=lambda c: c.map(order)
                                 if c.name == "platform" else c, kind="stable").reset_index(drop=True)

    rates = report_order(rates, ["repetition"])
    levels = report_order(rate_levels(rates, requests, level), [])
    cells = closed_loop_cells(results)
    return {"open_loop_runs": rates, "open_loop_rates": levels,
            "open_loop_capacity": capacity_table(levels, rates, cells, slo, results.platforms, load_searches(results)),
            "open_loop_vs_closed": omission_table(levels, cells, results.platforms)}


# ------------------------------------------------------------------------------------------ formatting
def rps(x: float) -> str:
    return f"{x:.1f}" if isinstance(x, int | float) and math.isfinite(x) else "n/a"


def pct_cell(value: float, served: float, percentile: float) -> str:
    """A percentile, or why there is none."""
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.0f}"
    n = int(served) if isinstance(served, int | float) and math.isfinite(served) else 0
    return f"too few samples ({n} < {schema.samples_needed(percentile)})"


NO_VALID_RUN = "no valid run (the generator fell behind in every one)"


def interval_text(row: pd.Series) -> str:
    """'[a, b]' for the capacity interval, with '<' / '>' where the rates tried do not bound it."""
    if not row["usable_runs"]:
        return "n/a"
    low, high = row["capacity_ci_low_rps"], row["capacity_ci_high_rps"]
    lo = rps(low) if math.isfinite(low) else f"< {rps(row['lowest_rate_rps'])}"
    hi = rps(high) if math.isfinite(high) else f"> {rps(row['highest_rate_rps'])}"
    return f"[{lo}, {hi}]"


def capacity_text(row: pd.Series) -> str:
    if not row["usable_runs"]:
        return NO_VALID_RUN
    if math.isfinite(row["capacity_rps"]):
        return f"{rps(row['capacity_rps'])} req/s"
    return f"below {rps(row['lowest_rate_rps'])} req/s (the lowest rate tried)"


def knee_text(row: pd.Series) -> str:
    if not row["usable_runs"]:
        return "n/a"
    if math.isfinite(row["knee_high_rps"]):
        return f"between {rps(row['knee_low_rps'])} and {rps(row['knee_high_rps'])} req/s"
    return f"not reached up to {rps(row['highest_rate_rps'])} req/s"


def search_text(row: pd.Series) -> str:
    """The capacity search's bracket: '[a, b] req/s (w %)', one-sided with '<' / '>', and whether the boundary rate
    held when it was run again."""
    if not row.get("search_probes"):
        return "not run"
    low, high = row["search_low_rps"], row["search_high_rps"]
    if not math.isfinite(low):
        text = f"< {rps(high)} req/s"
    elif not math.isfinite(high):
        text = f"> {rps(low)} req/s"
    else:
        text = f"[{rps(low)}, {rps(high)}] req/s ({100 * (high - low) / low:.0f} %)"
    low_pct, high_pct = row.get("search_low_pct", math.nan), row.get("search_high_pct", math.nan)
    if math.isfinite(low_pct) or math.isfinite(high_pct):
        shares = (f"< {high_pct:g}" if not math.isfinite(low_pct) else f"> {low_pct:g}" if not math.isfinite(high_pct)
                  else f"[{low_pct:g}, {high_pct:g}]")
        text += f" = {shares} % of the closed-loop capacity, as a share of the throughput measured before each probe"
    confirmed = row.get("search_boundary_confirmed")
    if isinstance(confirmed, int | float) and math.isfinite(confirmed):
        text += ", boundary held when repeated" if confirmed else ", boundary not repeated or not held"
    return f"{text}; {int(row['search_probes'])} probes"
