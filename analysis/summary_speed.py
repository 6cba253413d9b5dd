"""How long does the analysis take on a big run? Writes a synthetic results folder with ROWS per-request rows
(analysis/synthetic.py) and times each step of ``python -m analysis`` on it. It prints numbers; the target (a
million rows summarized in 10 s on the two-core development machine) is checked by reading them, not by a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from analysis import tables
from analysis.load import load_results
from analysis.report import build
from analysis.summarize import per_run
from analysis.synthetic import Plan, write_results

TARGET_S = 10.0


DESCRIPTION = ("Time the summarization of a synthetic run with ROWS per-request rows (2 platforms x concurrency 1, "
               "5, 10, 20 x 5 repetitions, ROWS/40 requests per ab run).")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--rows", type=int, default=1_000_000,
                   help="per-request rows to generate, split evenly over 40 ab runs (default: 1000000)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="write the synthetic results folder to DIR and keep it (default: a temporary folder)")
    p.add_argument("--report", action="store_true",
                   help="also time the full report (figures, CSVs, HTML), not only loading and the tables")
    return p


def run(rows: int, folder: Path, with_report: bool) -> dict[str, float]:
    plan = Plan(concurrency=[1, 5, 10, 20], repetitions=5, requests_per_run=max(20, rows // 40),
                warmup_requests=20, seed=7)
    t = {}
    start = time.perf_counter()
    write_results(folder, plan)
    t["generate (not counted)"] = time.perf_counter() - start
    start = time.perf_counter()
    results = load_results(folder)
    t["load + validate"] = time.perf_counter() - start
    start = time.perf_counter()
    runs = per_run(results)
    t["per-run summaries"] = time.perf_counter() - start
    start = time.perf_counter()
    s = tables.Settings()
    tables.concurrency_table(runs, results, s)
    tables.overhead_table(runs, results, s)
    tables.breakdown_table(runs, results)
    tables.resources_table(runs, results)
    tables.table1(results, s)
    tables.table1_overhead(results, s)
    tables.coldstart_table(results, s)
    t["tables and intervals"] = time.perf_counter() - start
    t["summarization total"] = t["load + validate"] + t["per-run summaries"] + t["tables and intervals"]
    t["requests"] = float(len(results.requests))
    t["measured"] = float((results.requests["experiment"] == "concurrency").sum())
    if with_report:
        start = time.perf_counter()
        build(results, folder / "report")
        t["full report (figures, CSV, HTML)"] = time.perf_counter() - start
    return t


def parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="python -m analysis benchmark", description=DESCRIPTION))


def main(argv: list[str] | None = None) -> int:
    return run_args(parser().parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "synthetic-run"
        t = run(args.rows, folder, args.report)
    n = int(t.pop("requests"))
    measured = int(t.pop("measured"))
    print(f"per-request rows: {n:,} ({measured:,} measured + {n - measured:,} warm-up)")
    for name, secs in t.items():
        print(f"{name:>34}: {secs:7.2f} s")
    total = t["summarization total"]
    verdict = "within" if total <= TARGET_S else "OVER"
    print(f"summarized {n:,} rows in {total:.2f} s: {verdict} the {TARGET_S:.0f} s target ({n / total:,.0f} rows/s)")
    return 0
