"""``python -m analysis [report] [RESULTS_DIR] [--out DIR]``: one benchmark run in, tables, figures and a report
out (the default subcommand). ``python -m analysis benchmark``: time the summarization of a million synthetic
requests. ``python -m analysis compare RUN_A RUN_B``: is B slower than A (analysis/compare.py). Each subcommand has
its own ``--help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.load import ResultsError, load_results, newest_results_dir
from analysis.report import build
from analysis.tables import Settings

EXIT_BAD_INPUT = 2
EXIT_INCOMPLETE = 3


SUBCOMMANDS = ("report", "benchmark", "compare")  # `report` is the default: `python -m analysis [RESULTS_DIR]`


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Benchmark results in, tables, figures and a report out. Without a subcommand it runs "
                    "`report` on RESULTS_DIR (default: the newest folder under results/).",
        epilog="`python -m analysis SUBCOMMAND --help` explains each subcommand's flags.",
    )
    sub = p.add_subparsers(dest="command", metavar="SUBCOMMAND")
    _report_arguments(sub.add_parser(
        "report", help="the report of one run (the default subcommand)",
        description="Turn one benchmark results folder (written by `ansible-playbook bench.yml`, schema in "
                    "analysis/RESULTS.md) into report.md, a self-contained report.html, every table as CSV and "
                    "the figures as PNG, with the paper's values beside ours.",
        epilog=f"Exit status: 0 report written, {EXIT_BAD_INPUT} the folder cannot be analysed (each problem is "
               f"printed with its file), {EXIT_INCOMPLETE} report written but the run is incomplete and "
               "--fail-on-incomplete was given."))
    from analysis import summary_speed

    summary_speed.add_arguments(sub.add_parser(
        "benchmark", help="time the summarization of a million synthetic per-request rows",
        description=summary_speed.DESCRIPTION))
    from analysis import compare

    compare.add_arguments(sub.add_parser(
        "compare", help="is run B worse than run A? a verdict per cell; exit 1 if slower or more errors, 2 if the "
                        "runs cannot be trusted side by side",
        description=compare.DESCRIPTION, epilog=compare.EPILOG))
    return p


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_dir", nargs="?", type=Path, metavar="RESULTS_DIR",
                   help="the run folder, results/<run_id>/ (default: the newest folder under --results-root)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="where to write the report (default: RESULTS_DIR/report); created if missing, files in it "
                        "are overwritten")
    p.add_argument("--results-root", type=Path, default=Path("results"), metavar="DIR",
                   help="where to look for the newest run when RESULTS_DIR is not given (default: ./results)")
    p.add_argument("--confidence", type=float, default=0.95, metavar="LEVEL",
                   help="confidence level of every interval, between 0 and 1 (default: 0.95)")
    p.add_argument("--bootstrap-resamples", type=int, default=10_000, metavar="N",
                   help="resamples for the bootstrap intervals of the overhead (default: 10000)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the bootstrap, so a report can be reproduced exactly (default: 0)")
    p.add_argument("--fail-on-incomplete", action="store_true",
                   help=f"exit with status {EXIT_INCOMPLETE} (after writing the report) when the run is "
                        "incomplete, e.g. to stop a pipeline; by default an incomplete run is only flagged")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["report", *argv]  # the default subcommand
    p = parser()
    args = p.parse_args(argv)
    if args.command == "benchmark":
        from analysis import summary_speed

        return summary_speed.run_args(args)
    if args.command == "compare":
        from analysis import compare

        return compare.run(args, p)
    return report(args, p)


def report(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    if not 0 < args.confidence < 1:
        p.error(f"--confidence must be between 0 and 1, got {args.confidence}")
    if args.bootstrap_resamples < 100:
        p.error("--bootstrap-resamples must be at least 100")
    try:
        folder = args.results_dir or newest_results_dir(args.results_root)
        results = load_results(folder)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = args.out or folder / "report"
    report = build(results, out, Settings(args.confidence, args.bootstrap_resamples, args.seed))
    if not report.complete:
        print("WARNING: INCOMPLETE RUN: " + "; ".join(results.incomplete_reasons), file=sys.stderr)
    print(f"results: {folder}")
    print(f"verdict: {report.summary}")
    print(f"report:  {report.md}\n         {report.html}")
    print(f"tables:  {len(report.tables)} CSV files in {out / 'tables'}")
    print(f"figures: {len(report.figures)} PNG files in {out / 'figures'}")
    if not report.complete and args.fail_on_incomplete:
        return EXIT_INCOMPLETE
    return 0


if __name__ == "__main__":
    sys.exit(main())
