"""Per-run summaries: one row per measured ab run, from the per-request rows.

This is the only step that touches every request, so it is the one the 1,000,000-row benchmark times
(``python -m analysis benchmark``). Repetitions are the unit of the confidence intervals later on: requests inside
one ab run share a queue and are not independent samples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.bench.schema import ERROR_CAUSES
from analysis.load import Results

QUANTILES = {"median_ms": 0.5, "p95_ms": 0.95, "p99_ms": 0.99}


def per_run(results: Results) -> pd.DataFrame:
    """Concurrency runs only (warm-up runs excluded), indexed by run_key.

    Latency statistics come from the served rows of requests.csv (ab -g ``ttime``, whole ms; failed attempts
    without a reply are set apart and summarised as ``failed_mean_ms``) with numpy's default linear
    interpolation for percentiles; counts, throughput, server/prediction time and resource use from runs.csv.
    ``errors`` are the requests without a complete 2xx answer, each counted once, with their causes beside
    (schema.ERROR_CAUSES, which add up to it); ``length_mismatches`` are 2xx responses of another length, which
    are served predictions and not errors.
    """
    runs = results.runs[results.runs["experiment"] == "concurrency"].set_index("run_key")
    all_requests = results.requests[results.requests["experiment"] == "concurrency"]
    served = all_requests["served"].to_numpy() == 1
    requests = all_requests[served]
    failed_mean = all_requests[~served].groupby("run_key", sort=False)["total_ms"].mean()
    grouped = requests.groupby("run_key", sort=False)["total_ms"]
    latency = grouped.agg(["count", "mean", "min", "max"]).rename(
        columns={"count": "n_requests", "mean": "mean_ms", "min": "min_ms", "max": "max_ms"})
    quantiles = grouped.quantile(list(QUANTILES.values())).unstack()
    quantiles.columns = list(QUANTILES)
    out = runs[["platform", "concurrency", "repetition", "requests", "completed"]].copy()
    out = out.join(latency).join(quantiles)
    out["n_requests"] = out["n_requests"].fillna(0).astype(np.int64)
    out["throughput_rps"] = runs["requests_per_s"]
    out["served_rps"] = runs["served_per_s"]
    counts = runs[["errors", *ERROR_CAUSES, "length_mismatch"]].fillna(0).astype(np.int64)
    for col in ("errors", *ERROR_CAUSES):
        out[col] = counts[col]
    out["length_mismatches"] = counts["length_mismatch"]
    out["failed_mean_ms"] = failed_mean.reindex(out.index)
    out["server_mean_ms"] = runs["server_mean_ms"]
    out["prediction_mean_ms"] = runs["prediction_mean_ms"]
    preds = results.predictions
    if len(preds):
        # Fill a run's model time from its prediction log lines where runs.csv left it empty.
        from_logs = preds.groupby("run_key")["prediction_ms"].mean().reindex(out.index)
        out["prediction_mean_ms"] = out["prediction_mean_ms"].fillna(from_logs)
    for col in ("cpu_mean_pct", "cpu_max_pct", "mem_max_bytes", "mem_limit_bytes", "started_utc"):
        out[col] = runs[col]
    out["completed"] = out["completed"].astype(np.int64)
    return out.sort_values(["platform", "concurrency", "repetition"])
