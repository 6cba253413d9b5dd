#!/usr/bin/env python3
"""How often does `python -m analysis compare` fail an A/A pair, and do its intervals hold their coverage?

Writes many pairs of synthetic results folders (analysis/synthetic.py) of one and the same system, each run with
repetition-to-repetition drift (every ab run's times scaled by one lognormal factor, the machine's moment), a
random number of SYN-retry (slow-mode) requests per run, and random failed requests at the function's c >= 10
cells (over-dispersed: each repetition draws its own failure rate). Runs the real compare (the CLI entry point,
exit status included) on every pair and prints:

- the false-alarm rate of compare's exit status (any non-zero exit for two runs of the same system), with a
  Clopper-Pearson interval, at the chosen --threshold and, as the stricter check of the tests and Holm's
  correction alone, at --threshold 0;
- the coverage of the per-cell intervals: the share of judged cells whose interval of B / A holds 1, the true
  ratio of two runs of one system, overall and per cell.

Exit status 1 when the false-alarm rate at --threshold exceeds --max-false-alarms (default 5 %), else 0.
Progress (every 20 pairs) goes to stderr, the figures to stdout.

Run from the repository root: .venv/bin/python scripts/compare-false-alarms.py --pairs 200
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats as st

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=200, help="A/A pairs to simulate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole simulation (default: %(default)s)")
    p.add_argument("--repetitions", type=int, default=5, help="repetitions per cell (default: %(default)s)")
    p.add_argument("--requests", type=int, default=100, help="requests per ab run (default: %(default)s)")
    p.add_argument("--concurrency", default="1,5,10,20", help="concurrency levels (default: %(default)s)")
    p.add_argument("--rep-jitter", type=float, default=0.06,
                   help="sigma of the lognormal factor each repetition's times share (default: %(default)s, "
                        "about 6 %% from repetition to repetition)")
    p.add_argument("--slow-share-jitter", type=float, default=0.5,
                   help="sigma of the lognormal factor on each run's slow-mode share (median 2 %%); its count is "
                        "then binomial (default: %(default)s)")
    p.add_argument("--error-rate", type=float, default=0.01,
                   help="median failure rate of the function's c >= 10 repetitions; each draws its own rate "
                        "(lognormal, sigma 0.7), then a binomial count (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=5.0, help="compare's --threshold (default: %(default)s)")
    p.add_argument("--confidence", type=float, default=0.95, help="compare's --confidence (default: %(default)s)")
    p.add_argument("--no-threshold-0", action="store_true",
                   help="skip the second compare of every pair at --threshold 0 (half the time)")
    p.add_argument("--max-false-alarms", type=float, default=5.0, metavar="PCT",
                   help="exit 1 when compare fails more than this share of the pairs at --threshold "
                        "(default: %(default)s)")
    p.add_argument("--work", type=Path, help="folder for the synthetic runs (default: a temporary one, removed)")
    return p.parse_args(argv)


def faults(rng: np.random.Generator, concurrency: list[int], repetitions: int, n: int, rate: float) -> dict:
    from analysis.synthetic import Fault

    out = {}
    for c in concurrency:
        if c < 10 or rate <= 0:
            continue
        for rep in range(1, repetitions + 1):
            k = int(rng.binomial(n, min(1.0, rate * rng.lognormal(0.0, 0.7))))
            if k:
                out[("function", c, rep)] = Fault(non_2xx=k)
    return out


def compare(a: Path, b: Path, out: Path, *extra: str) -> tuple[int, list[dict[str, str]], str]:
    from analysis.__main__ import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = main(["compare", str(a), str(b), "--out", str(out), *extra])
    path = out / "tables" / "compare.csv"
    rows = list(csv.DictReader(path.open(newline=""))) if path.exists() else []
    return code, rows, printed.getvalue()


def share(k: int, n: int) -> str:
    lo = st.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    hi = st.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return f"{k} of {n} = {100 * k / n:.1f} % (95 % interval {100 * lo:.1f} to {100 * hi:.1f} %)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pairs < 1:
        sys.exit(f"--pairs must be at least 1, got {args.pairs}")
    sys.path.insert(0, str(ROOT))
    from analysis.synthetic import Plan, write_results

    concurrency = [int(c) for c in args.concurrency.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="compare-aa-"))
    extra = ["--confidence", str(args.confidence)]
    alarms = {args.threshold: 0} if args.no_threshold_0 else {args.threshold: 0, 0.0: 0}
    reasons: dict[float, list[str]] = defaultdict(list)
    covered: dict[str, list[int]] = defaultdict(list)
    start = time.monotonic()
    try:
        for i in range(args.pairs):
            folders = []
            for side in (0, 1):
                rng = np.random.default_rng([args.seed, i, side])
                plan = Plan(concurrency=concurrency, repetitions=args.repetitions, requests_per_run=args.requests,
                            rep_jitter=args.rep_jitter, slow_share_jitter=args.slow_share_jitter,
                            seed=int(rng.integers(2**31)),
                            faults=faults(rng, concurrency, args.repetitions, args.requests, args.error_rate))
                folder = work / f"pair{i:04d}-{'ab'[side]}"
                shutil.rmtree(folder, ignore_errors=True)
                folders.append(write_results(folder, plan, run_id=f"2026120{4 + side}T120000Z"))
            for threshold in alarms:
                code, rows, printed = compare(*folders, work / f"cmp{i:04d}-{threshold:g}", "--threshold",
                                              str(threshold), *extra)
                if code != 0:
                    alarms[threshold] += 1
                    reasons[threshold].append(f"pair {i}: exit {code}: " + "; ".join(
                        line for line in printed.splitlines() if line.startswith(("verdict:", "cannot"))))
                if threshold == args.threshold:
                    for r in rows:
                        if r["interval"] == "t over log repetition means":
                            hit = float(r["mean_ratio_ci_low"]) <= 1.0 <= float(r["mean_ratio_ci_high"])
                            covered[f"{r['platform']} c={int(float(r['level']))}"].append(int(hit))
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
            if (i + 1) % 20 == 0:
                print(f"  {i + 1} pairs, {time.monotonic() - start:.0f} s", file=sys.stderr)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    n = args.pairs
    print(f"{n} synthetic A/A pairs (seed {args.seed}): {args.repetitions} repetitions x {args.requests} requests "
          f"per cell, concurrency {concurrency}, repetition drift sigma {args.rep_jitter}, slow-mode share jitter "
          f"{args.slow_share_jitter}, function failures at c >= 10 median {100 * args.error_rate:g} % per repetition; "
          f"{time.monotonic() - start:.0f} s")
    for threshold, k in alarms.items():
        print(f"false alarms (compare exit status != 0) at --threshold {threshold:g}: {share(k, n)}")
        for line in reasons[threshold][:5]:
            print(f"    {line}")
    every = [h for hits in covered.values() for h in hits]
    if every:
        print(f"coverage of the {100 * args.confidence:g} % intervals of B / A (they should hold 1): "
              f"{share(sum(every), len(every))}")
        for cell, hits in sorted(covered.items()):
            print(f"    {cell:24} {100 * np.mean(hits):5.1f} % of {len(hits)}")
    rate = 100 * alarms[args.threshold] / n
    if rate > args.max_false_alarms:
        print(f"FAIL: {rate:.1f} % false alarms at --threshold {args.threshold:g} > {args.max_false_alarms:g} %")
        return 1
    print(f"ok: {rate:.1f} % false alarms at --threshold {args.threshold:g} <= {args.max_false_alarms:g} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
