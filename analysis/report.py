"""Assemble the report: compute every table, draw every figure, and write them out as

    OUT/report.md        Markdown, figures linked from figures/
    OUT/report.html      one self-contained file, figures embedded as base64 PNG
    OUT/tables/*.csv     every table, unformatted
    OUT/figures/*.png

The document is built once as a list of blocks and rendered twice, so the two formats cannot drift apart.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from analysis import capacity, figures, headline, ingress, paper, tables
from analysis.bench.config import DEFAULTS as BENCH_DEFAULTS
from analysis.bench.schema import ERROR_CAUSES, samples_needed
from analysis.document import Answer, Banner, Block, Bullets, Details, Figure, Group, Heading, Para, Table
from analysis.load import Results
from analysis.summarize import per_run
from analysis.verdict import Verdict, verdict


@dataclass
class Report:
    md: Path
    html: Path
    tables: dict[str, Path]
    figures: dict[str, Path]
    complete: bool
    summary: str


def _f(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) and math.isfinite(x) else "n/a"


def _ci(row: pd.Series, name: str, digits: int = 1) -> str:
    # a table whose rows never had an interval (e.g. no container platform to compare with) lacks the columns
    est, lo, hi = (row.get(key, math.nan) for key in (name, f"{name}_ci_low", f"{name}_ci_high"))
    if not isinstance(est, int | float) or not math.isfinite(est):
        return "n/a"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return _f(est, digits)
    return f"{_f(est, digits)} [{_f(lo, digits)}, {_f(hi, digits)}]"


def _busy_lines(results: Results) -> list[str]:
    """Why the machine counted as busy: the checks before the benchmark, and the busy concurrency runs."""
    lines = [f"before the benchmark ({c['checked_utc']}): " + "; ".join(c["reasons"])
             for c in results.manifest.get("system_checks") or [] if c.get("busy")]
    runs = results.runs[results.runs["experiment"] == "concurrency"]
    if "busy" in runs.columns and (runs["busy"] == 1).any():
        hit = runs[runs["busy"] == 1]
        lines.append(f"{len(hit)} of {len(runs)} concurrency runs were busy (others' CPU up to "
                     f"{_f(float(hit['others_cpu_pct'].max()), 0)} % of a core), e.g. "
                     + ", ".join(hit["run_key"].astype(str).head(5)) + "; see 'The machine' below")
    return lines


def _pooled(row: pd.Series, p: int) -> str:
    """A pooled percentile, or how far its cell is from the samples it needs."""
    if math.isfinite(row[f"p{p}_ms"]):
        return _ci(row, f"p{p}_ms")
    return f"too few samples ({row['served']} of {samples_needed(p)})"


def _cv_threshold(results: Results) -> float:
    return float(results.config.get("stability_cv_pct", BENCH_DEFAULTS["stability_cv_pct"]))


def _rows(df: pd.DataFrame, cols: list[tuple[str, Callable[[pd.Series], str]]]) -> tuple[list[str], list[list[str]]]:
    return [h for h, _ in cols], [[fn(r) for _, fn in cols] for _, r in df.iterrows()]


def build(results: Results, out: Path, settings: tables.Settings | None = None) -> Report:
    """Compute, draw and write the whole report for ``results`` under ``out``."""
    s = settings or tables.Settings()
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)

    runs = per_run(results)
    t = {
        "table1": tables.table1(results, s),
        "table1_overhead": tables.table1_overhead(results, s),
        "concurrency": tables.concurrency_table(runs, results, s),
        "overhead": tables.overhead_table(runs, results, s),
        "breakdown": tables.breakdown_table(runs, results),
        "coldstart": tables.coldstart_table(results, s),
        "resources": tables.resources_table(runs, results),
        "machine": tables.machine_table(results),  # issue 14
        "per_run": runs.reset_index(),
    }
    t.update(capacity.tables(results, s.level))  # issue 13: open_loop_runs, open_loop_capacity, open_loop_vs_closed
    t.update(ingress.tables(results, runs))  # issue 11: ingress_vs_direct, errors_by_layer, overload, nowarmup, ...
    t["cross_platform"] = tables.cross_platform_table(runs, results, t["concurrency"], t["open_loop_capacity"],
                                                      t["coldstart"], t["resources"], s)
    t["headline"] = headline.headline_table(results, runs, s.level, t["table1_overhead"])  # issue 24
    t["paired_ratios"] = headline.paired_ratios(results)
    t["summary"] = tables.cross_platform_summary(t["cross_platform"], t["concurrency"], t["open_loop_capacity"],
                                                 t["coldstart"], results)  # issue 27: the top of the report
    csvs = {}
    for name, df in t.items():
        csvs[name] = out / "tables" / f"{name}.csv"
        df.to_csv(csvs[name], index=False)

    fdir = out / "figures"
    figs_made = {
        "response_vs_concurrency": figures.response_vs_concurrency(t["concurrency"], results,
                                                                   fdir / "response_vs_concurrency.png"),
        "latency_cdf": figures.latency_cdfs(results, fdir / "latency_cdf.png"),
        "breakdown": figures.breakdown_bars(t["breakdown"], results, fdir / "breakdown.png"),
        "coldstart": figures.coldstart_bars(t["coldstart"], results, fdir / "coldstart.png"),
        "resources": figures.resources_over_time(runs, results, fdir / "resources.png"),
        "open_loop": figures.open_loop_latency(t["open_loop_runs"], t["open_loop_vs_closed"],  # issue 13
                                               t["open_loop_capacity"], results, fdir / "open_loop.png"),
        "autoscale": figures.autoscale_over_time(_autoscale_samples(results), results,  # paper profile
                                                 fdir / "autoscale.png"),
        "cross_platform": figures.cross_platform_ratios(t["cross_platform"], results, fdir / "cross_platform.png"),
    }
    found = verdict(results, t["table1_overhead"], t["concurrency"], t["overhead"], t["breakdown"], s.level,
                    t["cross_platform"], t["headline"])
    blocks = _document(results, t, figs_made, found, s)
    md_path, html_path = out / "report.md", out / "report.html"
    title = _title(results)
    md_path.write_text(_markdown(title, blocks, out), encoding="utf-8")
    html_path.write_text(_html(title, blocks), encoding="utf-8")
    return Report(md=md_path, html=html_path, tables=csvs, figures={k: v for k, v in figs_made.items() if v},
                  complete=results.complete, summary=found.summary)


def _title(results: Results) -> str:
    functions = results.function_platforms
    what = (f"{results.label(functions[0])} vs {results.label(results.baseline)}"
            if len(functions) == 1 and results.baseline else
            f"{len(functions)} function platforms vs {results.baseline or 'each other'}")
    return f"{what}: run {results.manifest['run_id']}"


WIDE = 10  # a table with more columns than this is shown short, with the full one folded beside it
SHORT_NOTE = 240  # a note longer than this (characters) is method text: it moves to "How this was measured"


def _document(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], found: Verdict,
              s: tables.Settings) -> list[Block]:
    """The answer first, then a section per question, then how it was measured."""
    level = f"{100 * s.level:g} %"
    b = _header(results, t, figs, found, level)
    for section in (_headline_section, _cross_platform_section, _table1_section,  # _headline_section: issue 24
                    partial(_concurrency_section, found=found), _open_loop_section,
                    _overhead_section, ingress.section, _coldstart_section, _autoscale_section, _resources_section,
                    _machine_section, _checks_section):
        b.extend(_fit(section(results, t, figs, level, s)))
    return _gather_method(b, _method_blocks(results, found))


def _fit(blocks: list[Block]) -> list[Block]:
    """Tables written elsewhere (analysis.ingress) follow the same layout: one wider than WIDE columns shows its
    first columns, with the whole table folded beside it; a long note is method text."""
    out: list[Block] = []
    for blk in blocks:
        if isinstance(blk, Table) and len(blk.note) > SHORT_NOTE and not blk.method:
            blk = Table(blk.headers, blk.rows, blk.csv, "", blk.note, blk.name)
        if isinstance(blk, Table) and len(blk.headers) > WIDE:
            h, r = tables.split_columns(blk.headers, blk.rows, blk.headers[:7])
            out.append(Table(h, r, blk.csv, blk.note, blk.method, blk.name))
            out.append(_full(Table(blk.headers, blk.rows, blk.csv, name=blk.name)))
        else:
            out.append(blk)
    return out


def _full(table: Table) -> Details:
    return Details(f"All {len(table.headers)} columns, {len(table.rows)} rows (also tables/{table.csv})", [table])


def _walk(blocks: list[Block]) -> list[Block]:
    out: list[Block] = []
    for blk in blocks:
        out.append(blk)
        if isinstance(blk, Details | Group):
            out.extend(_walk(blk.blocks))
    return out


def _gather_method(blocks: list[Block], method: list[Block]) -> list[Block]:
    """Every table's method text, once per CSV, in the order the tables appear, under "How this was measured"."""
    items, seen = [], set()
    for blk in _walk(blocks):
        if isinstance(blk, Table) and blk.method and blk.csv not in seen:
            seen.add(blk.csv)
            items.append((f"**{blk.name}** (tables/{blk.csv})" if blk.name else f"**tables/{blk.csv}**")
                         + f": {blk.method}")
    tail = [Heading("How this was measured", role="method"), *method[:1]]
    if items:
        tail += [Heading("The tables", 3), Bullets(items)]
    return blocks + tail + method[1:]


def _header(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], found: Verdict,
            level: str) -> list[Block]:
    m = results.manifest
    b: list[Block] = []
    if not results.complete:
        b.append(Banner("INCOMPLETE RUN: these numbers cover only what finished and are not the planned experiment",
                        [*results.incomplete_reasons,
                         "Cells with fewer repetitions than planned are marked '(incomplete)' in the tables."]))
    if m.get("profile") == "synthetic":
        b.append(Banner("SYNTHETIC DATA: generated to exercise the analysis, not measured", []))
    busy = _busy_lines(results)  # issue 14
    if busy:
        b.append(Banner("BUSY MACHINE: something else competed for the CPUs, so these latencies include its noise",
                        busy))
    host = m.get("host", {})
    b.append(Heading("Verdict: what serving the model as a function costs", role="summary"))
    question = (f"How much slower is the CNN served by each function platform than by the {results.baseline} "
                f"baseline on the same machine, and do the paper's two conclusions hold? Run {m['run_id']} "
                f"({m['status']}, {m['runs_done']} of {m['runs_planned']} runs; {m.get('profile', '?')} profile, "
                f"{host.get('cores', '?')} cores).")
    side: list[Block] = [Group("summary-table", _summary_table(results, t, level)),
                         Figure(figs.get("cross_platform"), "Mean response time over the baseline's, per "
                                f"concurrency, with its {level} interval (1 = as fast as the baseline).")]
    b.append(Group("summary", [Answer(question, found.claims), Group("side", side)]))
    return b


def _summary_table(results: Results, t: dict[str, pd.DataFrame], level: str) -> list[Block]:
    summ = t["summary"]
    if not len(summ):
        return [Para("No summary table: the run has no baseline platform or no concurrency runs.")]
    base = summ.iloc[0]  # the baseline: its lowest and highest concurrency head the columns

    def ratio(name: str) -> Callable[[pd.Series], str]:
        def cell(r: pd.Series) -> str:
            if r["role"] == "baseline":
                return "1 (baseline)"
            est, lo, hi = r[f"ratio_{name}"], r[f"ratio_{name}_ci_low"], r[f"ratio_{name}_ci_high"]
            if not math.isfinite(est):
                return "n/a"
            return f"{est:.2f}x [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else f"{est:.2f}x (one rep.)"
        return cell

    slo = capacity.slo_ms(results)
    head = t.get("headline", pd.DataFrame())
    pairs = head[head["source"] == "paired"].set_index("platform") if len(head) else pd.DataFrame()

    def paired(r: pd.Series) -> str:  # issue 24: the headline, beside the ab runs' c=1 ratio
        if r["role"] == "baseline":
            return "1 (baseline)"
        if r["platform"] not in pairs.index or not math.isfinite(pairs.loc[r["platform"], "ratio"]):
            return "n/a"
        p = pairs.loc[r["platform"]]
        return f"{p['ratio']:.2f}x [{_f(p['ratio_ci_low'], 2)}, {_f(p['ratio_ci_high'], 2)}]"

    cols: list[tuple[str, Callable[[pd.Series], str]]] = [
        ("platform", lambda r: r["platform"] + (f" (via {r['via']})" if r["via"] else "")),
        (f"c={int(base['concurrency_c1'])}, x baseline", ratio("c1")),
        (f"c={int(base['concurrency_top'])}, x baseline", ratio("top")),
        ("capacity req/s", lambda r: _f(r["capacity_rps"], 1)),
        ("cold start s", lambda r: _f(r["coldstart_median_ms"] / 1000, 2)),
        ("failed %", lambda r: _f(r["failure_pct"], 1)),
    ]
    if len(pairs):
        cols.insert(2, ("c=1 paired, x baseline", paired))
    h, r = _rows(summ, cols)
    first = ("c=1 paired: the headline, one request to each platform in turn (tables/headline.csv); the others: "
             "mean" if len(pairs) else "Mean")
    return [Table(h, r, "summary.csv", f"{first} response time as a multiple of the baseline's [{level} CI] (1.35 "
                  f"= 35 % slower); capacity: the highest rate served with p99 ≤ {slo:g} ms; cold start (median) and "
                  "failed requests: each platform's own (n/a: not measured).", name="The summary table",
                  method="one row per platform, taken from the cross-platform table (its ratio at the lowest and "
                  "highest concurrency), the open-loop capacity table and the cold-start table; failed % pools "
                  "the platform's concurrency cells: failed requests over attempts, each failed request once. The "
                  "paired column (runs with paired.csv) is the headline table's c=1 row: the median of the per-round "
                  "ratios of the paired step with its order-statistic interval.")]


def _method_blocks(results: Results, found: Verdict) -> list[Block]:
    """The first block goes right under "How this was measured" (the run); the rest after the tables' method."""
    m = results.manifest
    cfg = results.config
    host = m.get("host", {})
    versions = m.get("versions", {})
    run = Bullets([
        f"**Run** {m['run_id']}: status {m['status']}, {m['runs_done']} of {m['runs_planned']} planned runs done; "
        f"started {m.get('started_utc') or '?'}, finished {m.get('finished_utc') or '(not finished)'}",
        f"**Profile** {m.get('profile', '?')}; platforms: " + ", ".join(
            f"{p} = {info.get('kind', '?')} at {info.get('url', '?')}" for p, info in m["platforms"].items()),
        f"**Experiment**: concurrency {', '.join(map(str, cfg['concurrency']))}; {cfg['repetitions']} repetitions "
        f"of {cfg['requests_per_run']} requests; keep-alive {cfg.get('keepalive', '?')}; payload "
        f"{cfg.get('payload', '?')}; warm-up runs excluded from every statistic",
        f"**Host** {host.get('cpu_model', '?')}, {host.get('cores', '?')} cores, "
        f"{_f(host.get('memory_bytes', float('nan')) / 1e9, 1)} GB"
        + "".join(f", {host[k]}" for k in ("os", "kernel") if host.get(k)),
        "**Versions** " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "not recorded")
        + f"; git commit {m.get('git_commit') or 'not recorded'}",
    ])
    return [
        run,
        Heading("How the verdict is judged", 3),
        Bullets(found.method),
        Heading("References", 3),
        Bullets([
            f"Bhanderi, Atole, Panchmia, 'Evaluation of a deep learning model on Kubeless': two VMs with {paper.CPUS} "
            "CPUs and 2 GB RAM, Minikube 0.29, Kubernetes 1.10.4, Kubeless 1.0.0-alpha; the source of every paper "
            "value quoted. Our host and stack differ, so compare ratios and shapes, not absolute levels.",
            "J.-Y. Le Boudec, Performance Evaluation of Computer and Communication Systems (EPFL Press, 2010): "
            "the order-statistic interval for a median or percentile, as the SeBS benchmark suite "
            "(spcl/serverless-benchmarks) reports them.",
            "MLPerf LoadGen, Server scenario: the samples a percentile needs and the p99 latency objective of the "
            "open-loop capacity.",
            "Kubeless issue #178: a cold start as replicas 0→1 / deploy → first 200, the definition its "
            "maintainers use.",
        ]),
    ]


def _headline_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                      s: tables.Settings) -> list[Block]:
    """Issue 24: each function platform's ratio to the baseline, c=1 (the paired step) first, then per concurrency
    (the repetitions), every row naming what it rests on."""
    head = t["headline"]
    if not len(head):
        return []
    low, high = paper.RESPONSE_RATIO_BAND
    b: list[Block] = [Heading(f"The headline: each function platform over the baseline ({results.baseline})")]
    if not results.has_paired:
        b.append(Para("This run has no paired.csv rows (it was made before the paired step, or with "
                      "paired_requests 0), so its c=1 ratio is the block probe's and the ~35 % claim is judged as "
                      "before, by overlap."))

    def ratio(r: pd.Series) -> str:
        if not math.isfinite(r["ratio"]):
            note = r.get("ratio_note")
            return f"n/a ({note})" if isinstance(note, str) and note else "n/a"
        if not math.isfinite(r["ratio_ci_low"]):
            if r["source"] == "paired":
                return f"{r['ratio']:.2f}x ({int(r['n'])} pairs: too few for an interval)"
            return f"{r['ratio']:.2f}x (one repetition)"
        return f"{r['ratio']:.2f}x [{r['ratio_ci_low']:.2f}, {r['ratio_ci_high']:.2f}]"

    def beside(r: pd.Series) -> str:
        if r["source"] == "paired":
            return (f"geometric mean {_f(r['geomean_ratio'], 2)}x; {r['paper_claim'] or 'n/a'} "
                    f"({low:.2f}-{high:.2f}x)")
        if r["source"] == "probe blocks":
            return "blocks of requests, not pairs"
        text = f"means {_f(r['platform_mean_ms'], 1)} / {_f(r['baseline_mean_ms'], 1)} ms"
        if math.isfinite(r.get("platform_slow_pct", math.nan)):
            text += f"; slow mode {_f(r['platform_slow_pct'], 1)} % / {_f(r['baseline_slow_pct'], 1)} %"
        return text

    def source(r: pd.Series) -> str:
        unit = {"paired": "pairs", "repetitions": "reps", "probe blocks": "requests"}[r["source"]]
        return f"{r['source']}, {int(r['n'])} {unit}"

    h, r = _rows(head, [
        ("platform", lambda r: r["platform"] + (f" (via {r['via']})" if r["via"] else "")),
        ("c", lambda r: str(r["concurrency"])),
        (f"x baseline [{level} CI]", ratio),
        ("from", source),
        ("beside it", beside),
    ])
    first = ("c=1 from the paired step, one request to each platform in turn" if results.has_paired else
             "c=1 from the block probe (no paired.csv rows in this run)")
    b.append(Table(h, r, "headline.csv", f"{first}; each concurrency from its repetitions, with both means and, from "
                   "c=10, the slow-mode shares.",
                   name="The headline table",
                   method="paired rows: median of the per-round ratios platform / baseline over the rounds where "
                   "both answered (paired.csv) with its order-statistic interval (none below 6 pairs), the geometric "
                   "mean beside it; failed "
                   "requests of each platform in the step in the CSV (platform_failed, baseline_failed), each once; "
                   f"the paper's claim holds when the whole interval lies in {low:.2f}-{high:.2f}x, does not hold "
                   "when it lies wholly outside, else inconclusive. repetitions rows: geometric mean over "
                   "repetitions of the platform's mean over the baseline's mean of the same repetition, t-interval "
                   "on the logs; slow mode: served requests more than 1 s over their run's median (the SYN retry), "
                   "platform / baseline. probe blocks (runs without paired.csv): the block probe's ratio of means "
                   "with its percentile-bootstrap interval. Per-round ratios: tables/paired_ratios.csv."))
    return b


def _cross_platform_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                            s: tables.Settings) -> list[Block]:
    """Every function platform against the baseline, one row per platform and concurrency (its figure is the
    summary figure at the top)."""
    cross = t["cross_platform"]
    if not len(cross):
        return []
    b: list[Block] = [Heading(f"Every function platform against the baseline ({results.baseline})")]

    def ratio(r: pd.Series) -> str:
        if not math.isfinite(r["mean_ratio"]):
            note = r.get("ratio_note")
            return f"n/a ({note})" if isinstance(note, str) and note else "n/a"
        if not math.isfinite(r["mean_ratio_ci_low"]):
            return f"{r['mean_ratio']:.2f} (one repetition)"
        return f"{r['mean_ratio']:.2f} [{r['mean_ratio_ci_low']:.2f}, {r['mean_ratio_ci_high']:.2f}]"

    h, r = _rows(cross, [
        ("platform", lambda r: r["platform"] + (f" (via {r['via']})" if r["via"] else "")),
        ("c", lambda r: str(r["concurrency"])),
        (f"mean ratio [{level} CI]", ratio),
        ("p99 ratio", lambda r: f"{r['p99_ratio']:.2f}" if math.isfinite(r["p99_ratio"]) else "too few samples"),
        ("failed %", lambda r: _f(r["failure_pct"], 1)),
        ("capacity req/s (baseline)", lambda r: f"{_f(r['capacity_rps'], 1)} ({_f(r['baseline_capacity_rps'], 1)})"),
        ("cold start median ms", lambda r: _f(r["coldstart_median_ms"], 0)),
        ("memory peak MiB", lambda r: _f(r["mem_peak_mib"], 0)),
    ])
    b.append(Table(h, r, "cross_platform.csv", "The summary figure's numbers, per concurrency: the platform's mean "
                   "response time over the baseline's (1.35 = 35 % slower), beside its p99s, failures and memory.",
                   name="Every function platform against the baseline",
                   method="mean ratio: geometric mean over repetitions of the platform's mean over the baseline's of "
                   "the same repetition, with a t-interval on the log ratios; p99 ratio: the cells' pooled p99s; "
                   "failed %: failed requests over attempts, each counted once; capacity: open-loop capacity at the "
                   "latency objective (n/a without the rate experiment); cold start and memory: the platform's "
                   "own."))
    return b


def _table1_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                    s: tables.Settings) -> list[Block]:
    b: list[Block] = []
    b.append(Heading("Table 1: prediction and response time, sequential requests"))
    t1 = t["table1"]
    if len(t1) and t1["requests_ok"].sum():
        h, r = _rows(t1, [
            ("platform", lambda r: r["platform"] + (f" (paper: {r['paper_name']})" if r["paper_name"] else "")),
            ("requests ok / failed", lambda r: f"{r['requests_ok']} / {r['requests_failed']}"),
            (f"prediction ms [{level} CI]", lambda r: _ci(r, "prediction_ms")),
            ("paper prediction ms", lambda r: _f(r["paper_prediction_ms"], 0)),
            (f"response ms [{level} CI]", lambda r: _ci(r, "response_ms")),
            ("paper response ms", lambda r: _f(r["paper_response_ms"], 0)),
        ])
        b.append(Table(h, r, "table1.csv", "One request at a time: response time is what the client waited, "
                       "prediction time what the service reports for the model's work.", name="Table 1",
                       method="mean over the latency-probe requests (HTTP 200 only), t-interval over requests. "
                       "Response time is the client's, around the whole request; prediction time is what the "
                       "service reports (decode + preprocess + model)."))
        h, r = _rows(t["table1_overhead"], [
            ("function over container", lambda r: r["metric"]),
            (f"ms [{level} CI]", lambda r: _ci(r, "overhead_ms")),
            ("% of container", lambda r: _ci(r, "overhead_pct", 0)),
            ("% of function (paper's 35 % way)", lambda r: _ci(r, "overhead_pct_of_function", 0)),
            ("paper ms", lambda r: _f(r["paper_overhead_ms"], 0)),
            ("paper % of container", lambda r: _f(r["paper_overhead_pct"], 0)),
            ("paper % of function", lambda r: _f(r["paper_overhead_pct_of_function"], 0)),
        ])
        b.append(Table(h, r, "table1_overhead.csv", "The function's extra time over the container's, read both ways "
                       "the paper's 35 % can be read.", name="Table 1, function over container",
                       method=f"percentile bootstrap over the probe requests ({s.resamples} resamples). The paper's "
                       "'35 %' is (0.2 - 0.13) / 0.2, a share of the function's time; over the container's time its "
                       "table gives 54 %."))
    else:
        b.append(Para("No latency-probe requests succeeded (probe.csv missing or empty), so there is no Table 1."))
    return b


CONCURRENCY_SHORT = ("platform", "c", "reps", "mean ms [t CI]", "p99 ms, pooled [order-stat. CI]",
                     "throughput req/s [t CI]", "errors")


def _concurrency_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                         s: tables.Settings, found: Verdict | None = None) -> list[Block]:
    b: list[Block] = []
    b.append(Heading("Concurrency (paper Fig. 1)"))
    conc = t["concurrency"]
    if not len(conc):
        b.append(Para("No concurrency runs finished."))
        return b
    b.append(Figure(figs["response_vs_concurrency"], "Mean response time vs concurrency, with the paper's "
                    "Kubeless values (c=1: 0.2 s; c=20: mean 965 ms, fastest 472 ms, slowest about 1 s)."))
    h, r = _rows(conc, [
        ("platform", lambda r: r["platform"]),
        ("c", lambda r: str(r["concurrency"])),
        ("reps", lambda r: f"{r['repetitions']}/{r['repetitions_planned']}"
         + ("" if r["complete"] else " (incomplete)")
         + (f" (+{r['extra_repetitions']} extra)" if r.get("extra_repetitions", 0) > 0 else "")),
        ("requests", lambda r: str(r["requests"])),
        ("mean ms [t CI]", lambda r: _ci(r, "mean_ms")),
        ("median ms [order-stat. CI]", lambda r: _ci(r, "median_ms") + f" ({100 * r['median_ci_level']:.1f} %)"),
        ("medians' CV", lambda r: _f(r["median_cv_pct"], 1) + " %" + (" UNSTABLE" if r["unstable"] else "")),
        ("p95 ms, pooled [order-stat. CI]", lambda r: _pooled(r, 95)),
        ("p99 ms, pooled [order-stat. CI]", lambda r: _pooled(r, 99)),
        ("min ms", lambda r: _f(r["min_ms"], 0)),
        ("max ms", lambda r: _f(r["max_ms"], 0)),
        ("throughput req/s [t CI]", lambda r: _ci(r, "throughput_rps")),
        ("errors", lambda r: str(r["errors"])),
        *((c.replace("_", " "), (lambda r, c=c: str(r[c]))) for c in ERROR_CAUSES),
        ("2xx of another length (served)", lambda r: str(r["length_mismatches"])),
    ])
    method = ("each repetition is one ab run; statistics are computed per run from ab's per-request times (-g, "
              "whole ms) and then across repetitions: mean (the headline: it repeats where a median jumps between "
              f"the modes of a bimodal cell) and throughput with a Student-t {level} interval; the median of the "
              "runs' medians with the order-statistic interval (Le Boudec), whose achieved coverage is in "
              "parentheses; min and max over all served requests. p95 and p99 pool the cell's served requests "
              "over its repetitions, with the order-statistic interval over those requests (requests of one run "
              "share a queue, so it is optimistic), and are shown only with the samples they need (130 for a p95, "
              "662 for a p99; MLPerf LoadGen's rule). medians' CV: the coefficient of variation of the repetitions' "
              f"medians; above {_f(_cv_threshold(results), 0)} % a cell is UNSTABLE (it got extra repetitions, up "
              "to a cap, and still disagrees): compare its mean, not its median. Latency covers served requests; "
              "failed attempts with no reply are set apart. Errors = requests without a complete 2xx answer, each "
              "counted once, = non-2xx + reset + refused + empty reply + timeout (ab's own 'Failed requests' "
              "counts a reset three times); 2xx replies of another length are listed apart because they were "
              "served.")
    sh, sr = tables.split_columns(h, r, list(CONCURRENCY_SHORT))
    b.append(Table(sh, sr, "concurrency.csv", "Each cell is one ab run per repetition; the mean is the headline, "
                   f"with its {level} interval across repetitions.", method, "The concurrency table"))
    b.append(_full(Table(h, r, "concurrency.csv", name="The concurrency table")))
    if found:
        b.extend(Para(note) for note in found.notes)
        if found.errors:
            b.append(Para(found.errors))
    b.append(Heading("Latency distribution", 3))
    b.append(Figure(figs["latency_cdf"], "Distribution of every request's response time per concurrency."))
    return b


def _open_loop_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                       s: tables.Settings) -> list[Block]:
    """Issue 13: open-loop load, the knee and the capacity at the latency objective (analysis/capacity.py)."""
    b: list[Block] = [Heading("Open-loop load: capacity at the latency objective")]
    rates, cap, vs = t["open_loop_runs"], t["open_loop_capacity"], t["open_loop_vs_closed"]
    if not len(rates):
        b.append(Para("This run has no open-loop (rate) runs (rate_runs.csv missing or empty)."))
        return b
    slo = capacity.slo_ms(results)
    b.append(Figure(figs.get("open_loop"), "Latency against offered load: open loop p50/p99 (from the scheduled send "
                    "time, valid runs, p99 only with 662 served requests) and the ab cells at the throughput they "
                    "reached; the objective and the capacity at it with its interval."))
    if len(cap):
        h, r = _rows(cap, [
            ("platform", lambda r: r["platform"]),
            ("closed-loop capacity req/s", lambda r: capacity.rps(r["closed_loop_capacity_rps"])),
            ("knee", capacity.knee_text),
            (f"capacity: <= 1 % slower than {slo:g} ms, failed or dropped", capacity.capacity_text),
            (f"interval (rates tried, {level} per rate)", capacity.interval_text),
            ("capacity search bracket", capacity.search_text),
            ("% of closed-loop capacity", lambda r: _f(r["capacity_pct_of_closed_loop"], 0)),
            ("served at that rate (runs)", lambda r: f"{r['capacity_served']} ({r['capacity_runs']})"),
            ("its p99 ms", lambda r: capacity.pct_cell(r["capacity_p99_ms"], r["capacity_served"], 99)),
            ("runs left out (generator behind)", lambda r: f"{r['invalid_runs']} of {r['runs_tried']}"),
        ])
        sh, sr = tables.split_columns(h, r, [h[0], h[1], h[3], h[4], h[5], h[6]])
        b.append(Table(sh, sr, "open_loop_capacity.csv", f"The highest request rate at which each platform kept "
                       f"the requests slower than {slo:g} ms, failed or dropped to at most 1 % together, beside "
                       "what ab's closed loop reached.",
                       name="Open-loop capacity", method=(
                           "open loop: requests sent at scheduled times (seeded Poisson arrivals) whether or not "
                           "earlier ones returned, latency from the scheduled send time. A request misses the "
                           f"objective when it was served later than {slo:g} ms, failed or was dropped; one share "
                           "counts all three (with no failures, share <= 1 % is p99 <= the objective). The runs of "
                           "one offered rate (rate_repetitions, repeated search probes) are pooled. Capacity at "
                           "the objective = the highest offered rate whose share of scheduled requests that missed "
                           "it is <= 1 %, every lower rate meeting it too. Interval: from the highest of those rates "
                           f"that met it surely (the {level} Clopper-Pearson upper end of the share <= 1 %, which "
                           f"takes at least {capacity.requests_to_prove(s.level)} scheduled requests) to the first "
                           "rate above the capacity "
                           "that broke it surely (a lower end > 1 %); '<' / '>' when the rates tried do not reach "
                           "that far. With few requests per rate the interval is wide rather than hidden. Search "
                           "bracket (python -m analysis.bench rate-search): bisection on the offered rate, the "
                           "highest rate its probes met (run twice) and the lowest above it that missed. Knee = "
                           "first rate whose median is over twice the median at the lowest rate.")))
        b.append(_full(Table(h, r, "open_loop_capacity.csv", name="Open-loop capacity")))
    h, r = _rows(rates, [
        ("platform", lambda r: r["platform"]),
        ("offered req/s", lambda r: capacity.rps(r["offered_rps"])
         + (f" ({r['capacity_pct']:g} %)" if math.isfinite(r["capacity_pct"]) else "")),
        ("achieved req/s", lambda r: capacity.rps(r["achieved_rps"])),
        ("p50 ms", lambda r: capacity.pct_cell(r["p50_ms"], r["served"], 50)),
        ("p99 ms", lambda r: capacity.pct_cell(r["p99_ms"], r["served"], 99)),
        (f"missed: slower than {slo:g} ms + errors + drops [{level} CI]", lambda r: f"{r['slow']} + "
         f"{r['failed']} = {_f(100 * r['missed_share'], 1)} % [{_f(100 * r['missed_share_ci_low'], 1)}, "
         f"{_f(100 * r['missed_share_ci_high'], 1)}]"),
        ("objective", lambda r: "n/a" if not r["usable"] else ("met surely" if r["meets_surely"] else "met")
         if r["meets"] else ("broken surely" if r["breaks_surely"] else "broken")),
        ("lag p99 ms", lambda r: _f(r["lag_p99_ms"], 2)),
        ("valid", lambda r: "yes" if r["usable"] else f"**no**: {r.get('invalid_reason') or r.get('outcome')}"),
    ])
    b.append(Details(f"Every open-loop run: {len(r)} rows (also tables/open_loop_runs.csv)", [Table(
        h, r, "open_loop_runs.csv", "One row per open-loop run (rate_repetitions per platform and offered rate, "
        "and the probes of a capacity search); a run whose generator fell behind is listed, never used.",
        name="The open-loop runs", method=(
            f"rate_duration_s per run (a search probe runs long enough for {capacity.requests_to_prove(s.level)} "
            "scheduled requests). Percentiles from "
            "the scheduled send time over served requests, shown only with the samples they need "
            f"({samples_needed(50)} for a p50, {samples_needed(99)} for a p99). achieved = "
            "served per second until the last reply. A run whose p99 send lag exceeded rate_max_lag_ms had a "
            "generator that fell behind: it is listed, never used."))]))
    if len(vs):
        h, r = _rows(vs, [
            ("platform", lambda r: r["platform"]),
            ("ab c", lambda r: str(r["concurrency"])),
            ("throughput req/s", lambda r: capacity.rps(r["served_rps"])),
            ("closed loop p50 ms", lambda r: _f(r["closed_p50_ms"], 0)),
            ("open loop p50 ms", lambda r: _f(r["open_p50_ms"], 0)),
            ("closed loop p99 ms", lambda r: _f(r["closed_p99_ms"], 0)),
            ("open loop p99 ms", lambda r: _f(r["open_p99_ms"], 0)),
        ])
        b.append(Table(h, r, "open_loop_vs_closed.csv", "Each ab cell beside the open-loop latency at the same "
                       "request rate: ab waits for each reply, so it never sees the queue an arrival stream builds.",
                       name="Open loop against closed loop", method=(
                           "the open-loop latency is interpolated between the offered rates tried (log scale; n/a "
                           "outside them or without enough samples). ab waits for a reply before sending the next "
                           "request, so near capacity it measures c / throughput and never the queue an arrival "
                           "stream builds: the coordinated omission the open loop removes.")))
    return b


def _overhead_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                      s: tables.Settings) -> list[Block]:
    b: list[Block] = []
    b.append(Heading("Overhead of the function over the container"))
    over = t["overhead"]
    h, r = _rows(over, [
        ("setting", lambda r: r["setting"]),
        ("c", lambda r: str(r["concurrency"])),
        ("n", lambda r: f"{r['n']} {r['unit']}"),
        ("function ms", lambda r: _f(r["function_ms"])),
        ("container ms", lambda r: _f(r["container_ms"])),
        (f"overhead ms [{level} bootstrap CI]", lambda r: _ci(r, "overhead_ms")),
        ("overhead % of container", lambda r: _ci(r, "overhead_pct", 0)),
        ("overhead % of function", lambda r: _ci(r, "overhead_pct_of_function", 0)),
    ])
    b.append(Table(h, r, "overhead.csv", f"The extra time of {results.headline} over {results.baseline}, one request "
                   "at a time (probe) and under load (concurrency), beside the paper's.", name="The overhead table",
                   method="probe: the sequential Table 1 requests, resampled per request. concurrency: the "
                   "repetitions' mean response times, resampled by repetition and paired (platforms ran "
                   "interleaved, repetition by repetition); with few repetitions this interval is optimistic. "
                   "paper: from its Table 1, without an interval."))
    b.append(Heading("Where the time goes", 3))
    bd = t["breakdown"]
    if len(bd):
        b.append(Figure(figs["breakdown"], "Mean response time split into network/HTTP, runtime and model."))
        h, r = _rows(bd, [
            ("platform", lambda r: r["platform"]),
            ("c", lambda r: str(r["concurrency"])),
            ("client ms", lambda r: _f(r["client_ms"])),
            ("server ms", lambda r: _f(r["server_ms"])),
            ("network/HTTP ms", lambda r: _f(r["network_http_ms"])),
            ("runtime ms", lambda r: _f(r["runtime_ms"])),
            ("model ms", lambda r: _f(r["model_ms"])),
        ])
        b.append(Table(h, r, "breakdown.csv", "network/HTTP is time outside the server, runtime the server's own "
                       "work around the model, model the prediction; rows 'a - b' split the difference.",
                       name="Where the time goes", method=(
                           "means over repetitions. client = ab's per-request time; server = the platform's own "
                           "request-duration histogram on /metrics (sum/count over the run); model = the services' "
                           "prediction_ms log lines. network/HTTP = client - server (connection, accept queue, "
                           "transfer); runtime = server - model (for the function: fork per request, result "
                           "hand-back). 'n/a' means the run recorded no server or prediction time.")))
    return b


def _coldstart_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                       s: tables.Settings) -> list[Block]:
    b: list[Block] = []
    b.append(Heading("Cold start"))
    cold = t["coldstart"]
    if len(cold):
        b.append(Figure(figs["coldstart"], "Cold start per platform."))
        h, r = _rows(cold, [
            ("platform", lambda r: r["platform"]),
            ("kind", lambda r: r["kind"]),
            ("reps", lambda r: str(r["repetitions"])),
            ("never ready", lambda r: str(r["never_ready"])),
            (f"start → first 200, ms [{level} t CI]", lambda r: _ci(r, "start_to_first_200_ms", 0)),
            ("median ms", lambda r: _f(r["median_ms"], 0)),
            ("min ms", lambda r: _f(r["min_ms"], 0)),
            ("max ms", lambda r: _f(r["max_ms"], 0)),
            ("requests until ready", lambda r: _f(r["attempts_mean"], 1)),
        ])
        b.append(Table(h, r, "coldstart.csv", "From a (re)start of the serving container to its first successful "
                       "answer; the paper left cold starts out.", name="Cold start", method=(
                           "Kubeless does not scale to zero, so a cold start here is a restart of the serving "
                           "container (locally) or replicas 0→1 / deploy → first 200 on a cluster, the definition "
                           "Kubeless' maintainers use (kubeless#178). Mean with a t-interval over repetitions.")))
    else:
        b.append(Para("No cold-start repetitions were recorded (coldstart.csv missing or empty)."))
    return b


def _resources_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                       s: tables.Settings) -> list[Block]:
    b: list[Block] = []
    b.append(Heading("Resource use"))
    res = t["resources"]
    if len(res) and res["cpu_mean_pct"].notna().any():
        b.append(Figure(figs["resources"], "CPU and memory of the serving containers over the benchmark."))
        h, r = _rows(res, [
            ("platform", lambda r: r["platform"]),
            ("c", lambda r: str(r["concurrency"])),
            ("CPU mean %", lambda r: _f(r["cpu_mean_pct"], 0)),
            ("CPU max %", lambda r: _f(r["cpu_max_pct"], 0)),
            ("peak memory MiB", lambda r: _f(r["mem_peak_mib"], 0)),
            ("limit MiB", lambda r: _f(r["mem_limit_mib"], 0)),
            ("% of limit", lambda r: _f(r["mem_peak_pct_of_limit"], 0)),
            ("% of the paper's 2 GB", lambda r: _f(r["mem_peak_pct_of_paper_2gb"], 0)),
        ])
        b.append(Table(h, r, "resources.csv", "CPU in % of one core (200 % = both of the paper's two CPUs busy) and "
                       "peak memory against the container's limit and the paper's 2 GB.", name="Resource use",
                       method="mean of the runs' mean CPU and the highest sample; peak = highest memory sample of "
                       "any repetition. The paper found 'no meaningful results' for CPU."))
    else:
        b.append(Para("No CPU or memory samples were recorded."))
    return b


def _autoscale_samples(results: Results) -> pd.DataFrame:
    """autoscale.csv (paper profile), validated like the other tables; empty when the run has none."""
    from analysis.bench.schema import AUTOSCALE
    from analysis.load import REBUILD_HINT, ResultsError, _read_table

    path = Path(results.folder) / AUTOSCALE.file
    if not path.exists():
        return pd.DataFrame(columns=AUTOSCALE.names)
    problems: list[str] = []
    frame = _read_table(path, {c.name: c.kind for c in AUTOSCALE.columns}, problems)
    if problems:
        raise ResultsError(Path(results.folder), [*problems, REBUILD_HINT])
    return frame


def _autoscale_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                       s: tables.Settings) -> list[Block]:
    """Replicas and CPU over the autoscaling run, and how long the HPA took to scale up (paper profile); nothing
    when the run has no autoscale.csv rows."""
    samples = _autoscale_samples(results)
    if not len(samples):
        return []
    cfg = results.config
    interval = cfg.get("autoscale_sample_interval_s", BENCH_DEFAULTS["autoscale_sample_interval_s"])
    rows = []
    for platform in results.platforms:
        d = samples[samples["platform"] == platform].sort_values("t_s")
        if not len(d):
            continue
        before, during = d[d["t_s"] < 0], d[d["t_s"] >= 0]
        start = before["ready_replicas"].dropna()
        start_ready = float(start.iloc[-1]) if len(start) else float("nan")
        decided = during[during["hpa_desired_replicas"] > start_ready]["t_s"]
        ready = during[during["ready_replicas"] > start_ready]["t_s"]
        rows.append([platform, _f(start_ready, 0), _f(during["ready_replicas"].max(), 0),
                     _f(decided.iloc[0], 0) if len(decided) else "never",
                     _f(ready.iloc[0], 0) if len(ready) else "never",
                     _f(during["hpa_cpu_pct"].max(), 0), str(len(d))])
    return [
        Heading("Autoscaling (HPA under load)"),
        Para(f"ab at c={cfg.get('autoscale_concurrency', '?')} for {cfg.get('autoscale_duration_s', '?')} s from the "
             f"control node, then {cfg.get('autoscale_tail_s', '?')} s without load; the Deployment and its "
             f"HorizontalPodAutoscaler read through kubectl every {interval:g} s, so every time below is known to "
             "that interval. Times count from the start of the load."),
        Table(["platform", "ready before", "most ready", "HPA wants more after s", "more ready after s",
               "peak HPA CPU %", "samples"], rows, "autoscale.csv",
              "HPA CPU is the pods' mean CPU in % of their CPU request (what the HPA compares with its target); "
              "'never': no scale-up within the run (maxReplicas, the VM budget, or CPU below the target)."),
        Figure(figs.get("autoscale"), "Ready replicas (solid), the HPA's desired replicas (dashed) and its CPU "
               "utilisation; shaded: the load."),
    ]


def _machine_speed(results: Results) -> str:
    """One line on how fast the machine itself was over the run (runs.csv reference_ms, analysis/bench/reference.py)."""
    ref = pd.Series(tables.reference_ms(results))
    if len(ref) < 3:
        return "**Machine speed** not recorded (runs made before reference_ms existed)."
    p10, p50, p90 = (float(ref.quantile(q)) for q in (0.1, 0.5, 0.9))
    return (f"**Machine speed** (a fixed single-threaded workload timed before each of {len(ref)} runs, "
            f"reference_ms): median {p50:.1f} ms, 10th-90th percentile {p10:.1f}-{p90:.1f} ms, i.e. the host's own "
            f"speed moved by {100 * (p90 / p10 - 1):.0f} % from run to run (timed between runs, the servers idle); "
            "`compare` shows how two runs' machines differed.")


def _machine_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                     s: tables.Settings) -> list[Block]:
    """What else ran on the machine, before and during the runs (issue 14; analysis/bench/system.py)."""
    b: list[Block] = [Heading("The machine: what competed with the benchmark")]
    checks = results.manifest.get("system_checks") or []
    items = []
    placement = (checks[-1].get("placement") or {}) if checks else {}
    cores = results.manifest.get("host", {}).get("cores")
    if placement:
        items.append(f"**Placement**: {placement['text']}.")
    elif cores:
        items.append(f"**Placement** not recorded; the host has {cores} cores.")
    for check in checks:
        load = check["load"]
        items.append(f"**Before the benchmark** ({check['checked_utc']}, {check['window_s']:.1f} s look): load "
                     f"average {load['load_1m']:.2f} / {load['load_5m']:.2f} / {load['load_15m']:.2f}, other "
                     f"processes {check['others_cpu_pct']:.0f} % of a core, steal {check['steal_pct']:.0f} %: "
                     + ("**busy** — " + "; ".join(check["reasons"]) if check["busy"] else "quiet"))
    if not checks:
        items.append("No machine check before the benchmark was recorded (runs made before it existed).")
    items.append(_machine_speed(results))
    b.append(Bullets(items))
    machine = t["machine"]
    if len(machine):
        h, r = _rows(machine, [
            ("platform", lambda r: r["platform"]),
            ("c", lambda r: str(r["concurrency"])),
            ("runs busy", lambda r: f"{r['runs_busy']} of {r['runs']}"),
            ("others' CPU % (mean / max)", lambda r: f"{_f(r['others_cpu_pct_mean'], 0)} / "
                                                     f"{_f(r['others_cpu_pct_max'], 0)}"),
            ("ab's own CPU %", lambda r: _f(r["load_generator_cpu_pct_mean"], 0)),
            ("steal % (max)", lambda r: _f(r["steal_pct_max"], 1)),
            ("load avg before (max)", lambda r: _f(r["load_1m_before_max"], 2)),
        ])
        b.append(Table(h, r, "machine.csv", "What else used the CPUs during each concurrency run, in % of one core; "
                       "a busy run had more competition than the busy_cpu_pct knob allows.", name="The machine",
                       method="others = processes that are neither this harness, the serving containers nor "
                       "docker-proxy; a run is busy when they, or the hypervisor (steal), took more than the "
                       "busy_cpu_pct knob. ab's own CPU comes out of the servers' cores when they share them. "
                       "raw/<run_key>/system.json names the busiest processes."))
    else:
        b.append(Para("runs.csv records no competition columns (runs made before they existed)."))
    return b


def _checks_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                    s: tables.Settings) -> list[Block]:
    b: list[Block] = []
    b.append(Heading("Data checks"))
    items = [f"{len(results.runs[results.runs['experiment'] == 'warmup'])} warm-up run(s) excluded from every "
             "statistic."]
    items += [f"{name} was not written: its section is empty." for name in results.missing_tables]
    items += results.warnings
    if len(results.failed_runs):
        items.append("ab run(s) that did not finish, left out of every statistic: "
                     + ", ".join(results.failed_runs["run_key"].astype(str)))
    if results.missing_cells:
        items.append("Missing concurrency runs: " + ", ".join(f"{p} c={c} r{r}" for p, c, r in results.missing_cells))
    b.append(Bullets(items))
    return b


def _md_inline(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(title: str, blocks: list[Block], out: Path) -> str:
    return "\n".join([f"# {title}", "", *_md_blocks(blocks, out)])


def _md_blocks(blocks: list[Block], out: Path) -> list[str]:
    lines: list[str] = []
    for blk in blocks:
        if isinstance(blk, Heading):
            lines += ["#" * blk.level + " " + blk.text, ""]
        elif isinstance(blk, Para):
            lines += [blk.text, ""]
        elif isinstance(blk, Answer):
            lines += [f"**The question.** {blk.question}", ""] + [f"- {c}" for c in blk.claims] + [""]
        elif isinstance(blk, Banner):
            lines += [f"> **⚠ {blk.title}**"] + ([">"] if blk.lines else []) + [f"> - {line}" for line in blk.lines]
            lines.append("")
        elif isinstance(blk, Bullets):
            lines += [f"- {item}" for item in blk.items] + [""]
        elif isinstance(blk, Table):
            lines.append("| " + " | ".join(_md_inline(h) for h in blk.headers) + " |")
            lines.append("|" + "|".join("---" for _ in blk.headers) + "|")
            lines += ["| " + " | ".join(_md_inline(c) for c in row) + " |" for row in blk.rows]
            lines += ["", f"{blk.note} (CSV: `tables/{blk.csv}`)".strip(), ""]
        elif isinstance(blk, Figure):
            if blk.path is None:
                lines += [f"*Figure not drawn: no data. {blk.caption}*", ""]
            else:
                lines += [f"![{blk.caption}]({blk.path.relative_to(out).as_posix()})", "", f"*{blk.caption}*", ""]
        elif isinstance(blk, Details):  # GitHub and most Markdown viewers fold it too
            lines += ["<details>", f"<summary>{html.escape(blk.summary)}</summary>", ""]
            lines += [*_md_blocks(blk.blocks, out), "</details>", ""]
        elif isinstance(blk, Group):
            lines += _md_blocks(blk.blocks, out)
    return lines


def _html_inline(text: str) -> str:
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _td(cell: str) -> str:
    """Numbers align right (the CSS default), words left."""
    words = cell[:1].isalpha() and not cell.startswith("n/a")
    return f'<td class="w">{_html_inline(cell)}</td>' if words else f"<td>{_html_inline(cell)}</td>"


def _slug(text: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())[:60]


# Every table sits in a horizontally scrollable box, so a wide one scrolls instead of being cut off; the short tables
# are made to fit the page at 1280 px and up (tests/test_report_layout.py measures it in Chromium). In print the
# boxes do not scroll: cells may wrap instead, and a folded full table stays folded (its CSV has it).
CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 1em auto; padding: 0 1em; color: #222;
       line-height: 1.4; }
h1 { font-size: 1.5em; margin: 0.2em 0 0.4em; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.4em; padding-bottom: 0.15em; border-bottom: 1px solid #ddd; }
section.summary h2 { margin-top: 0.6em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.3em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.4em 0; font-size: 0.86em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.45em; text-align: right; }
td { white-space: nowrap; }
th { background: #f2f2f2; vertical-align: bottom; font-weight: 600; }
td:first-child, th:first-child, td.w { text-align: left; }
.note { color: #555; font-size: 0.85em; max-width: 62em; margin: 0.1em 0 0.8em; }
.banner { border: 3px solid #c00; background: #fff0f0; padding: 0.3em 1em; margin: 0.6em 0; }
.banner h2 { color: #c00; margin: 0.2em 0; font-size: 1.05em; border: none; }
.banner ul { margin: 0.2em 0; font-size: 0.9em; }
figure { margin: 0.8em 0; } img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.85em; }
.answer .question { margin: 0.3em 0; }
.answer ul { margin: 0.3em 0; padding-left: 1.3em; } .answer li { margin: 0.2em 0; }
.side { display: flex; flex-wrap: wrap; gap: 0 2em; align-items: flex-start; }
.side > .summary-table { flex: 0 1 auto; min-width: 0; }
.side > .summary-table .note { max-width: 40em; }
.side > figure { flex: 1 1 380px; max-width: 760px; margin-top: 0.4em; }
details.full { margin: 0 0 1em; }
details.full > summary { cursor: pointer; color: #0645ad; font-size: 0.88em; }
@page { size: A4; margin: 12mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 9.5pt; }
  .scroll { overflow: visible; }
  table { font-size: 7pt; max-width: 100%; }
  th, td { padding: 1px 3px; }
  td { white-space: normal; }
  details.full table { font-size: 6pt; } details.full th, details.full td { overflow-wrap: anywhere; }
  figure, tr, .banner { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  .side { display: block; } .side > figure { max-width: 75%; }
}
"""


def _html(title: str, blocks: list[Block]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    in_section = False
    for blk in blocks:
        if isinstance(blk, Heading) and blk.level == 2:
            if in_section:
                body.append("</section>")
            body.append(f'<section class="{blk.role}" id="{_slug(blk.text)}">')
            in_section = True
        body.extend(_html_block(blk))
    if in_section:
        body.append("</section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _html_block(blk: Block) -> list[str]:
    if isinstance(blk, Heading):
        return [f'<h{blk.level} id="{_slug(blk.text)}">{html.escape(blk.text)}</h{blk.level}>']
    if isinstance(blk, Para):
        return [f"<p>{_html_inline(blk.text)}</p>"]
    if isinstance(blk, Answer):
        claims = "".join(f"<li>{_html_inline(c)}</li>" for c in blk.claims)
        return [f'<div class="answer"><p class="question"><strong>The question.</strong> '
                f'{_html_inline(blk.question)}</p><ul class="claims">{claims}</ul></div>']
    if isinstance(blk, Banner):
        items = "".join(f"<li>{_html_inline(line)}</li>" for line in blk.lines)
        return [f'<div class="banner"><h2>⚠ {html.escape(blk.title)}</h2>' + (f"<ul>{items}</ul>" if items else "")
                + "</div>"]
    if isinstance(blk, Bullets):
        return ["<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in blk.items) + "</ul>"]
    if isinstance(blk, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in blk.headers)
        rows = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in blk.rows)
        note = f"{_html_inline(blk.note)} (CSV: tables/{html.escape(blk.csv)})".strip()
        return [f'<div class="scroll"><table data-csv="{html.escape(blk.csv)}"><thead><tr>{head}</tr></thead>'
                f"<tbody>{rows}</tbody></table></div>", f'<p class="note">{note}</p>']
    if isinstance(blk, Figure):
        if blk.path is None:
            return [f'<p class="note">Figure not drawn: no data. {html.escape(blk.caption)}</p>']
        data = base64.b64encode(blk.path.read_bytes()).decode("ascii")
        return [f'<figure><img alt="{html.escape(blk.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(blk.caption)}</figcaption></figure>"]
    if isinstance(blk, Details):
        inner = [line for b in blk.blocks for line in _html_block(b)]
        return [f'<details class="full"><summary>{html.escape(blk.summary)}</summary>', *inner, "</details>"]
    if isinstance(blk, Group):
        inner = [line for b in blk.blocks for line in _html_block(b)]
        return [f'<div class="{blk.css}">', *inner, "</div>"]
    raise TypeError(f"unknown report block {blk!r}")
