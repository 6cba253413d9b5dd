"""Issue 11 in the report: the function direct vs through the ingress (nginx as ingress-nginx 0.16.2 renders its
HTTPTrigger), the hop's cost, the overload region, every failed request by the layer that produced it
(errors_by_layer.csv, from the run's own logs), who answered an oversized body, and the WARMUP_CALLS=0 variant.

Numbers only here; `section` turns them into report blocks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.bench.schema import ERROR_LAYERS
from analysis.document import Bullets, Heading, Para, Table
from analysis.load import Results


def hop(results: Results) -> tuple[str | None, str | None]:
    """(direct, through the hop): the first platform reached via another, and that other one."""
    wrapped = next((p for p in results.platforms if results.via(p)), None)
    return (results.via(wrapped), wrapped) if wrapped else (None, None)

LAYER_HEADERS = {  # "reported by": the layer that reported the failure, its cause not proven (issue 24)
    "runtime_408": "runtime 408 (join)",
    "runtime_error": "runtime other status",
    "runtime_backlog": "runtime backlog overflow (never reached the handler)",
    "platform_own": "reported by the platform's own component",
    "proxy": "reported by docker-proxy (no reply)",
    "ingress": "reported by nginx (own reply)",
    "client_timeout": "reported by ab (time-out)",
    "unattributed": "unattributed",
}


def _served_stats(results: Results, keys: set[str]) -> tuple[float, float, int]:
    """(mean, median, n) over the served requests of the given runs."""
    req = results.requests
    sel = req[req["run_key"].isin(keys) & (req["served"] == 1)]["total_ms"]
    if not len(sel):
        return math.nan, math.nan, 0
    return float(sel.mean()), float(sel.median()), len(sel)


def direct_vs_ingress(per_run: pd.DataFrame, results: Results) -> pd.DataFrame:
    """Per concurrency (the paper's matrix, then the overload runs): the function direct and through the ingress,
    pooled over repetitions: mean and median of the served requests, served req/s (mean of the runs), errors; the
    hop's cost = through-ingress minus direct (mean and median), and its share of the through-ingress mean."""
    direct, ingress = hop(results)
    runs = results.runs
    rows = []
    for experiment in ("concurrency", "overload"):
        sel = runs[(runs["experiment"] == experiment) & runs["platform"].isin([direct, ingress])]
        for conc in sorted(set(sel["concurrency"])):
            row: dict = {"experiment": experiment, "concurrency": int(conc)}
            for platform, tag in ((direct, "direct"), (ingress, "ingress")):
                g = sel[(sel["platform"] == platform) & (sel["concurrency"] == conc)]
                mean, median, n = _served_stats(results, set(g["run_key"]))
                row[f"{tag}_runs"] = len(g)
                row[f"{tag}_served"] = int(g["served"].fillna(0).sum()) if len(g) else n
                row[f"{tag}_mean_ms"] = mean
                row[f"{tag}_median_ms"] = median
                row[f"{tag}_served_rps"] = float(g["served_per_s"].mean()) if len(g) else math.nan
                row[f"{tag}_errors"] = int(g["errors"].fillna(0).sum())
                row[f"{tag}_requests"] = int(g["requests"].sum())
            g = sel[(sel["platform"] == ingress) & (sel["concurrency"] == conc)]
            row["nginx_cpu_pct"] = _nginx_cpu_pct(results, g)
            row["hop_mean_ms"] = row["ingress_mean_ms"] - row["direct_mean_ms"]
            row["hop_median_ms"] = row["ingress_median_ms"] - row["direct_median_ms"]
            row["hop_pct_of_ingress"] = (100 * row["hop_mean_ms"] / row["ingress_mean_ms"]
                                         if row["ingress_mean_ms"] else math.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def _nginx_cpu_pct(results: Results, runs: pd.DataFrame) -> float:
    """nginx's CPU during the runs through the ingress, % of one core (raw/<run_key>/ingress.json: the CPU time of
    its cgroup, the pod's `ingress` child, over ab's time taken), the part of the pod's 2 CPUs it took."""
    import json

    shares = []
    for r in runs.itertuples(index=False):
        path = results.folder / "raw" / str(r.run_key) / "ingress.json"
        try:
            cpu_ns = json.loads(path.read_text()).get("nginx_cpu_ns")
        except (OSError, ValueError):
            continue
        taken = getattr(r, "time_taken_s", None)
        if cpu_ns is not None and taken is not None and pd.notna(taken) and taken:
            shares.append(100 * cpu_ns / (float(taken) * 1e9))
    return float(np.mean(shares)) if shares else math.nan


def hop_breakdown(per_run: pd.DataFrame, results: Results) -> pd.DataFrame:
    """client -> ingress -> runtime -> model, per concurrency, from the means over repetitions: model = prediction
    time (log lines), runtime = server time (/metrics) - model, the direct path's network/HTTP = client - server on
    the direct path, and the ingress hop = (client - server through the ingress) - that direct network/HTTP."""
    direct, ingress = hop(results)
    rows = []
    for conc in sorted(set(per_run["concurrency"])):
        d = per_run[(per_run["platform"] == direct) & (per_run["concurrency"] == conc)]
        i = per_run[(per_run["platform"] == ingress) & (per_run["concurrency"] == conc)]
        if not len(d) or not len(i):
            continue
        client, server, pred = (float(i[c].mean()) for c in ("mean_ms", "server_mean_ms", "prediction_mean_ms"))
        d_net = float(d["mean_ms"].mean()) - float(d["server_mean_ms"].mean())
        rows.append({"concurrency": int(conc), "client_ms": client, "ingress_hop_ms": (client - server) - d_net,
                     "network_http_ms": d_net, "runtime_ms": server - pred, "model_ms": pred,
                     "direct_client_ms": float(d["mean_ms"].mean())})
    return pd.DataFrame(rows)


def error_layers(results: Results) -> pd.DataFrame:
    """errors_by_layer.csv summed per experiment x platform x concurrency (warm-ups left out); `check` is the
    layers' sum minus the errors (0 when every failed request is under exactly one layer)."""
    el = results.error_layers
    if not len(el):
        return pd.DataFrame(columns=["experiment", "platform", "concurrency", "runs", "errors", *ERROR_LAYERS,
                                     "check", "backlog_disagrees", "evidence"])
    el = el[el["experiment"] != "warmup"]
    if "platform_own" not in el.columns:  # runs made before the platform kinds named their own replies
        el = el.assign(platform_own=0)
    rows = []
    for (exp, platform, conc), g in el.groupby(["experiment", "platform", "concurrency"], sort=False):
        row = {"experiment": exp, "platform": platform, "concurrency": int(conc), "runs": len(g),
               "errors": int(g["errors"].sum())}
        for layer in ERROR_LAYERS:
            row[layer] = int(g[layer].sum())
        row["check"] = sum(row[layer] for layer in ERROR_LAYERS) - row["errors"]
        # runs whose no-reply failures the runtime's access log does not match: their cause stays "reported by"
        row["backlog_disagrees"] = int((g["backlog_check"] == "disagrees").sum()) if "backlog_check" in g else 0
        ev = [str(e) for e in g["evidence"].dropna() if str(e)]
        row["evidence"] = ev[0] if len(ev) == 1 else (f"{ev[0]} (and {len(ev) - 1} more run(s))" if ev else "")
        rows.append(row)
    order = {"concurrency": 0, "overload": 1, "nowarmup": 2}
    df = pd.DataFrame(rows)
    rank = {p: i for i, p in enumerate(results.platforms)}
    return (df.assign(_e=df["experiment"].map(order).fillna(9), _p=df["platform"].map(rank).fillna(9))
            .sort_values(["_e", "_p", "concurrency"]).drop(columns=["_e", "_p"]).reset_index(drop=True))


def overload(results: Results) -> pd.DataFrame:
    """The overload runs (one short run per platform and concurrency): served, errors, served req/s, mean and
    median of the served requests; aborted runs (set apart by the loader) listed with ab's message."""
    runs = results.runs[results.runs["experiment"] == "overload"]
    rows = []
    for r in runs.itertuples(index=False):
        mean, median, n = _served_stats(results, {r.run_key})
        rows.append({"platform": r.platform, "concurrency": int(r.concurrency), "requests": int(r.requests),
                     "served": int(r.served) if pd.notna(r.served) else n,
                     "errors": int(r.errors) if pd.notna(r.errors) else 0,
                     "served_rps": float(r.served_per_s) if pd.notna(r.served_per_s) else math.nan,
                     "mean_ms": mean, "median_ms": median, "outcome": "ok", "error": ""})
    failed = results.failed_runs
    if len(failed):
        for r in failed[failed["experiment"] == "overload"].itertuples(index=False):
            rows.append({"platform": r.platform, "concurrency": int(r.concurrency), "requests": int(r.requests),
                         "served": 0, "errors": np.nan, "served_rps": math.nan, "mean_ms": math.nan,
                         "median_ms": math.nan, "outcome": str(getattr(r, "outcome", "aborted")),
                         "error": str(getattr(r, "error", "") or "")})
    df = pd.DataFrame(rows)
    if not len(df):
        return df
    rank = {p: i for i, p in enumerate(results.platforms)}
    return df.assign(_p=df["platform"].map(rank)).sort_values(["concurrency", "_p"]).drop(columns="_p").reset_index(
        drop=True)


def nowarmup(per_run: pd.DataFrame, results: Results) -> pd.DataFrame:
    """The WARMUP_CALLS=0 run beside the function's c=1 cells (warm-up in the parent, the default)."""
    rows = []
    c1 = per_run[(per_run["platform"] == results.headline) & (per_run["concurrency"] == 1)]
    if len(c1):
        mean, median, n = _served_stats(results, set(c1.index))
        rows.append({"platform": results.headline,
                     "variant": "WARMUP_CALLS=3 (default: warm-up in the parent, like TF 1.x's inherited graph)",
                     "runs": len(c1), "served": n, "errors": int(c1["errors"].sum()), "mean_ms": mean,
                     "median_ms": median, "prediction_mean_ms": float(c1["prediction_mean_ms"].mean()),
                     "outcome": "ok", "error": ""})
    runs = results.runs[results.runs["experiment"] == "nowarmup"]
    for r in runs.itertuples(index=False):
        mean, median, n = _served_stats(results, {r.run_key})
        rows.append({"platform": str(r.platform), "variant": "WARMUP_CALLS=0 (a naive TF 2 function)", "runs": 1,
                     "served": n,
                     "errors": int(r.errors) if pd.notna(r.errors) else 0, "mean_ms": mean, "median_ms": median,
                     "prediction_mean_ms": float(r.prediction_mean_ms) if pd.notna(r.prediction_mean_ms)
                     else math.nan, "outcome": str(r.outcome), "error": str(r.error) if pd.notna(r.error) else ""})
    failed = results.failed_runs
    if len(failed):
        for r in failed[failed["experiment"] == "nowarmup"].itertuples(index=False):
            rows.append({"platform": str(getattr(r, "platform", "")),
                         "variant": "WARMUP_CALLS=0 (a naive TF 2 function)", "runs": 1, "served": 0,
                         "errors": np.nan, "mean_ms": math.nan, "median_ms": math.nan,
                         "prediction_mean_ms": math.nan, "outcome": str(getattr(r, "outcome", "aborted")),
                         "error": str(getattr(r, "error", "") or "")})
    return pd.DataFrame(rows)


def tables(results: Results, per_run: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {
        "ingress_vs_direct": direct_vs_ingress(per_run, results),
        "ingress_breakdown": hop_breakdown(per_run, results),
        "errors_by_layer": error_layers(results),
        "overload": overload(results),
        "nowarmup": nowarmup(per_run, results),
        "bodylimit": results.bodylimit.copy(),
    }


# ---------------------------------------------------------------------------------------------- report
def _f(x: float, digits: int = 0) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
            s: object) -> list:
    """Report blocks (analysis.document), so this module never imports the report that includes it."""

    b: list = [Heading("The HTTP trigger: the function through the ingress (issue 11)")]
    vs = t["ingress_vs_direct"]
    platform = results.manifest["platforms"].get(hop(results)[1] or "")
    if platform is None or not len(vs):
        b.append(Para("This run has no function_ingress platform (the paper profile's function is already reached "
                      "through its ingress; locally roles/local_ingress sets it up)."))
    else:
        b.append(Para(
            "The paper invoked the function through its HTTP trigger: the Ingress served by nginx-ingress-controller "
            "0.16.2 on the function's own 2-CPU VM. **function_ingress** is that path here: nginx configured as "
            "0.16.2 renders the trigger's Ingress (proxy-body-size 1m, proxy timeouts 5/60/60 s, buffering off, "
            "request buffering on, next-upstream \"error timeout\" x3, upstream keep-alive 32 but every request sent "
            "with Connection: close), running in the function's pod cgroup so that both share 2 CPUs / 2 GB. "
            "**function** is ab -> docker-proxy -> runtime; **function_ingress** is ab -> nginx -> runtime "
            "(the container's bridge address, as nginx reaches a pod). Latency: served requests pooled over the "
            "repetitions; hop = through the ingress minus direct."))
        h = ["run", "c", "direct mean ms", "ingress mean ms", "hop mean ms", "hop share", "direct p50",
             "ingress p50", "hop p50", "direct served/s", "ingress served/s", "errors direct / ingress",
             "nginx CPU % of a core"]
        rows = [[r.experiment, str(r.concurrency), _f(r.direct_mean_ms, 1), _f(r.ingress_mean_ms, 1),
                 _f(r.hop_mean_ms, 1), f"{_f(r.hop_pct_of_ingress)} %", _f(r.direct_median_ms), _f(r.ingress_median_ms),
                 _f(r.hop_median_ms), _f(r.direct_served_rps, 1), _f(r.ingress_served_rps, 1),
                 f"{r.direct_errors} of {r.direct_requests} / {r.ingress_errors} of {r.ingress_requests}",
                 _f(r.nginx_cpu_pct, 1)]
                for r in vs.itertuples(index=False)]
        b.append(Table(h, rows, "ingress_vs_direct.csv"))
        bd = t["ingress_breakdown"]
        if len(bd):
            h = ["c", "client ms (through the ingress)", "ingress hop", "network/HTTP (as direct)", "runtime",
                 "model", "direct client ms"]
            rows = [[str(r.concurrency), _f(r.client_ms, 1), _f(r.ingress_hop_ms, 1), _f(r.network_http_ms, 1),
                     _f(r.runtime_ms, 1), _f(r.model_ms, 1), _f(r.direct_client_ms, 1)]
                    for r in bd.itertuples(index=False)]
            b.append(Table(h, rows, "ingress_breakdown.csv", note=(
                "client -> ingress -> runtime -> model: the through-ingress mean split into the ingress hop (its "
                "client - server time beyond the direct path's), network/HTTP, runtime (server - prediction) and "
                "model (prediction time); means over repetitions.")))
    el = t["errors_by_layer"]
    b.append(Heading("Failed requests by the layer that reported them, and their cause where proven", 3))
    if not len(el) or not int(el["errors"].sum()):
        b.append(Para("No request failed in this run's measured runs (errors_by_layer.csv)."))
    else:
        show = [c for c in ERROR_LAYERS if int(el[c].sum()) or c == "unattributed"]
        h = ["run", "platform", "c", "failed", *(LAYER_HEADERS[c] for c in show)]
        rows = [[r["experiment"], r["platform"], str(r["concurrency"]), f"{r['errors']} ({r['runs']} run(s))",
                 *(str(r[c]) for c in show)] for _, r in el[el["errors"] > 0].iterrows()]
        bad = el[el["check"] != 0]
        disagree = int(el["backlog_disagrees"].sum())
        b.append(Table(h, rows, "errors_by_layer.csv", note=(
            "Each failed request is counted under exactly one layer, from the run's own evidence: the runtime's "
            "access log (408 and other statuses) and function_failures_total, nginx's access log (status with or "
            "without an upstream status) and error log (upstream reset/refused/timed out/closed prematurely, body "
            "too large), the lines a platform kind reads in its own log (which component made each failed reply), "
            "and ab's classes (empty replies, resets, time-outs). \"Reported by\" names the layer that reported a "
            "failure whose cause the evidence does not prove. A backlog overflow is named only where the no-reply "
            "failures docker-proxy or nginx reported equal the requests missing from the runtime's access log "
            "(attempts minus its lines, less its non-2xx replies without a line; up to the time-outs more allowed), "
            "the same rule on both paths"
            + (f"; in {disagree} run(s) they disagree, so those stay \"reported by\"" if disagree else "")
            + ". The layer columns add up to the failed requests by construction (unattributed takes the rest)"
            + (f", except in {len(bad)} cell(s)." if len(bad) else "."))))
        ev = el[(el["errors"] > 0) & (el["evidence"].astype(str) != "")]
        if len(ev):
            b.append(Bullets([f"{r['experiment']} {r['platform']} c={r['concurrency']}: {r['evidence']}"
                              for _, r in ev.head(12).iterrows()]))
    bl = t["bodylimit"]
    if len(bl):
        b.append(Heading("A body over the ingress's limit", 3))
        b.append(Para("One POST of the payload padded to " + _f(float(bl["bytes"].iloc[0])) + " bytes through each "
                      "function path (ingress-nginx 0.16.2's proxy-body-size is 1m):"))
        b.append(Bullets([f"**{r.platform}**: HTTP {r.status or 'none'}, answered by **{r.answered_by}** "
                          f"({r.evidence})" for r in bl.itertuples(index=False)]))
    return b + _overload_blocks(t)


def _overload_blocks(t: dict[str, pd.DataFrame]) -> list:

    b: list = []
    ov = t["overload"]
    b.append(Heading("The overload region", 3))
    if not len(ov):
        b.append(Para("This run has no overload runs (overload_concurrency is empty)."))
    else:
        h = ["c", "platform", "requests", "served", "failed", "served/s", "mean ms", "p50 ms", "outcome"]
        rows = [[str(r.concurrency), r.platform, str(r.requests), str(r.served), _f(r.errors), _f(r.served_rps, 1),
                 _f(r.mean_ms, 1), _f(r.median_ms), r.outcome + (f": {r.error}" if r.error else "")]
                for r in ov.itertuples(index=False)]
        b.append(Table(h, rows, "overload.csv", note=(
            "One short run per platform and concurrency, past the runtime's 10 threads and listen backlog of 5; "
            "one repetition, so no intervals. Where the failures came from: the table by layer above.")))
    nw = t["nowarmup"]
    b.append(Heading("A naive TensorFlow 2 function: WARMUP_CALLS=0", 3))
    if not len(nw) or len(nw) < 2:
        b.append(Para("This run has no WARMUP_CALLS=0 run (nowarmup_requests is 0, or the function has no "
                      "container)."))
    else:
        h = ["platform", "variant", "runs", "served", "failed", "mean ms", "p50 ms", "prediction mean ms", "outcome"]
        rows = [[r.platform, r.variant, str(r.runs), str(r.served), _f(r.errors), _f(r.mean_ms, 1), _f(r.median_ms),
                 _f(r.prediction_mean_ms, 1), r.outcome + (f": {r.error}" if r.error else "")]
                for r in nw.itertuples(index=False)]
        b.append(Table(h, rows, "nowarmup.csv", note=(
            "Under TensorFlow 1.x the graph and session built at import were inherited by every forked child; the "
            "handler's warm-up in the parent reproduces that. WARMUP_CALLS=0 (one short c=1 run in a temporary copy "
            "of the container) shows what every call costs when each child sets TensorFlow up again. Whatever "
            "happened is the result: a hang or a time-out here is the variant's behaviour, not a kit failure.")))
    return b


def layer_sentence(results: Results, experiment: str = "concurrency") -> str:
    """The failed requests of an experiment by layer, for the verdict: evidence, not a fixed explanation."""
    el = results.error_layers
    if not len(el):
        return ""
    el = el[el["experiment"] == experiment]
    if not len(el) or not int(el["errors"].sum()):
        return ""
    if "platform_own" not in el.columns:
        el = el.assign(platform_own=0)
    parts = []
    for platform, g in el.groupby("platform", sort=False):
        layers = [f"{int(g[c].sum())} {LAYER_HEADERS[c]}" for c in ERROR_LAYERS if int(g[c].sum())]
        if layers:
            parts.append(f"{platform}: " + ", ".join(layers))
    return "By the layer that reported them (errors_by_layer.csv, from the runtime's and nginx's logs): " + "; ".join(
        parts) + "."
