"""The open-loop tables: latency against offered load, the knee, and each platform's capacity at the latency
objective, beside the closed-loop (ab) sweep at the same throughput.

The objective is MLPerf LoadGen's Server-scenario shape: p99 latency <= slo_p99_ms (from the *scheduled* send time)
and failed requests (errors and drops) <= 1 % of the scheduled ones. "p99 <= SLO" is the same statement as "at most
1 % of the served requests took longer than the SLO", which can be judged with fewer requests than a p99 needs to be
*reported* (662): each share gets a Clopper-Pearson interval, so a verdict from few requests is wide, not hidden.

- A rate *meets* the objective when both shares are <= 1 %; it meets it *surely* when both intervals' upper ends
  are <= 1 %, and *breaks* it surely when either interval's lower end is > 1 %.
- Capacity at the objective: the highest offered rate that meets it with every lower rate meeting it too. Its
  interval: from the highest of those rates that meets it surely, to the first rate above the capacity that breaks
  it surely ("<" or ">" when the rates tried do not reach that far).
- The knee: the first offered rate whose median latency is more than twice the median at the lowest rate tried.
- Runs whose generator fell behind (valid = 0) and runs that sent nothing are left out of every number here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as st

from analysis.bench import schema
from analysis.bench.config import DEFAULTS
from analysis.load import REBUILD_HINT, Results, ResultsError, _read_table

OBJECTIVE_SHARE = 0.01  # p99: at most 1 % slow; errors: at most 1 %
KNEE_FACTOR = 2.0


def load(results: Results) -> tuple[pd.DataFrame, pd.DataFrame]:
    """rate_runs.csv and rate_requests.csv of the run, validated like every other table (empty when absent)."""
    frames = []
    for table in (schema.RATE_RUNS, schema.RATE_REQUESTS):
        path = Path(results.folder) / table.file
        if not path.exists():
            frames.append(pd.DataFrame({c: pd.Series(dtype=object if k.startswith("str") else float)
                                        for c, k in table.needed.items()}))
            continue
        problems: list[str] = []
        frame = _read_table(path, table.needed, problems)
        if problems:
            raise ResultsError(Path(results.folder), [*problems, REBUILD_HINT])
        frames.append(frame)
    return frames[0], frames[1]


def slo_ms(results: Results) -> float:
    return float(results.config.get("slo_p99_ms", DEFAULTS["slo_p99_ms"]))


def share_ci(k: int, n: int, level: float) -> tuple[float, float, float]:
    """k of n, as a share with its Clopper-Pearson (exact binomial) interval; NaNs when n = 0."""
    if n <= 0:
        return math.nan, math.nan, math.nan
    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(st.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(st.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return k / n, low, high


def rate_table(runs: pd.DataFrame, requests: pd.DataFrame, slo: float, level: float) -> pd.DataFrame:
    """One row per open-loop run: the run's own numbers plus the objective's two shares and their intervals.

    slow_share = served requests slower than the SLO / served; failed_share = (errors + dropped) / scheduled.
    `usable` is 0 for a run whose generator fell behind or that sent nothing: those enter no figure or capacity.
    """
    rows = []
    for _, r in runs.iterrows():
        row = r.to_dict()
        served = requests[(requests["run_key"] == r["run_key"]) & (requests["served"] == 1)]
        n_served = len(served)
        slow = int((served["latency_ms"] > slo).sum())
        scheduled = int(r["scheduled"]) if pd.notna(r["scheduled"]) else 0
        failed = int((r["errors"] if pd.notna(r["errors"]) else 0) + (r["dropped"] if pd.notna(r["dropped"]) else 0))
        s, s_lo, s_hi = share_ci(slow, n_served, level) if n_served else (1.0, 1.0, 1.0)
        f, f_lo, f_hi = share_ci(failed, scheduled, level)
        usable = bool(r.get("outcome") == "ok" and r["valid"] == 1 and scheduled > 0)
        row.update(slow=slow, slow_share=s, slow_share_ci_low=s_lo, slow_share_ci_high=s_hi, failed=failed,
                   failed_share=f, failed_share_ci_low=f_lo, failed_share_ci_high=f_hi, usable=int(usable),
                   meets=int(usable and s <= OBJECTIVE_SHARE and f <= OBJECTIVE_SHARE),
                   meets_surely=int(usable and s_hi <= OBJECTIVE_SHARE and f_hi <= OBJECTIVE_SHARE),
                   breaks_surely=int(usable and (s_lo > OBJECTIVE_SHARE or f_lo > OBJECTIVE_SHARE)))
        rows.append(row)
    columns = [*runs.columns, "slow", "slow_share", "slow_share_ci_low", "slow_share_ci_high", "failed",
               "failed_share", "failed_share_ci_low", "failed_share_ci_high", "usable", "meets", "meets_surely",
               "breaks_surely"]
    return pd.DataFrame(rows, columns=columns)


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


def capacity_table(rates: pd.DataFrame, cells: pd.DataFrame, slo: float, platforms: list[str]) -> pd.DataFrame:
    """Per platform: the closed-loop capacity, the knee, and the capacity at the objective with its interval."""
    rows = []
    for platform in platforms:
        d = rates[(rates["platform"] == platform) & (rates["usable"] == 1)].sort_values("offered_rps")
        allruns = rates[rates["platform"] == platform]
        if not len(allruns):
            continue
        closed = cells[cells["platform"] == platform]
        row = {"platform": platform, "slo_p99_ms": slo, "rates_tried": len(allruns),
               "invalid_runs": int((allruns["usable"] == 0).sum()), "usable_runs": len(d),
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
        rows.append(row)
    columns = ["platform", "slo_p99_ms", "closed_loop_capacity_rps", "capacity_rps", "capacity_ci_low_rps",
               "capacity_ci_high_rps", "capacity_pct_of_closed_loop", "capacity_served", "capacity_p99_ms",
               "knee_low_rps", "knee_high_rps", "baseline_p50_ms", "lowest_rate_rps", "highest_rate_rps",
               "rates_tried", "invalid_runs", "usable_runs"]
    return pd.DataFrame(rows, columns=columns)


def omission_table(rates: pd.DataFrame, cells: pd.DataFrame, platforms: list[str]) -> pd.DataFrame:
    """Each closed-loop cell beside the open-loop latency at the same request rate (interpolated between the offered
    rates tried, usable runs with enough samples only): what ab's closed loop leaves out."""
    rows = []
    for platform in platforms:
        d = rates[(rates["platform"] == platform) & (rates["usable"] == 1)].sort_values("offered_rps")
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
    """The report's open-loop tables: open_loop_runs, open_loop_capacity, open_loop_vs_closed (CSV names)."""
    runs, requests = load(results)
    slo = slo_ms(results)
    rates = rate_table(runs, requests, slo, level)
    if len(rates):  # report order: platforms as the report lists them, then by offered rate
        order = {p: i for i, p in enumerate(results.platforms)}
        rates = rates.sort_values(["platform", "offered_rps"], key=lambda c: c.map(order) if c.name == "platform"
                                  else c, kind="stable").reset_index(drop=True)
    cells = closed_loop_cells(results)
    return {"open_loop_runs": rates, "open_loop_capacity": capacity_table(rates, cells, slo, results.platforms),
            "open_loop_vs_closed": omission_table(rates, cells, results.platforms)}


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
