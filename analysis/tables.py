"""The report's tables as tidy DataFrames (numbers only; report.py formats them). Each function documents the
statistic it computes so a reader of the CSV knows what a column means without reading the code twice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import paper
from analysis.bench.config import DEFAULTS as BENCH_DEFAULTS
from analysis.bench.schema import ERROR_CAUSES, samples_needed
from analysis.load import Results
from analysis.stats import DEFAULT_LEVEL, Interval, Overhead, bootstrap_overhead, mean_ci, median_ci, quantile_ci


@dataclass(frozen=True)
class Settings:
    level: float = DEFAULT_LEVEL
    resamples: int = 10_000
    seed: int = 0


def _put(row: dict, name: str, ci: Interval) -> None:
    row[name] = ci.estimate
    row[f"{name}_ci_low"] = ci.low
    row[f"{name}_ci_high"] = ci.high


def _put_overhead(row: dict, prefix: str, o: Overhead) -> None:
    _put(row, f"{prefix}_ms", o.diff)
    _put(row, f"{prefix}_pct", o.pct)
    _put(row, f"{prefix}_pct_of_function", o.pct_of_function)


def probe_ok(results: Results) -> pd.DataFrame:
    return results.probe[results.probe["status"] == 200]


def paper_pair(results: Results) -> tuple[str | None, str | None]:
    """The paper's comparison in this run: its function (the first function platform reached directly) and the
    baseline. Either is None when the run lacks it."""
    return results.headline, results.baseline


def paper_values(results: Results, platform: str) -> dict:
    """The paper's Table 1 row for the platform that plays its part in this run (its function or its container)."""
    function, baseline = paper_pair(results)
    return paper.TABLE1_MS.get({function: "function", baseline: "container"}.get(platform, ""), {})


def table1(results: Results, s: Settings) -> pd.DataFrame:
    """Paper Table 1: mean prediction and response time over the sequential probe requests (HTTP 200 only),
    with t-intervals over those requests, beside the paper's values."""
    ok = probe_ok(results)
    rows = []
    for platform in results.platforms:
        sel = ok[ok["platform"] == platform]
        all_rows = results.probe[results.probe["platform"] == platform]
        ref = paper_values(results, platform)
        row = {"platform": platform, "paper_name": ref.get("label", ""), "requests_ok": len(sel),
               "requests_failed": len(all_rows) - len(sel)}
        _put(row, "prediction_ms", mean_ci(sel["prediction_ms"], s.level))
        _put(row, "response_ms", mean_ci(sel["response_ms"], s.level))
        row["paper_prediction_ms"] = ref.get("prediction_ms", np.nan)
        row["paper_response_ms"] = ref.get("response_ms", np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def table1_overhead(results: Results, s: Settings) -> pd.DataFrame:
    """Function over container for Table 1's two metrics: bootstrap over the probe requests (each platform
    resampled on its own), beside what the paper's Table 1 numbers give."""
    ok = probe_ok(results)
    function, baseline = paper_pair(results)
    f, c = ok[ok["platform"] == function], ok[ok["platform"] == baseline]
    rows = []
    for metric in ("prediction", "response"):
        col = f"{metric}_ms"
        o = bootstrap_overhead(f[col], c[col], paired=False, level=s.level, resamples=s.resamples, seed=s.seed)
        pf, pc = paper.TABLE1_MS["function"][col], paper.TABLE1_MS["container"][col]
        row = {"metric": metric, "n_function": int(f[col].notna().sum()), "n_container": int(c[col].notna().sum())}
        _put_overhead(row, "overhead", o)
        row["paper_overhead_ms"] = pf - pc
        row["paper_overhead_pct"] = 100 * (pf / pc - 1)
        row["paper_overhead_pct_of_function"] = 100 * (1 - pc / pf)
        rows.append(row)
    return pd.DataFrame(rows)


def concurrency_table(per_run: pd.DataFrame, results: Results, s: Settings) -> pd.DataFrame:
    """Per platform x concurrency, over the repetitions (one value per ab run, warm-up excluded):

    - mean (the headline: it repeats even where the median jumps between the modes of a bimodal cell) and
      throughput (served requests per second, runs.csv served_per_s: failed attempts are not throughput): the mean
      of the runs' values with a Student-t interval across repetitions;
    - median: the median of the runs' medians with the order-statistic interval across repetitions, whose
      achieved coverage is ``median_ci_level`` (below 95 % when there are fewer than 6 repetitions);
    - p95, p99: of the cell's timed replies pooled over its repetitions (``timed``: ab's -g rows, which are the
      served requests plus any non-2xx replies, since those rows carry no status), with the order-statistic
      interval over them (achieved coverage in ``p95_ms_ci_level``); empty below the samples a percentile needs
      (schema.samples_needed: 130 for a p95, 662 for a p99), which the report shows as "too few samples";
    - served: the complete 2xx answers (timed replies less non-2xx ones), so served + errors is every attempt;
    - median_cv_pct: the coefficient of variation of the repetitions' medians; ``unstable`` when it exceeds the
      run's stability_cv_pct (5 % by default), after ``extra_repetitions`` beyond the planned ones (issue 14);
    - min, max: the extremes over every request of every repetition;
    - errors: requests without a complete 2xx answer, each counted once, summed, with their causes beside;
      2xx replies of another length (ab's length mismatches) apart, as served.
    """
    planned = int(results.config["repetitions"])
    # runs made before the stability_cv_pct knob existed are judged by its default
    threshold = float(results.config.get("stability_cv_pct", BENCH_DEFAULTS["stability_cv_pct"]))
    req = results.requests
    served = req[(req["served"] == 1) & req["run_key"].isin(per_run.index)].groupby("run_key")["total_ms"]
    rows = []
    for (platform, conc), g in per_run.groupby(["platform", "concurrency"], sort=False):
        row = {"platform": platform, "concurrency": int(conc), "repetitions": len(g),
               "repetitions_planned": planned, "complete": len(g) >= planned,
               "requests": int(g["n_requests"].sum())}
        _put(row, "mean_ms", mean_ci(g["mean_ms"], s.level))
        med = median_ci(g["median_ms"], s.level)
        _put(row, "median_ms", med)
        row["median_ci_level"] = med.level
        pooled = np.concatenate([served.get_group(k).to_numpy(float) for k in g.index if k in served.groups]
                                or [np.empty(0)])
        for p in (95, 99):
            ci = quantile_ci(pooled, p / 100, s.level)
            if len(pooled) < samples_needed(p):
                ci = Interval(np.nan, np.nan, np.nan, ci.level, len(pooled))
            _put(row, f"p{p}_ms", ci)
            row[f"p{p}_ms_ci_level"] = ci.level
        row["min_ms"] = float(g["min_ms"].min())
        row["max_ms"] = float(g["max_ms"].max())
        _put(row, "throughput_rps", mean_ci(g["served_rps"], s.level))
        row["errors"] = int(g["errors"].sum())
        for col in (*ERROR_CAUSES, "length_mismatches"):
            row[col] = int(g[col].sum())
        row["timed"] = len(pooled)
        row["served"] = len(pooled) - row["non_2xx"]  # a non-2xx reply has a -g row too, and is a failed request
        medians = g["median_ms"].dropna().to_numpy(float)
        cv = float(medians.std(ddof=1) / medians.mean() * 100) if len(medians) >= 2 and medians.mean() > 0 else np.nan
        row["median_cv_pct"] = cv
        row["unstable"] = bool(np.isfinite(cv) and cv > threshold)
        row["extra_repetitions"] = int((g["repetition"] > planned).sum())
        rows.append(row)
    return _order(pd.DataFrame(rows), results)


def _order(df: pd.DataFrame, results: Results) -> pd.DataFrame:
    if not len(df):
        return df
    rank = {p: i for i, p in enumerate(results.platforms)}
    key = df["platform"].map(rank).fillna(len(rank))
    return df.assign(_k=key).sort_values(["_k", "concurrency"]).drop(columns="_k").reset_index(drop=True)


def overhead_table(per_run: pd.DataFrame, results: Results, s: Settings) -> pd.DataFrame:
    """Response-time overhead of the function over the container.

    - ``probe``: the sequential Table 1 requests, bootstrap over requests (platforms resampled independently);
    - ``concurrency``: per concurrency level, the repetitions' mean response times, bootstrap resampling
      repetitions *paired* by repetition number (platforms ran interleaved, so repetition r shares its drift).
      With 5 repetitions a percentile bootstrap is optimistic (there are only 126 distinct resamples).
    - ``paper``: what the paper's Table 1 gives (no interval: the paper reports none).
    """
    rows = []
    ok = probe_ok(results)
    function, baseline = paper_pair(results)
    f, c = ok[ok["platform"] == function], ok[ok["platform"] == baseline]
    if len(f) and len(c):
        o = bootstrap_overhead(f["response_ms"], c["response_ms"], paired=False, level=s.level,
                               resamples=s.resamples, seed=s.seed)
        row = {"setting": "probe", "concurrency": 1, "n": min(len(f), len(c)), "unit": "requests",
               "function_ms": float(f["response_ms"].mean()), "container_ms": float(c["response_ms"].mean())}
        _put_overhead(row, "overhead", o)
        rows.append(row)
    fr = per_run[per_run["platform"] == function]
    cr = per_run[per_run["platform"] == baseline]
    for conc in sorted(set(fr["concurrency"]) & set(cr["concurrency"])):
        a = fr[fr["concurrency"] == conc].set_index("repetition")["mean_ms"]
        b = cr[cr["concurrency"] == conc].set_index("repetition")["mean_ms"]
        common = a.index.intersection(b.index).sort_values()
        if not len(common):
            continue
        a, b = a[common], b[common]
        o = bootstrap_overhead(a, b, paired=True, level=s.level, resamples=s.resamples, seed=s.seed)
        row = {"setting": "concurrency", "concurrency": int(conc), "n": len(common), "unit": "repetitions",
               "function_ms": float(a.mean()), "container_ms": float(b.mean())}
        _put_overhead(row, "overhead", o)
        rows.append(row)
    pf, pc = paper.TABLE1_MS["function"]["response_ms"], paper.TABLE1_MS["container"]["response_ms"]
    rows.append({"setting": "paper", "concurrency": 1, "n": 10, "unit": "requests", "function_ms": pf,
                 "container_ms": pc, "overhead_ms": pf - pc, "overhead_pct": 100 * (pf / pc - 1),
                 "overhead_pct_of_function": 100 * (1 - pc / pf)})
    return pd.DataFrame(rows)


BREAKDOWN_PARTS = ("network_http_ms", "runtime_ms", "model_ms")


def breakdown_table(per_run: pd.DataFrame, results: Results) -> pd.DataFrame:
    """Where the response time goes, per platform x concurrency, from the means over repetitions of:
    client time (ab ttime), server time (the platform's /metrics histogram: sum/count over the run) and
    prediction time (the services' own log lines: decode + preprocess + model).

    network/HTTP = client - server (connect, accept backlog, transfer, anything before the server's timer);
    runtime = server - prediction (the Kubeless runtime's fork and queue, request parsing, JSON);
    model = prediction. Rows ``function - container`` split the overhead the same way.
    """
    rows = []
    for (platform, conc), g in per_run.groupby(["platform", "concurrency"], sort=False):
        client = float(g["mean_ms"].mean())
        server = float(g["server_mean_ms"].mean()) if g["server_mean_ms"].notna().any() else np.nan
        pred = float(g["prediction_mean_ms"].mean()) if g["prediction_mean_ms"].notna().any() else np.nan
        rows.append({"platform": platform, "concurrency": int(conc), "repetitions": len(g),
                     "client_ms": client, "server_ms": server, "prediction_ms": pred,
                     "network_http_ms": client - server, "runtime_ms": server - pred, "model_ms": pred})
    df = _order(pd.DataFrame(rows), results)
    if not len(df):
        return df
    diffs = []
    cols = ["client_ms", "server_ms", "prediction_ms", *BREAKDOWN_PARTS]
    # each directly reached function platform against the baseline; a platform reached via another against that
    # one (issue 11: the ingress hop's own row)
    pairs = [(p, results.via(p) or results.baseline) for p in results.function_platforms]
    for platform, other in pairs:
        f = df[df["platform"] == platform].set_index("concurrency")
        c = df[df["platform"] == other].set_index("concurrency")
        for conc in f.index.intersection(c.index):
            d = {"platform": f"{platform} - {other}", "concurrency": int(conc),
                 "repetitions": int(min(f.loc[conc, "repetitions"], c.loc[conc, "repetitions"]))}
            d.update({col: f.loc[conc, col] - c.loc[conc, col] for col in cols})
            diffs.append(d)
    return pd.concat([df, pd.DataFrame(diffs)], ignore_index=True) if diffs else df


def coldstart_table(results: Results, s: Settings) -> pd.DataFrame:
    """Start (container start, replicas 0->1 or deploy) to the first HTTP 200, per platform and kind: mean with a
    t-interval over repetitions, median, min, max; repetitions that never answered 200 are counted apart."""
    cs = results.coldstart
    rows = []
    for (platform, kind), g in cs.groupby(["platform", "kind"], sort=False):
        ok = g["start_to_first_200_ms"].dropna()
        row = {"platform": platform, "kind": kind, "repetitions": len(g), "never_ready": len(g) - len(ok)}
        _put(row, "start_to_first_200_ms", mean_ci(ok, s.level))
        row["median_ms"] = float(ok.median()) if len(ok) else np.nan
        row["min_ms"] = float(ok.min()) if len(ok) else np.nan
        row["max_ms"] = float(ok.max()) if len(ok) else np.nan
        row["attempts_mean"] = float(g["attempts"].mean())
        rows.append(row)
    df = pd.DataFrame(rows)
    if not len(df):
        return df
    rank = {p: i for i, p in enumerate(results.platforms)}
    return df.assign(_k=df["platform"].map(rank)).sort_values(["_k", "kind"]).drop(columns="_k").reset_index(
        drop=True)


MIB = 1024**2


def resources_table(per_run: pd.DataFrame, results: Results) -> pd.DataFrame:
    """Per platform x concurrency over the repetitions: mean of the runs' mean CPU, highest CPU sample, and the
    peak memory of any run against the container's limit and the paper's 2 GB VMs (CPU in % of one core)."""
    rows = []
    for (platform, conc), g in per_run.groupby(["platform", "concurrency"], sort=False):
        peak = g["mem_max_bytes"].max()
        limit = g["mem_limit_bytes"].max()
        rows.append({
            "platform": platform, "concurrency": int(conc), "repetitions": len(g),
            "cpu_mean_pct": float(g["cpu_mean_pct"].mean()), "cpu_max_pct": float(g["cpu_max_pct"].max()),
            "mem_peak_mib": float(peak) / MIB, "mem_limit_mib": float(limit) / MIB,
            "mem_peak_pct_of_limit": 100 * float(peak) / float(limit) if limit and limit > 0 else np.nan,
            "mem_peak_pct_of_paper_2gb": 100 * float(peak) / paper.MEMORY_CAP_BYTES,
        })
    return _order(pd.DataFrame(rows), results)


def reference_ms(results: Results) -> np.ndarray:
    """The machine-speed probe of every concurrency run (runs.csv reference_ms, analysis/bench/reference.py): the
    positive values recorded, empty for runs made before the column existed."""
    runs = results.runs
    if "reference_ms" not in runs.columns:
        return np.array([])
    ref = pd.to_numeric(runs.loc[runs["experiment"] == "concurrency", "reference_ms"], errors="coerce").dropna()
    return ref[ref > 0].to_numpy(float)


COMPETITION = ("load_1m_before", "steal_pct", "load_generator_cpu_pct", "others_cpu_pct", "busy")


def machine_table(results: Results) -> pd.DataFrame:
    """What competed with the concurrency runs, per platform x concurrency (issue 14; runs.csv's columns from
    analysis/bench/system.py): runs flagged busy, the other processes' CPU (mean and highest run), ab's own CPU,
    the highest steal and load average before a run. Empty for runs recorded before these columns existed."""
    runs = results.runs[results.runs["experiment"] == "concurrency"]
    if not len(runs) or any(c not in runs.columns for c in COMPETITION) or runs["busy"].isna().all():
        return pd.DataFrame()
    rows = []
    for (platform, conc), g in runs.groupby(["platform", "concurrency"], sort=False):
        rows.append({"platform": platform, "concurrency": int(conc), "runs": len(g),
                     "runs_busy": int(g["busy"].fillna(0).sum()),
                     "others_cpu_pct_mean": float(g["others_cpu_pct"].mean()),
                     "others_cpu_pct_max": float(g["others_cpu_pct"].max()),
                     "load_generator_cpu_pct_mean": float(g["load_generator_cpu_pct"].mean()),
                     "steal_pct_max": float(g["steal_pct"].max()),
                     "load_1m_before_max": float(g["load_1m_before"].max())})
    return _order(pd.DataFrame(rows), results)


def _ratio(values: np.ndarray, level: float) -> Interval:
    """Geometric mean of per-repetition ratios with a t-interval on their logarithms (the repetitions ran
    interleaved, so repetition r of both platforms shares the machine's drift)."""
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) < 2:
        est = float(values[0]) if len(values) else np.nan
        return Interval(est, np.nan, np.nan, level, len(values))
    ci = mean_ci(np.log(values), level)
    return Interval(float(np.exp(ci.estimate)), float(np.exp(ci.low)), float(np.exp(ci.high)), level, len(values))


NON_2XX_TIMED_LIMIT_PCT = 5.0  # above this share of non-2xx replies a cell's mean says more about them than the model


def cross_platform_table(per_run: pd.DataFrame, results: Results, conc: pd.DataFrame, capacity: pd.DataFrame,
                         coldstart: pd.DataFrame, resources: pd.DataFrame, s: Settings) -> pd.DataFrame:
    """Every function platform against the baseline, per concurrency, all measured in this run:

    - mean_ratio: the geometric mean over repetitions of (platform mean / baseline mean) of the same repetition,
      with a t-interval on the log ratios (``mean_ratio_ci_*``); 1.35 = 35 % slower than the baseline;
    - p99_ratio: the cells' pooled p99s divided (empty where either has too few samples for a p99);
    - both empty, with ``ratio_note`` saying why, where more than NON_2XX_TIMED_LIMIT_PCT % of either cell's
      attempts were non-2xx replies: ab times those among the served requests, so a platform that rejects fast
      (a 429 at its concurrency limit) would otherwise read as fast;
    - failure_pct: the platform's failed requests over its attempts in the cell (each failed request once);
    - capacity_rps / baseline_capacity_rps: the open-loop capacity at the latency objective (empty without the
      rate experiment); coldstart_median_ms: its first cold-start kind; mem_peak_mib: the cell's peak memory.
    """
    baseline = results.baseline
    if baseline is None or not len(conc):
        return pd.DataFrame()
    cells = conc.set_index(["platform", "concurrency"])
    cap = capacity.set_index("platform") if len(capacity) else pd.DataFrame()
    mem = resources.set_index(["platform", "concurrency"]) if len(resources) else pd.DataFrame()
    base_runs = per_run[per_run["platform"] == baseline]
    rows = []
    for platform in results.function_platforms:
        runs = per_run[per_run["platform"] == platform]
        cold = coldstart[coldstart["platform"] == platform] if len(coldstart) else coldstart
        for c in sorted(set(runs["concurrency"]) & set(base_runs["concurrency"])):
            a = runs[runs["concurrency"] == c].set_index("repetition")["mean_ms"]
            b = base_runs[base_runs["concurrency"] == c].set_index("repetition")["mean_ms"]
            common = a.index.intersection(b.index)
            ratio = _ratio((a[common] / b[common]).to_numpy(float), s.level)
            mine, theirs = cells.loc[(platform, c)], cells.loc[(baseline, c)]
            row = {"platform": platform, "label": results.label(platform), "via": results.via(platform) or "",
                   "baseline": baseline, "concurrency": int(c), "repetitions": ratio.n,
                   "mean_ms": float(mine["mean_ms"]), "baseline_mean_ms": float(theirs["mean_ms"])}
            _put(row, "mean_ratio", ratio)
            row["p99_ratio"] = float(mine["p99_ms"] / theirs["p99_ms"]) if mine["p99_ms"] > 0 and theirs["p99_ms"] > 0 \
                else np.nan
            row["ratio_note"] = ""
            for side, cell in ((platform, mine), (baseline, theirs)):
                replies = int(cell["served"]) + int(cell["errors"])
                share = 100 * int(cell["non_2xx"]) / replies if replies else 0.0
                if share > NON_2XX_TIMED_LIMIT_PCT:
                    # ab times non-2xx replies among the served (its -g rows carry no status): a fast 429 or 503
                    # would read as a fast platform
                    row["mean_ratio"] = row["mean_ratio_ci_low"] = row["mean_ratio_ci_high"] = np.nan
                    row["p99_ratio"] = np.nan
                    row["ratio_note"] = (f"not shown: {share:.0f} % of {side}'s attempts were non-2xx replies, "
                                         "which ab times among the served")
                    break
            attempts = int(mine["served"]) + int(mine["errors"])
            row["failure_pct"] = 100 * int(mine["errors"]) / attempts if attempts else np.nan
            base_attempts = int(theirs["served"]) + int(theirs["errors"])
            row["baseline_failure_pct"] = 100 * int(theirs["errors"]) / base_attempts if base_attempts else np.nan
            for name, frame in (("capacity_rps", platform), ("baseline_capacity_rps", baseline)):
                row[name] = float(cap.loc[frame, "capacity_rps"]) if len(cap) and frame in cap.index else np.nan
            row["coldstart_median_ms"] = float(cold["median_ms"].iloc[0]) if len(cold) else np.nan
            has_mem = len(mem) and (platform, c) in mem.index
            row["mem_peak_mib"] = float(mem.loc[(platform, c), "mem_peak_mib"]) if has_mem else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def cross_platform_summary(cross: pd.DataFrame, conc: pd.DataFrame, capacity: pd.DataFrame,
                           coldstart: pd.DataFrame, results: Results) -> pd.DataFrame:
    """The short form of the cross-platform table, one row per platform (the baseline first): what a reader
    compares at a glance. Nothing is computed anew except the failure share, which pools the platform's
    concurrency cells:

    - ratio_c1 / ratio_top (with ``*_ci_low``/``*_ci_high``): cross_platform_table's mean_ratio at the lowest and
      at the highest concurrency (``top_concurrency``); 1 for the baseline;
    - capacity_rps: open_loop_capacity's capacity at the latency objective; coldstart_median_ms: coldstart_table's
      median of the platform's first cold-start kind;
    - failure_pct: failed requests over attempts (served + failed) summed over all the platform's concurrency
      cells, each failed request counted once.
    """
    baseline = results.baseline
    if baseline is None or not len(conc):
        return pd.DataFrame()
    cap = capacity.set_index("platform")["capacity_rps"] if len(capacity) else pd.Series(dtype=float)
    rows = []
    for platform in [baseline, *results.function_platforms]:
        cells = conc[conc["platform"] == platform]
        if not len(cells):
            continue
        row: dict = {"platform": platform, "label": results.label(platform), "via": results.via(platform) or "",
                     "role": results.role(platform)}
        mine = cross[cross["platform"] == platform].sort_values("concurrency") if len(cross) else cross
        for name, pick in (("c1", 0), ("top", -1)):
            if platform == baseline:
                row[f"concurrency_{name}"] = int(cells["concurrency"].iloc[pick])
                row[f"ratio_{name}"], row[f"ratio_{name}_ci_low"], row[f"ratio_{name}_ci_high"] = 1.0, np.nan, np.nan
            elif len(mine):
                r = mine.iloc[pick]
                row[f"concurrency_{name}"] = int(r["concurrency"])
                row[f"ratio_{name}"] = float(r["mean_ratio"])
                row[f"ratio_{name}_ci_low"] = float(r["mean_ratio_ci_low"])
                row[f"ratio_{name}_ci_high"] = float(r["mean_ratio_ci_high"])
            else:
                row[f"concurrency_{name}"] = np.nan
                row[f"ratio_{name}"] = row[f"ratio_{name}_ci_low"] = row[f"ratio_{name}_ci_high"] = np.nan
        row["capacity_rps"] = float(cap.get(platform, np.nan))
        cold = coldstart[coldstart["platform"] == platform] if len(coldstart) else coldstart
        row["coldstart_median_ms"] = float(cold["median_ms"].iloc[0]) if len(cold) else np.nan
        errors, attempts = int(cells["errors"].sum()), int(cells["served"].sum() + cells["errors"].sum())
        row["failed"], row["attempts"] = errors, attempts
        row["failure_pct"] = 100 * errors / attempts if attempts else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def split_columns(headers: list[str], rows: list[list[str]], keep: list[str]) -> tuple[list[str], list[list[str]]]:
    """The short table of a wide one: only the columns named in ``keep``, in the wide table's order (the full
    table stays whole beside it, folded, and in its CSV)."""
    index = [i for i, h in enumerate(headers) if h in keep]
    missing = [k for k in keep if k not in headers]
    if missing:
        raise ValueError(f"split_columns: no column(s) {missing} among {headers}")
    return [headers[i] for i in index], [[row[i] for i in index] for row in rows]
