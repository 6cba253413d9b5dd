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
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import figures, paper, tables
from analysis.bench.schema import ERROR_CAUSES
from analysis.load import Results
from analysis.summarize import per_run
from analysis.verdict import verdict


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str  # may hold **bold**; nothing else is interpreted


@dataclass
class Banner:
    title: str
    lines: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    csv: str  # file name under tables/
    note: str = ""


@dataclass
class Figure:
    path: Path | None
    caption: str


@dataclass
class Bullets:
    items: list[str] = field(default_factory=list)


Block = Heading | Para | Banner | Table | Figure | Bullets


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
    est, lo, hi = row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if not math.isfinite(est):
        return "n/a"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return _f(est, digits)
    return f"{_f(est, digits)} [{_f(lo, digits)}, {_f(hi, digits)}]"


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
        "per_run": runs.reset_index(),
    }
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
    }
    summary, paras = verdict(results, t["table1_overhead"], t["concurrency"], t["overhead"], t["breakdown"], s.level)
    blocks = _document(results, t, figs_made, summary, paras, s)
    md_path, html_path = out / "report.md", out / "report.html"
    title = f"Kubeless function vs container: benchmark run {results.manifest['run_id']}"
    md_path.write_text(_markdown(title, blocks, out), encoding="utf-8")
    html_path.write_text(_html(title, blocks), encoding="utf-8")
    return Report(md=md_path, html=html_path, tables=csvs, figures={k: v for k, v in figs_made.items() if v},
                  complete=results.complete, summary=summary)


def _document(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], summary: str,
              paras: list[str], s: tables.Settings) -> list[Block]:
    level = f"{100 * s.level:g} %"
    b = _header(results, summary, paras)
    for section in (_table1_section, _concurrency_section, _overhead_section, _coldstart_section,
                    _resources_section, _checks_section):
        b.extend(section(results, t, figs, level, s))
    return b


def _header(results: Results, summary: str, paras: list[str]) -> list[Block]:
    m = results.manifest
    cfg = results.config
    b: list[Block] = []
    if not results.complete:
        b.append(Banner("INCOMPLETE RUN: these numbers cover only what finished and are not the planned experiment",
                        [*results.incomplete_reasons,
                         "Cells with fewer repetitions than planned are marked '(incomplete)' in the tables."]))
    if m.get("profile") == "synthetic":
        b.append(Banner("SYNTHETIC DATA: generated to exercise the analysis, not measured", []))
    host = m.get("host", {})
    versions = m.get("versions", {})
    b.append(Bullets([
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
    ]))

    b.append(Heading("Verdict"))
    b.append(Para(f"**{summary}**"))
    b.extend(Para(p) for p in paras)
    return b


def _table1_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                    s: tables.Settings) -> list[Block]:
    b: list[Block] = []
    b.append(Heading("Table 1: prediction and response time, sequential requests"))
    t1 = t["table1"]
    if len(t1) and t1["requests_ok"].sum():
        h, r = _rows(t1, [
            ("platform", lambda r: f"{r['platform']} (paper: {r['paper_name']})"),
            ("requests ok / failed", lambda r: f"{r['requests_ok']} / {r['requests_failed']}"),
            (f"prediction ms [{level} CI]", lambda r: _ci(r, "prediction_ms")),
            ("paper prediction ms", lambda r: _f(r["paper_prediction_ms"], 0)),
            (f"response ms [{level} CI]", lambda r: _ci(r, "response_ms")),
            ("paper response ms", lambda r: _f(r["paper_response_ms"], 0)),
        ])
        b.append(Table(h, r, "table1.csv", "Mean over the latency-probe requests (HTTP 200 only), t-interval over "
                       "requests. Response time is the client's, around the whole request; prediction time is what "
                       "the service reports (decode + preprocess + model)."))
        h, r = _rows(t["table1_overhead"], [
            ("function over container", lambda r: r["metric"]),
            (f"ms [{level} CI]", lambda r: _ci(r, "overhead_ms")),
            ("% of container", lambda r: _ci(r, "overhead_pct", 0)),
            ("% of function (paper's 35 % way)", lambda r: _ci(r, "overhead_pct_of_function", 0)),
            ("paper ms", lambda r: _f(r["paper_overhead_ms"], 0)),
            ("paper % of container", lambda r: _f(r["paper_overhead_pct"], 0)),
            ("paper % of function", lambda r: _f(r["paper_overhead_pct_of_function"], 0)),
        ])
        b.append(Table(h, r, "table1_overhead.csv", "Percentile bootstrap over the probe requests "
                       f"({s.resamples} resamples). The paper's '35 %' is (0.2 - 0.13) / 0.2, a share of the "
                       "function's time; over the container's time its table gives 54 %."))
    else:
        b.append(Para("No latency-probe requests succeeded (probe.csv missing or empty), so there is no Table 1."))
    return b


def _concurrency_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                         s: tables.Settings) -> list[Block]:
    b: list[Block] = []
    b.append(Heading("Concurrency (paper Fig. 1)"))
    conc = t["concurrency"]
    if len(conc):
        h, r = _rows(conc, [
            ("platform", lambda r: r["platform"]),
            ("c", lambda r: str(r["concurrency"])),
            ("reps", lambda r: f"{r['repetitions']}/{r['repetitions_planned']}"
             + ("" if r["complete"] else " (incomplete)")),
            ("requests", lambda r: str(r["requests"])),
            ("mean ms [t CI]", lambda r: _ci(r, "mean_ms")),
            ("median ms [order-stat. CI]", lambda r: _ci(r, "median_ms") + f" ({100 * r['median_ci_level']:.1f} %)"),
            ("p95 ms [t CI]", lambda r: _ci(r, "p95_ms")),
            ("p99 ms [t CI]", lambda r: _ci(r, "p99_ms")),
            ("min ms", lambda r: _f(r["min_ms"], 0)),
            ("max ms", lambda r: _f(r["max_ms"], 0)),
            ("throughput req/s [t CI]", lambda r: _ci(r, "throughput_rps")),
            ("errors", lambda r: str(r["errors"])),
            *((c.replace("_", " "), (lambda r, c=c: str(r[c]))) for c in ERROR_CAUSES),
            ("2xx of another length (served)", lambda r: str(r["length_mismatches"])),
        ])
        b.append(Table(h, r, "concurrency.csv",
                       "Each repetition is one ab run; statistics are computed per run from ab's per-request times "
                       "(-g, whole ms) and then across repetitions: mean, p95, p99 and throughput with a Student-t "
                       f"{level} interval; the median of the runs' medians with the order-statistic interval (Le "
                       "Boudec), whose achieved coverage is in parentheses; min and max over all served requests. "
                       "Latency covers served requests; failed attempts with no reply are set apart. Errors = "
                       "requests without a complete 2xx answer, each counted once, = non-2xx + reset + refused + "
                       "empty reply + timeout (ab's own 'Failed requests' counts a reset three times); 2xx replies "
                       "of another length are listed apart because they were served."))
        b.append(Figure(figs["response_vs_concurrency"], "Mean response time vs concurrency, with the paper's "
                        "Kubeless values (c=1: 0.2 s; c=20: mean 965 ms, fastest 472 ms, slowest about 1 s)."))
        b.append(Figure(figs["latency_cdf"], "Distribution of every request's response time per concurrency."))
    else:
        b.append(Para("No concurrency runs finished."))
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
    b.append(Table(h, r, "overhead.csv", "probe: the sequential Table 1 requests, resampled per request. "
                   "concurrency: the repetitions' mean response times, resampled by repetition and paired (platforms "
                   "ran interleaved, repetition by repetition); with few repetitions this interval is optimistic. "
                   "paper: from its Table 1, without an interval."))
    b.append(Heading("Where the time goes", 3))
    bd = t["breakdown"]
    if len(bd):
        h, r = _rows(bd, [
            ("platform", lambda r: r["platform"]),
            ("c", lambda r: str(r["concurrency"])),
            ("client ms", lambda r: _f(r["client_ms"])),
            ("server ms", lambda r: _f(r["server_ms"])),
            ("network/HTTP ms", lambda r: _f(r["network_http_ms"])),
            ("runtime ms", lambda r: _f(r["runtime_ms"])),
            ("model ms", lambda r: _f(r["model_ms"])),
        ])
        b.append(Table(h, r, "breakdown.csv", "Means over repetitions. client = ab's per-request time; server = the "
                       "platform's own request-duration histogram on /metrics (sum/count over the run); model = the "
                       "services' prediction_ms log lines. network/HTTP = client - server (connection, accept queue, "
                       "transfer); runtime = server - model (for the function: fork per request, result hand-back). "
                       "'n/a' means the run recorded no server or prediction time."))
        b.append(Figure(figs["breakdown"], "Mean response time split into network/HTTP, runtime and model."))
    return b


def _coldstart_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                       s: tables.Settings) -> list[Block]:
    b: list[Block] = []
    b.append(Heading("Cold start"))
    cold = t["coldstart"]
    if len(cold):
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
        b.append(Table(h, r, "coldstart.csv", "The paper left cold starts out. Kubeless does not scale to zero, so "
                       "a cold start here is a restart of the serving container (locally) or replicas 0→1 / deploy "
                       "→ first 200 on a cluster, the definition Kubeless' maintainers use (kubeless#178)."))
        b.append(Figure(figs["coldstart"], "Cold start per platform."))
    else:
        b.append(Para("No cold-start repetitions were recorded (coldstart.csv missing or empty)."))
    return b


def _resources_section(results: Results, t: dict[str, pd.DataFrame], figs: dict[str, Path | None], level: str,
                       s: tables.Settings) -> list[Block]:
    b: list[Block] = []
    b.append(Heading("Resource use"))
    res = t["resources"]
    if len(res) and res["cpu_mean_pct"].notna().any():
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
        b.append(Table(h, r, "resources.csv", "CPU in % of one core (200 % = both of the paper's two CPUs busy); "
                       "mean of the runs' means, highest sample; peak = highest memory sample of any repetition. "
                       "The paper found 'no meaningful results' for CPU."))
        b.append(Figure(figs["resources"], "CPU and memory of the serving containers over the benchmark."))
    else:
        b.append(Para("No CPU or memory samples were recorded."))
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
    b.append(Para(f"Paper values quoted from Bhanderi, Atole, Panchmia, 'Evaluation of a deep learning model on "
                  f"Kubeless': two VMs with {paper.CPUS} CPUs and 2 GB RAM, Minikube 0.29, Kubernetes 1.10.4, "
                  "Kubeless 1.0.0-alpha. Our host and stack differ, so compare ratios and shapes, not absolute "
                  "levels."))
    return b


def _md_inline(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(title: str, blocks: list[Block], out: Path) -> str:
    lines = [f"# {title}", ""]
    for blk in blocks:
        if isinstance(blk, Heading):
            lines += ["#" * blk.level + " " + blk.text, ""]
        elif isinstance(blk, Para):
            lines += [blk.text, ""]
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
    return "\n".join(lines)


def _html_inline(text: str) -> str:
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 0.85em; max-width: 60em; }
.banner { border: 3px solid #c00; background: #fff0f0; padding: 0.6em 1em; margin: 1em 0; }
.banner h2 { color: #c00; margin: 0.2em 0; font-size: 1.2em; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
"""


def _html(title: str, blocks: list[Block]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for blk in blocks:
        if isinstance(blk, Heading):
            body.append(f"<h{blk.level}>{html.escape(blk.text)}</h{blk.level}>")
        elif isinstance(blk, Para):
            body.append(f"<p>{_html_inline(blk.text)}</p>")
        elif isinstance(blk, Banner):
            items = "".join(f"<li>{_html_inline(line)}</li>" for line in blk.lines)
            body.append(f'<div class="banner"><h2>⚠ {html.escape(blk.title)}</h2>'
                        + (f"<ul>{items}</ul>" if items else "") + "</div>")
        elif isinstance(blk, Bullets):
            body.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in blk.items) + "</ul>")
        elif isinstance(blk, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in blk.headers)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in blk.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            body.append(f'<p class="note">{_html_inline(blk.note)} (CSV: tables/{html.escape(blk.csv)})</p>')
        elif isinstance(blk, Figure):
            if blk.path is None:
                body.append(f'<p class="note">Figure not drawn: no data. {html.escape(blk.caption)}</p>')
            else:
                data = base64.b64encode(blk.path.read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(blk.caption)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(blk.caption)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
