"""The plain-language verdict: does the paper's conclusion hold on this run, and why.

The paper concludes (section VI) that there is "no significant change or overhead in the prediction time" and
"around 35 % increase in the response time for Kubeless". Each claim is judged against an explicit criterion
(paper.py) using the intervals from tables.py, so the wording follows from the numbers and can be tested.

The report shows one sentence per claim at its top (``Verdict.claims``, each with its interval); how each claim is
judged goes to its "How this was measured" section (``Verdict.method``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from analysis import paper
from analysis.bench.schema import ERROR_CAUSES
from analysis.ingress import layer_sentence
from analysis.load import Results

WHY = {
    "network_http_ms": ("network/HTTP", "waiting outside the server's own timer (connecting, the listen backlog, "
                        "a free worker thread, the transfer)"),
    "runtime_ms": ("runtime", "inside the server but outside the model (for the Kubeless runtime: forking a "
                   "process per request and handing the result back)"),
    "model_ms": ("model", "the prediction itself running slower in the function"),
}


@dataclass
class Verdict:
    summary: str  # one line: the paper's two claims judged (the CLI prints it)
    claims: list[str]  # one sentence per claim, each with its interval: the top of the report
    errors: str | None = None  # the failed requests in full, for the concurrency section
    notes: list[str] = field(default_factory=list)  # one-sentence caveats for the concurrency section
    method: list[str] = field(default_factory=list)  # how each claim is judged: "How this was measured"


def _pct(x: float) -> str:
    return f"{x:+.0f} %" if math.isfinite(x) else "n/a"


def _ms(x: float) -> str:
    return f"{x:.1f} ms" if math.isfinite(x) else "n/a"


def _times(x: float) -> str:
    return f"{x:.2f}x" if math.isfinite(x) else "n/a"


def verdict(results: Results, t1_over: pd.DataFrame, conc: pd.DataFrame, over: pd.DataFrame,
            breakdown: pd.DataFrame, level: float = 0.95, cross: pd.DataFrame | None = None,
            headline: pd.DataFrame | None = None) -> Verdict:
    """The one-line summary, the claims behind it and how they were judged. `headline`: analysis/headline.py's
    table; its paired c=1 row judges the ~35 % claim, and without one (a run made before the paired step) the
    block probe does, as before, and the claim says so."""
    ci = f"{100 * level:g} % CI"
    pred = t1_over[t1_over["metric"] == "prediction"] if len(t1_over) else t1_over
    resp = t1_over[t1_over["metric"] == "response"] if len(t1_over) else t1_over
    paired = _paired_rows(headline)
    judged = [_prediction_claim(pred, ci),
              _paired_claim(paired, results, ci) if results.headline in set(paired["platform"])
              else _response_claim(resp, ci)]
    summary = "; ".join(label for label, _ in judged) + "."
    if not results.complete:
        summary = "PROVISIONAL (incomplete run): " + summary
    claims = [sentence for _, sentence in judged]
    for extra in (_other_platforms_claim(paired, results, ci), _load_claim(cross, results, ci),
                  _why(breakdown, results), _errors_claim(conc, results)):
        if extra:
            claims.append(extra)
    if not results.complete:
        claims.insert(0, "**PROVISIONAL (incomplete run)**: every claim below covers only what finished ("
                      + "; ".join(results.incomplete_reasons) + ").")
    return Verdict(summary=summary, claims=claims, errors=_errors(conc, results),
                   notes=_notes(conc, results), method=_method(conc, paired_used=len(paired) > 0))


def _paired_rows(headline: pd.DataFrame | None) -> pd.DataFrame:
    """The c=1 rows of the headline table measured by the paired step (none for a run without paired.csv)."""
    if headline is None or not len(headline) or "source" not in headline:
        return pd.DataFrame(columns=["platform"])
    return headline[headline["source"] == "paired"]


def _band() -> str:
    low, high = paper.RESPONSE_RATIO_BAND
    return f"{low:.2f}x to {high:.2f}x"


def _paired_claim(paired: pd.DataFrame, results: Results, ci: str) -> tuple[str, str]:
    """The paper: about 35 % more response time for Kubeless, judged by equivalence on the paired step's ratio."""
    r = paired[paired["platform"] == results.headline].iloc[0]
    if not r["n"] or not math.isfinite(r["ratio"]):
        label = "~35 % response-time overhead: not measured"
        return label, (f"**{label}**: the paired step has no round where both {results.headline} and "
                       f"{results.baseline} answered (paired.csv).")
    word = r["paper_claim"]
    label = f"~35 % response-time overhead: {word}"
    interval = (f"{ci} {r['ratio_ci_low']:.2f} to {r['ratio_ci_high']:.2f}" if math.isfinite(r["ratio_ci_low"])
                else f"{int(r['n'])} pairs, too few for an interval")
    where = {"holds": "inside", "does not hold": "outside"}.get(word, "not wholly inside or outside")
    return label, (f"**{label}**: one request at a time, {results.headline} takes {_times(r['ratio'])} the "
                   f"{results.baseline}'s response time (median of per-pair ratios, {interval}; geometric mean "
                   f"{_times(r['geomean_ratio'])}), the whole "
                   f"interval {where} the paper's {_band()} (35 ± 10 %); paired.csv, {int(r['n'])} pairs, failed "
                   f"requests: {results.headline} {int(r['platform_failed'])}, {results.baseline} "
                   f"{int(r['baseline_failed'])}.")


def _other_platforms_claim(paired: pd.DataFrame, results: Results, ci: str) -> str | None:
    """The same c=1 ratio for every other function platform of the paired step, in one sentence."""
    others = paired[(paired["platform"] != results.headline) & (paired["n"] > 0)] if len(paired) else paired
    if not len(others):
        return None

    def one(r: pd.Series) -> str:
        bounds = (f" [{r['ratio_ci_low']:.2f}, {r['ratio_ci_high']:.2f}]" if math.isfinite(r["ratio_ci_low"])
                  else "")
        return f"{r['platform']} {_times(r['ratio'])}{bounds} ({r['paper_claim']})"

    return (f"**Other function platforms at c=1** (paired, x {results.baseline}, {ci}, against the paper's "
            f"{_band()}): " + "; ".join(one(r) for _, r in others.iterrows()) + ".")


def _prediction_claim(rows: pd.DataFrame, ci: str) -> tuple[str, str]:
    """The paper: no significant change in prediction time. Judged on the probe's relative overhead."""
    thr = paper.MINOR_PREDICTION_OVERHEAD_PCT
    if not (len(rows) and math.isfinite(rows.iloc[0]["overhead_pct"])):
        label = "prediction overhead: not measured"
        return label, (f"**{label}**: the run has no successful latency-probe requests with a prediction time for "
                       "both platforms (probe.csv).")
    r = rows.iloc[0]
    est, lo, hi = r["overhead_pct"], r["overhead_pct_ci_low"], r["overhead_pct_ci_high"]
    if hi <= thr:
        word, where = "holds", f"within the +{thr:.0f} % we call minor"
    elif lo > thr:
        word, where = "does not hold", f"more than the +{thr:.0f} % we call minor"
    else:
        word, where = "undecided", f"an interval that straddles the +{thr:.0f} % we call minor"
    label = f"no major prediction overhead: {word}"
    return label, (f"**{label}**: the function's prediction time is {_pct(est)} over the container's ({ci} "
                   f"{_pct(lo)} to {_pct(hi)}; {_ms(r['overhead_ms'])}), {where}.")


def _response_claim(rows: pd.DataFrame, ci: str) -> tuple[str, str]:
    """The paper: about 35 % more response time for Kubeless. Judged the way the paper computed it."""
    if not (len(rows) and all(math.isfinite(rows.iloc[0].get(k, math.nan))
                              for k in ("overhead_pct_of_function", "overhead_ms_ci_low"))):
        label = "response-time overhead: not measured"
        return label, f"**{label}**: probe.csv has no successful requests for both platforms."
    r = rows.iloc[0]
    est, lo, hi = (r["overhead_pct_of_function"], r["overhead_pct_of_function_ci_low"],
                   r["overhead_pct_of_function_ci_high"])
    target, tol = paper.RESPONSE_OVERHEAD_PCT_AS_STATED, paper.RESPONSE_OVERHEAD_TOLERANCE_PTS
    if r["overhead_ms_ci_low"] <= 0:
        state = "does not hold: the function is not measurably slower"
    elif hi < target - tol:
        state = "holds in direction only: the function is slower, but by less than the paper found"
    elif lo > target + tol:
        state = "holds in direction only: the function is slower, by much more than the paper found"
    else:
        state = "holds: the function is slower by about what the paper found"
    head, _, tail = state.partition(": ")
    label = f"~35 % response-time overhead: {head}"
    return label, (f"**{label}**: {tail}: {_ms(r['overhead_ms'])} more per sequential request, {est:.0f} % of the "
                   f"function's time ({ci} {lo:.0f} to {hi:.0f} %) against the paper's {target:.0f} %; from the "
                   "block probe, judged by overlap, because this run has no paired.csv rows (made before the paired "
                   "step, or with paired_requests 0).")


def _load_claim(cross: pd.DataFrame | None, results: Results, ci: str) -> str | None:
    """How much slower each function platform is at the highest concurrency both it and the baseline ran."""
    if cross is None or not len(cross) or not cross["mean_ratio"].notna().any():
        return None
    top = int(cross["concurrency"].max())
    at = cross[(cross["concurrency"] == top) & cross["mean_ratio"].notna()].sort_values("mean_ratio")
    if not len(at):
        return None

    def one(r: pd.Series) -> str:
        interval = (f"{ci} {r['mean_ratio_ci_low']:.2f} to {r['mean_ratio_ci_high']:.2f}"
                    if math.isfinite(r["mean_ratio_ci_low"]) else "one repetition, no interval")
        return f"{_times(r['mean_ratio'])} for {r['platform']} ({interval})"

    lead = f"**Under load**: at c={top} a request takes "
    if len(at) == 1:
        return f"{lead}{one(at.iloc[0])} the {results.baseline}'s mean response time."
    return (f"{lead}from {one(at.iloc[0])} to {one(at.iloc[-1])} the {results.baseline}'s mean response time, "
            f"over {len(at)} function platforms.")


def _why(breakdown: pd.DataFrame, results: Results) -> str | None:
    pair = f"{results.headline} - {results.baseline}"
    diff = breakdown[breakdown["platform"] == pair] if len(breakdown) else breakdown
    if not len(diff):
        return None
    r = diff.sort_values("concurrency").iloc[0]
    parts = {k: r[k] for k in WHY if math.isfinite(r[k])}
    if not parts:
        return ("**Why** cannot be said from this run: runs.csv holds no server-side or prediction times, so the "
                "overhead cannot be split.")
    total = r["client_ms"]
    main = max(parts, key=lambda k: parts[k])
    name, meaning = WHY[main]
    share = f" ({100 * parts[main] / total:.0f} %)" if total > 0 else ""
    return (f"**Why**: at c={int(r['concurrency'])} most of the extra {_ms(total)} per request on {results.headline}"
            f"{share} is {name}: {meaning}.")


def _errors_claim(conc: pd.DataFrame, results: Results) -> str | None:
    """The failed requests of the concurrency runs in one sentence; the full account is _errors'."""
    if not len(conc):
        return None
    attempts = int(conc["served"].sum() + conc["errors"].sum())
    errors = int(conc["errors"].sum())
    if not attempts:
        return None
    if not errors:
        return f"**Failed requests**: none of {attempts:,} (the paper saw none either)."
    by = conc.groupby("platform", sort=False)["errors"].sum()
    by = by[by > 0]
    where = ", ".join(f"{p} {int(n)}" for p, n in by.items()) if len(by) <= 3 else f"{len(by)} platforms"
    return (f"**Failed requests**: {errors:,} of {attempts:,} ({100 * errors / attempts:.1f} %: {where}) "
            "where the paper saw none; the concurrency section says how they failed.")


def _errors(conc: pd.DataFrame, results: Results) -> str | None:
    failed = results.failed_runs
    failed = failed[failed["experiment"] == "concurrency"] if len(failed) else failed
    aborted = (f" {len(failed)} ab run(s) did not finish at all ("
               + ", ".join(failed["run_key"].astype(str)) + "), which the paper would count as failures."
               if len(failed) else "")
    if not len(conc):
        return f"**Failed requests**:{aborted}" if aborted else None
    errors, lengths = int(conc["errors"].sum()), int(conc["length_mismatches"].sum())
    where = conc[conc["errors"] > 0]
    cells = ", ".join(f"{r.platform} c={r.concurrency}: {r.errors}" for r in where.itertuples())
    text = (f"**Failed requests**: this run had {errors} real error(s)" + (f" ({cells})" if cells else ""))
    causes = [f"{int(conc[c].sum())} {c.replace('_', ' ')}" for c in ERROR_CAUSES if c in conc and conc[c].sum()]
    if causes and errors:
        text += ", by what the client saw: " + ", ".join(causes)
    text += (f"; ab also flagged {lengths} response(s) whose length differed from the first one, which are served "
             "predictions, not errors." if lengths else ".")
    layers = layer_sentence(results) if errors else ""  # issue 11: the evidence of this run, not a fixed sentence
    return text + (f" {layers}" if layers else "") + aborted


def _notes(conc: pd.DataFrame, results: Results) -> list[str]:
    out = []
    if len(conc) and "unstable" in conc and conc["unstable"].any():  # issue 14
        unstable = conc[conc["unstable"]]
        cells = (", ".join(f"{r.platform} c={r.concurrency} ({r.median_cv_pct:.0f} %)" for r in unstable.itertuples())
                 if len(unstable) <= 4 else f"{len(unstable)} of {len(conc)} (medians' CV in the full table)")
        out.append(f"**Unstable cells**, whose repetitions' medians disagree beyond the stability threshold, so that "
                   f"their means are the numbers to read: {cells}.")
    top = conc[(conc["platform"] == results.headline) & (conc["concurrency"] == 20)] if len(conc) else conc
    if len(top):
        ref = paper.FIG1_FUNCTION_MS[20]
        out.append(f"At c=20 {results.headline}'s mean is {_ms(top.iloc[0]['mean_ms'])}; the paper's Kubeless gave "
                   f"{ref['mean_ms']:.0f} ms on its own, slower VMs, so compare the shape, not the level.")
    return out


def _method(conc: pd.DataFrame, paired_used: bool = False) -> list[str]:
    thr = paper.MINOR_PREDICTION_OVERHEAD_PCT
    target, tol = paper.RESPONSE_OVERHEAD_PCT_AS_STATED, paper.RESPONSE_OVERHEAD_TOLERANCE_PTS
    out = [
        f"**Prediction time** (the paper: no significant change): the function's mean prediction time over the "
        f"sequential probe requests relative to the container's, with a bootstrap interval. We call an overhead "
        f"minor up to +{thr:.0f} %, the size of the paper's own difference (0.12 s vs 0.10 s) that it calls no "
        "significant change; the claim holds when the whole interval lies below that, fails when it lies above.",
        f"**Response time** (the paper: about 35 % more for Kubeless), from the paired step (paired.csv): in each "
        "round one request to every platform, one after the other, the order rotated from round to round, so that "
        "both requests of a pair share the machine's speed at that moment; the ratio is the median of the "
        "per-round ratios (function / baseline, rounds where both answered) with its order-statistic interval, "
        f"the geometric mean beside it. The claim holds only when the whole interval lies inside {_band()} (the "
        "sentence as worded, 35 % more than the container, ± 10 points; the paper's Table 1 itself gives 1.54x), "
        "does not hold when the whole interval lies outside, and is inconclusive otherwise: a noisier run cannot "
        "confirm it more easily." if paired_used else
        f"**Response time** (the paper: about 35 % more for Kubeless; this run has no paired.csv rows, so the "
        "block probe judges it as before the paired step existed): measured the way the paper's 35 % comes out "
        f"of its Table 1, as a share of the function's time ((0.2 - 0.13) / 0.2); relative to the container its "
        f"table gives +{paper.RESPONSE_OVERHEAD_PCT_OF_CONTAINER:.0f} %. We call it 'about 35 %' when the interval "
        f"overlaps {target:.0f} ± {tol:.0f} points, and the function slower when the interval of the difference "
        "in ms lies above zero.",
        "**Under load**: each function platform's mean over the baseline's mean of the same repetition, geometric "
        "mean over the repetitions with a t-interval on the log ratios (the platforms ran interleaved, so a "
        "repetition's two runs share the machine's drift). At c >= 10 the headline table gives beside it the "
        "share of requests in the slow mode (more than 1 s over their run's median: the SYN retry after a full "
        "listen backlog), which a mean mixes with the usual ones.",
    ]
    if len(conc) and int(conc["repetitions"].min()) < 6:
        out.append(f"With {int(conc['repetitions'].min())} repetition(s) per cell the intervals across repetitions "
                   "are wide and the median's order-statistic interval cannot reach 95 % coverage; its achieved "
                   "level is in concurrency.csv (median_ci_level).")
    return out
