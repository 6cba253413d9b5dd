"""The plain-language verdict: does the paper's conclusion hold on this run, and why.

The paper concludes (section VI) that there is "no significant change or overhead in the prediction time" and
"around 35 % increase in the response time for Kubeless". Each claim is judged against an explicit criterion
(paper.py) using the intervals from tables.py, so the wording follows from the numbers and can be tested.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis import paper
from analysis.bench.schema import ERROR_CAUSES
from analysis.ingress import layer_sentence
from analysis.load import Results

WHY = {
    "network_http_ms": ("network/HTTP", "time the client waits outside the server's own timer: connecting, waiting "
                        "in the listen backlog or for a free worker thread, transferring the request and reply"),
    "runtime_ms": ("runtime", "time inside the server but outside the model: for the Kubeless runtime that is "
                   "forking a process per request, handing the result back and joining the child"),
    "model_ms": ("model", "the prediction itself (decode, preprocess, model) running slower in the function"),
}


def _pct(x: float) -> str:
    return f"{x:+.0f} %" if math.isfinite(x) else "n/a"


def _ms(x: float) -> str:
    return f"{x:.1f} ms" if math.isfinite(x) else "n/a"


def verdict(results: Results, t1_over: pd.DataFrame, conc: pd.DataFrame, over: pd.DataFrame,
            breakdown: pd.DataFrame, level: float = 0.95) -> tuple[str, list[str]]:
    """A one-line summary and the paragraphs behind it."""
    paras: list[str] = []
    claims: list[str] = []
    pred = t1_over[t1_over["metric"] == "prediction"] if len(t1_over) else t1_over
    resp = t1_over[t1_over["metric"] == "response"] if len(t1_over) else t1_over
    for judge, rows in ((_prediction_claim, pred), (_response_claim, resp)):
        claim, para = judge(rows, f"{100 * level:g} % CI")
        claims.append(claim)
        paras.append(para)
    why = _why(breakdown)
    if why:
        paras.append(why)
    trend = _trend(conc, over, results.headline)
    if trend:
        paras.append(trend)
    errs = _errors(conc, results)
    if errs:
        paras.append(errs)
    paras.extend(_caveats(results, conc))
    summary = "; ".join(claims) + "."
    if not results.complete:
        summary = "PROVISIONAL (incomplete run): " + summary
    return summary, paras


def _prediction_claim(rows: pd.DataFrame, ci: str) -> tuple[str, str]:
    """The paper: no significant change in prediction time. Judged on the probe's relative overhead."""
    thr = paper.MINOR_PREDICTION_OVERHEAD_PCT
    if len(rows) and math.isfinite(rows.iloc[0]["overhead_pct"]):
        r = rows.iloc[0]
        est, lo, hi = r["overhead_pct"], r["overhead_pct_ci_low"], r["overhead_pct_ci_high"]
        if hi <= thr:
            state, word = "holds", "holds"
        elif lo > thr:
            state, word = "does not hold", "does not hold"
        else:
            state, word = "is undecided", "undecided"
        claim = f"no major prediction overhead: {word}"
        para = (
            f"**Prediction time** (the paper: no significant change): this claim {state} here. The function's mean "
            f"prediction time is {_pct(est)} relative to the container's ({ci} {_pct(lo)} to {_pct(hi)}; "
            f"{_ms(r['overhead_ms'])} in absolute terms). We call an overhead minor up to +{thr:.0f} %, the size of "
            f"the paper's own difference (0.12 s vs 0.10 s) that it calls no significant change.")
    else:
        claim = "prediction overhead: not measured"
        para = ("**Prediction time** cannot be judged: the run has no successful latency-probe requests with a "
                "prediction time for both platforms (probe.csv).")
    return claim, para


def _response_claim(rows: pd.DataFrame, ci: str) -> tuple[str, str]:
    """The paper: about 35 % more response time for Kubeless. Judged the way the paper computed it."""
    if len(rows) and all(math.isfinite(rows.iloc[0].get(k, math.nan))
                         for k in ("overhead_pct_of_function", "overhead_ms_ci_low")):
        r = rows.iloc[0]
        est, lo, hi = (r["overhead_pct_of_function"], r["overhead_pct_of_function_ci_low"],
                       r["overhead_pct_of_function_ci_high"])
        target, tol = paper.RESPONSE_OVERHEAD_PCT_AS_STATED, paper.RESPONSE_OVERHEAD_TOLERANCE_PTS
        slower = r["overhead_ms_ci_low"] > 0
        if not slower:
            state = "does not hold: the function is not measurably slower"
        elif hi < target - tol:
            state = "holds in direction only: the function is slower, but by less than the paper found"
        elif lo > target + tol:
            state = "holds in direction only: the function is slower, by much more than the paper found"
        else:
            state = "holds: the function is slower by about what the paper found"
        claim = f"~35 % response-time overhead: {state.split(':')[0]}"
        para = (
            f"**Response time** (the paper: about 35 % more for Kubeless): this claim {state}. Over the sequential "
            f"probe requests the function takes {_ms(r['overhead_ms'])} more per request. Measured the way the "
            f"paper's 35 % comes out of its Table 1, as a share of the function's time ((0.2 - 0.13) / 0.2), that is "
            f"{est:.0f} % ({ci} {lo:.0f} to {hi:.0f} %); relative to the container it is {_pct(r['overhead_pct'])}"
            f" (the paper's table gives +{paper.RESPONSE_OVERHEAD_PCT_OF_CONTAINER:.0f} % that way). We call it "
            f"'about 35 %' when the interval overlaps {target:.0f} ± {tol:.0f} points.")
    else:
        claim = "response-time overhead: not measured"
        para = ("**Response time** cannot be judged from the probe: probe.csv has no successful requests for both "
                "platforms.")
    return claim, para


def _why(breakdown: pd.DataFrame) -> str | None:
    diff = breakdown[breakdown["platform"] == "function - container"] if len(breakdown) else breakdown
    if not len(diff):
        return None
    r = diff.sort_values("concurrency").iloc[0]
    parts = {k: r[k] for k in WHY if math.isfinite(r[k])}
    if not parts:
        return ("**Why** cannot be said from this run: runs.csv holds no server-side or prediction times "
                "(server_mean_ms, prediction_mean_ms), so the overhead cannot be split.")
    total = r["client_ms"]
    main = max(parts, key=lambda k: parts[k])
    name, meaning = WHY[main]
    split = ", ".join(f"{WHY[k][0]} {_ms(v)}" for k, v in parts.items())
    share = f" ({100 * parts[main] / total:.0f} %)" if total > 0 else ""
    return (f"**Why**: at c={int(r['concurrency'])} the function's extra {_ms(total)} per request splits into "
            f"{split}. Most of it{share} is {name}: {meaning}.")


def _trend(conc: pd.DataFrame, over: pd.DataFrame, function: str | None) -> str | None:
    oc = over[over["setting"] == "concurrency"] if len(over) else over
    out = []
    if len(oc) >= 2:
        a, b = oc.iloc[0], oc.iloc[-1]
        out.append(f"Under load the overhead changes from {_pct(a['overhead_pct'])} at c={int(a['concurrency'])} to "
                   f"{_pct(b['overhead_pct'])} at c={int(b['concurrency'])} (relative to the container).")
    f20 = conc[(conc["platform"] == function) & (conc["concurrency"] == 20)] if len(conc) else conc
    if len(f20):
        r = f20.iloc[0]
        ref = paper.FIG1_FUNCTION_MS[20]
        out.append(f"At 20 concurrent requests the function's mean is {_ms(r['mean_ms'])} (fastest "
                   f"{_ms(r['min_ms'])}, slowest {_ms(r['max_ms'])}); the paper's Kubeless gave "
                   f"{ref['mean_ms']:.0f} ms ({ref['min_ms']:.0f} ms to about {ref['max_ms'] / 1000:.0f} s) on its "
                   "own, slower VMs, so compare the shape, not the level.")
    return "**Concurrency**: " + " ".join(out) if out else None


def _errors(conc: pd.DataFrame, results: Results) -> str | None:
    failed = results.failed_runs
    failed = failed[failed["experiment"] == "concurrency"] if len(failed) else failed
    aborted = (f" {len(failed)} ab run(s) did not finish at all ("
               + ", ".join(failed["run_key"].astype(str)) + "), which the paper would count as failures."
               if len(failed) else "")
    if not len(conc):
        return f"**Errors**:{aborted}" if aborted else None
    errors, lengths = int(conc["errors"].sum()), int(conc["length_mismatches"].sum())
    where = conc[conc["errors"] > 0]
    cells = ", ".join(f"{r.platform} c={r.concurrency}: {r.errors}" for r in where.itertuples())
    text = (f"**Errors**: the paper got every response without an error. This run had {errors} real error(s)"
            + (f" ({cells})" if cells else ""))
    causes = [f"{int(conc[c].sum())} {c.replace('_', ' ')}" for c in ERROR_CAUSES if c in conc and conc[c].sum()]
    if causes and errors:
        text += ", by what the client saw: " + ", ".join(causes)
    text += (f"; ab also flagged {lengths} response(s) whose length differed from the first one, which are served "
             "predictions, not errors." if lengths else ".")
    layers = layer_sentence(results) if errors else ""  # issue 11: the evidence of this run, not a fixed sentence
    return text + (f" {layers}" if layers else "") + aborted


def _caveats(results: Results, conc: pd.DataFrame) -> list[str]:
    out = []
    if not results.complete:
        out.append("**This run is incomplete**, so the verdict is provisional: " + "; ".join(
            results.incomplete_reasons) + ".")
    if results.manifest.get("profile") == "synthetic":
        out.append("**These numbers are synthetic** (manifest profile 'synthetic'): generated to exercise the "
                   "analysis, not measured.")
    if len(conc) and "unstable" in conc and conc["unstable"].any():  # issue 14
        cells = ", ".join(f"{r.platform} c={r.concurrency} ({r.median_cv_pct:.0f} %)"
                          for r in conc[conc["unstable"]].itertuples())
        out.append(f"**Unstable cells**: {cells}: their repetitions' medians disagree by more than the stability "
                   "threshold even after extra repetitions, so read their means (the headline), not their medians.")
    if len(conc) and int(conc["repetitions"].min()) < 6:
        out.append(f"With {int(conc['repetitions'].min())} repetition(s) per cell the intervals across repetitions "
                   "are wide and the median's order-statistic interval cannot reach 95 % coverage; its achieved "
                   "level is given in the table.")
    return out
