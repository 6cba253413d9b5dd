"""The report as a reader sees it (issue 27): the answer on the first screen, every table fitting the page, checked
in a real browser.

A synthetic run with seven platforms (the two the generator models and five copies of its function, each slower or
faster by its own factor, one of them reached through another) is turned into a report, and headless Chromium
measures report.html twice: on screen at 1280 x 900 px, and with the report's print rules applied at the width of an
A4 page's print area. The measuring script is injected into a copy of the page and writes what it found into the
DOM, which ``chromium --dump-dom`` returns. Set KDE_REPORT_SHOTS=DIR to also keep a screenshot of each width there.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis import report
from analysis.load import load_results
from analysis.synthetic import Plan, write_results
from analysis.tables import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: the layout is measured in a real "
                                    "browser (apt-get install chromium; .ci/run installs it)")

# name: (kind, factor on every time, via)
CLONES = {
    "openfaas": ("openfaas-watchdog", 0.8, None),
    "fission": ("fission-env", 1.3, None),
    "openwhisk": ("openwhisk-action", 1.7, None),
    "knative": ("knative-serving", 1.1, None),
    "knative_through_kourier": ("kourier-ingress", 1.25, "knative"),
}
MS_COLUMNS = {
    "runs.csv": ("mean_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "failed_mean_ms",
                 "server_mean_ms", "prediction_mean_ms", "time_taken_s"),
    "requests.csv": ("connect_ms", "processing_ms", "total_ms", "wait_ms"),
    "predictions.csv": ("prediction_ms",),
    "resources.csv": (),
    "probe.csv": ("response_ms", "prediction_ms"),
    "paired.csv": ("response_ms", "prediction_ms"),  # issue 24: the headline's paired step
    "coldstart.csv": ("start_to_first_200_ms",),
}
SCREEN = (1280, 900)
A4_PRINT_AREA_PX = 703  # 210 mm minus the report's 12 mm page margins, at 96 px per inch


def many_platforms(folder: Path) -> Path:
    """A schema-valid synthetic run with the two modelled platforms plus CLONES of the function."""
    write_results(folder, Plan(concurrency=[1, 5, 20], repetitions=3, requests_per_run=20, warmup_requests=20,
                               probe_requests=10, coldstart_repetitions=2, seed=27))
    for name, columns in MS_COLUMNS.items():
        frame = pd.read_csv(folder / name)
        base = frame[frame["platform"] == "function"]
        copies = [frame]
        for clone, (_kind, factor, _via) in CLONES.items():
            c = base.copy()
            c["platform"] = clone
            if "run_key" in c:
                c["run_key"] = c["run_key"].str.replace("-function-", f"-{clone}-", regex=False)
            for col in columns:
                c[col] = c[col] * factor
            if name == "requests.csv":  # ab's -g times are whole ms
                c[list(columns)] = c[list(columns)].round()
            if name == "runs.csv":
                c["requests_per_s"] = c["requests_per_s"] / factor
                c["served_per_s"] = c["served_per_s"] / factor
            copies.append(c)
        pd.concat(copies, ignore_index=True).to_csv(folder / name, index=False)
    # runs.csv's mean, min and max must describe the (rounded) per-request rows, as ab's would
    runs, req = pd.read_csv(folder / "runs.csv"), pd.read_csv(folder / "requests.csv")
    served = req[req["served"] == 1].groupby("run_key")["total_ms"]
    for col, stat in (("mean_ms", served.mean()), ("min_ms", served.min()), ("max_ms", served.max())):
        runs[col] = runs["run_key"].map(stat)
    runs.to_csv(folder / "runs.csv", index=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    function = manifest["platforms"]["function"]
    manifest["platforms"]["function"] = {**function, "role": "function", "via": None}
    manifest["platforms"]["container"] = {**manifest["platforms"]["container"], "role": "baseline", "via": None}
    for clone, (kind, _factor, via) in CLONES.items():
        manifest["platforms"][clone] = {**function, "kind": kind, "role": "function", "via": via,
                                        "label": f"{clone} ({kind})", "container": f"kde-{clone}"}
    per_platform = int((runs["platform"] == "function").sum())
    manifest["runs_planned"] += per_platform * len(CLONES)
    manifest["runs_done"] += per_platform * len(CLONES)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> report.Report:
    root = tmp_path_factory.mktemp("layout")
    results = load_results(many_platforms(root / "run"))
    assert len(results.platforms) == 7 and not results.warnings, results.warnings
    return report.build(results, root / "report", Settings(resamples=500))


# The measuring script: on load (every image decoded), what a reader would see, as JSON in <pre id="layout">.
MEASURE = """
<script>
window.addEventListener('load', () => {
  const print = document.documentElement.dataset.mode === 'print';
  if (print) {  // the report's own print rules, applied to the screen so the layout can be measured, with
    // every folded table unfolded (as a reader who opened them before printing would have them)
    for (const sheet of document.styleSheets)
      for (const rule of sheet.cssRules)
        if (rule.media && rule.media.mediaText.includes('print')) rule.media.mediaText = 'all';
    for (const d of document.querySelectorAll('details')) d.open = true;
  }
  const vw = document.documentElement.clientWidth;
  const describe = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (el.className ? '.' + String(el.className).split(' ').join('.') : '')
    + ' "' + (el.textContent || '').trim().slice(0, 60) + '"';
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;  // not rendered
    const fold = el.closest('details');
    if (fold && !fold.open && !el.closest('summary')) continue;  // folded away
    const boxed = !print && el.parentElement && el.parentElement.closest('.scroll');
    if ((r.right > vw + 1 || r.left < -1) && !boxed) wide.push(describe(el) + ' right=' + Math.round(r.right));
  }
  const scrolling = [];  // tables shown unfolded must fit their box without scrolling (on screen, a full table
  for (const t of document.querySelectorAll('table')) {  // in a <details> may scroll)
    if (!print && t.closest('details')) continue;
    const box = t.closest('.scroll');
    if (t.getBoundingClientRect().width > box.clientWidth + 1) scrolling.push(describe(t));
  }
  const imgs = [...document.images];
  const summary = document.querySelector('section.summary table');
  const figure = document.querySelector('section.summary figure img');
  const firstDetail = document.querySelector('section.detail');
  const before = el => !!(el && firstDetail &&
    (el.compareDocumentPosition(firstDetail) & Node.DOCUMENT_POSITION_FOLLOWING));
  const out = {
    viewport: [vw, window.innerHeight], pageWidth: document.documentElement.scrollWidth, wide, scrolling,
    images: imgs.length, imagesBroken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    summaryBottom: summary ? summary.getBoundingClientRect().bottom : null,
    figureTop: figure ? figure.getBoundingClientRect().top : null,
    summaryFirst: before(summary), figureFirst: before(figure),
    details: document.querySelectorAll('details').length,
  };
  const pre = document.createElement('pre');
  pre.id = 'layout';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def measure(page: Path, mode: str, width: int, height: int, tmp: Path) -> dict:
    """Open a copy of ``page`` with MEASURE injected and return what it measured."""
    probe = tmp / f"measure-{mode}.html"
    text = page.read_text(encoding="utf-8")
    text = text.replace("<html ", f'<html data-mode="{mode}" ', 1).replace("</body>", MEASURE + "</body>", 1)
    probe.write_text(text, encoding="utf-8")
    proc = chromium([f"--window-size={width},{height}", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                    tmp / f"profile-{mode}")
    found = re.search(r'<pre id="layout">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"chromium returned no measurement (exit {proc.returncode}): {proc.stderr[-2000:]}"
    shots = os.environ.get("KDE_REPORT_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        chromium([f"--window-size={width},{height}", f"--screenshot={Path(shots) / f'synthetic7-{mode}-{width}.png'}",
                  probe.as_uri()], tmp / f"profile-shot-{mode}")
    return json.loads(html.unescape(found.group(1)))


@needs_chromium
def test_the_answer_comes_first_and_every_table_fits_at_1280_px(built: report.Report, tmp_path: Path) -> None:
    started = time.monotonic()
    got = measure(built.html, "screen", *SCREEN, tmp_path)
    assert got["viewport"][0] == SCREEN[0], got["viewport"]  # the window is what was asked for
    assert got["pageWidth"] <= SCREEN[0], f"the page scrolls sideways: {got['pageWidth']} px"
    assert got["wide"] == [], "elements wider than the 1280 px viewport outside a scroll box: " + "; ".join(got["wide"])
    assert got["scrolling"] == [], "tables shown unfolded that do not fit the page: " + "; ".join(got["scrolling"])
    assert got["images"] == len(built.figures) and got["imagesBroken"] == [], got
    assert got["summaryFirst"] and got["figureFirst"], "the summary table and figure must precede every detail"
    assert got["summaryBottom"] is not None and got["summaryBottom"] <= SCREEN[1], (
        f"the summary table ends at {got['summaryBottom']} px, below the first screen ({SCREEN[1]} px)")
    assert got["figureTop"] < SCREEN[1], "the summary figure does not start on the first screen"
    assert got["details"] >= 2  # the full concurrency table and the open-loop runs at least are folded
    print(f"screen layout measured in {time.monotonic() - started:.1f} s")


@needs_chromium
def test_nothing_is_cut_off_when_printed_on_a4(built: report.Report, tmp_path: Path) -> None:
    got = measure(built.html, "print", A4_PRINT_AREA_PX, 1100, tmp_path)
    assert got["pageWidth"] <= A4_PRINT_AREA_PX, f"the printed page is {got['pageWidth']} px wide"
    assert got["wide"] == [], "cut off in print: " + "; ".join(got["wide"])
    assert got["scrolling"] == [], "tables wider than the printed page: " + "; ".join(got["scrolling"])
    pdf = tmp_path / "report.pdf"
    proc = chromium(["--no-pdf-header-footer", f"--print-to-pdf={pdf}", built.html.as_uri()], tmp_path / "pdf")
    assert pdf.exists() and pdf.read_bytes()[:5] == b"%PDF-", proc.stderr[-2000:]


def test_markdown_and_html_carry_the_same_content(built: report.Report) -> None:
    """One document model: every table row and every claim appears in both files, the summary before the
    details."""
    md = built.md.read_text(encoding="utf-8")
    page = built.html.read_text(encoding="utf-8")
    summary = pd.read_csv(built.tables["summary"])
    assert list(summary["platform"]) == ["container", "function", *CLONES]  # the baseline first, then report order
    table = re.search(r'<table data-csv="summary.csv">(.*?)</table>', page, re.S).group(1)
    html_rows = [[html.unescape(re.sub("<[^>]+>", "", c)) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr)]
                 for tr in re.findall(r"<tr>(.*?)</tr>", table)]
    start = md.index("| platform | c=1, x baseline")
    md_rows = [[c.strip() for c in line.strip("|").split("|")]
               for line in md[start:].split("\n\n", 1)[0].splitlines() if not line.startswith("|---")]
    assert html_rows == md_rows and len(md_rows) == 1 + len(summary)
    assert [r[0] for r in md_rows[1:]] == ["container", "function", "openfaas", "fission", "openwhisk", "knative",
                                           "knative_through_kourier (via knative)"]
    md_claims = re.findall(r"^- (\*\*.+)$", md.split("\n## ", 2)[1], re.M)
    assert len(md_claims) >= 4
    for claim in md_claims:
        rendered = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(claim))
        assert rendered in page, claim
    # the answer, then the summary table, then the details; the method text at the end
    order = [md.index(s) for s in ("**The question.**", "| platform | c=1, x baseline", "## Every function platform",
                                   "## Concurrency", "## How this was measured")]
    assert order == sorted(order), order
    # each wide table is short on the page and whole in its <details> and its CSV
    conc = pd.read_csv(built.tables["concurrency"])
    assert page.count('data-csv="concurrency.csv"') == 2 and "<summary>All 19 columns" in page
    assert len(conc) == 7 * 3


def test_notes_are_short_and_the_method_is_gathered_at_the_end(built: report.Report) -> None:
    page = built.html.read_text(encoding="utf-8")
    notes = re.findall(r'<p class="note">(.*?)</p>', page)
    assert notes
    for note in notes:
        text = re.sub(r"\(CSV: [^)]*\)", "", html.unescape(re.sub("<[^>]+>", "", note)))
        sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip()) if s]
        assert len(sentences) <= 2, note
    method = page[page.index('<section class="method"'):]
    for csv in ("summary.csv", "concurrency.csv", "table1.csv", "coldstart.csv", "breakdown.csv"):
        assert f"(tables/{csv})" in method, csv
    assert "Le Boudec" in method and "Bhanderi" in method
