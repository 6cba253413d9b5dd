#!/usr/bin/env python3
"""How much CPU the platform's container spent per served request, step by step, in one or more run folders.

The busy check sees other processes and hypervisor steal; it cannot see a host whose cores simply do less work per
second (a shared VM's neighbours on the same physical cores, its boost clock). The platform's own CPU time per
served request can: the work per request is fixed (same payload, same model), so when it rises at the same load
the machine got slower. Each step's container CPU comes from its resources.jsonl (cgroup CPU time, first to last
sample), its served requests from openloop.csv (open-loop steps) or ab's output (closed-loop steps), both over the
same seconds. Prints one line per step in the order the steps ran, then the median per phase and platform.

Usage: scripts/cpu-per-request.py RUN_DIR [RUN_DIR ...]   (run with the project's .venv/bin/python)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.bench import ab, openloop
from analysis.bench.manifest import DONE, read_json
from analysis.bench.resources import RESOURCES_FILE, resource_rows


def cpu_seconds(step: Path) -> tuple[float, float] | None:
    """(container CPU seconds, sampled seconds) from the step's resources.jsonl; None without two samples."""
    rows = [r for r in resource_rows(step / RESOURCES_FILE) if r["cpu_usage_ns"] is not None]
    if len(rows) < 2 or rows[-1]["t_s"] <= rows[0]["t_s"]:
        return None
    return (rows[-1]["cpu_usage_ns"] - rows[0]["cpu_usage_ns"]) / 1e9, rows[-1]["t_s"] - rows[0]["t_s"]


def served(step: Path, done: dict) -> int | None:
    """Served requests of the step: open-loop rows with outcome 'served', or ab's served count."""
    if done.get("step") == "rate":
        rows = openloop.read_rows(step / openloop.RAW_CSV)
        return sum(1 for r in rows if r["outcome"] == "served")
    if done.get("step") == "ab" and done.get("experiment") == "concurrency":
        info = done.get("ab", {})
        try:
            result = ab.parse_run_files(step, info.get("argv", []), info.get("returncode", 0), info.get("wall_s"))
        except ab.AbParseError:
            return None
        return result.classified.served if result.classified is not None else None
    return None


def phase(step: str, done: dict) -> str:
    if done.get("step") == "ab":
        return "closed loop (concurrency sweep)"
    return "open loop, search probes" if isinstance(done.get("search"), dict) else "open loop, grid"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="results/<run id> folders")
    parser.add_argument("--quiet", action="store_true", help="only the medians per phase")
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / "raw").is_dir():
            print(f"{run}: not a run folder (no raw/)", file=sys.stderr)
            return 2
        print(f"== {run.name}")
        steps = []
        for done_path in (run / "raw").glob(f"*/{DONE}"):
            done = read_json(done_path)
            if done.get("outcome") != "ok" or done.get("experiment") not in ("concurrency", "rate"):
                continue
            cpu, n = cpu_seconds(done_path.parent), served(done_path.parent, done)
            if cpu is None or not n:
                continue
            steps.append((done.get("started_epoch") or 0.0, done_path.parent.name, done, cpu, n))
        per_phase: dict[tuple[str, str], list[float]] = {}
        for _, name, done, (cpu_s, seconds), n in sorted(steps):
            ms = 1000 * cpu_s / n
            per_phase.setdefault((phase(name, done), done["platform"]), []).append(ms)
            if not args.quiet:
                print(f"  {done.get('started_utc', '')[11:19]} {name:36s} {cpu_s / seconds:5.2f} cores "
                      f"{n:5d} served  {ms:6.1f} CPU ms per served request")
        for (ph, platform), values in sorted(per_phase.items()):
            print(f"  median {platform:18s} {ph:32s} {statistics.median(values):6.1f} ms "
                  f"(range {min(values):.1f}-{max(values):.1f}, {len(values)} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
