"""`python -m analysis.bench`: the benchmark, one step per command, resumable.

Typical sequence (what bench.yml does):

    python -m analysis.bench init --config bench.json   # prints {"run_dir": ..., ...}; RUN=that run_dir
    python -m analysis.bench plan "$RUN" --pending     # JSON list; each item's argv is one step
    python -m analysis.bench run-one "$RUN" --experiment concurrency --platform function --concurrency 10 --repetition 3
    python -m analysis.bench probe "$RUN" --platform container --requests 10
    python -m analysis.bench paired "$RUN" --rounds 100
    python -m analysis.bench coldstart "$RUN" --platform function --repetition 1
    python -m analysis.bench finalize "$RUN"

or all steps in order with `run-all`. Exit status: 0 when the step ran or was already done (a step that
*measured* failures still succeeded at measuring them), 1 on a harness or configuration error, 2 on bad
arguments, 130 when interrupted (SIGINT/SIGTERM: the unfinished step leaves no done.json and the manifest
says "incomplete"; run the same command again, or `init --run-id ID`, to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from analysis.bench import ab, micro_app, micro_function, rate
from analysis.bench.arguments import print_step, run_dir_parser
from analysis.bench.config import ConfigError, example_config, load_config
from analysis.bench.manifest import RunFolder, RunFolderError, create, new_run_id, same_config, utc_now
from analysis.bench.runner import Interrupted, StepError, coldstart, interruptible, paired, probe, run_one
from analysis.bench.steps import run_item

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_init(args: argparse.Namespace) -> int:
    results_dir: Path = args.results_dir
    run_id = new_run_id() if args.run_id == "new" else args.run_id
    path = results_dir / run_id
    if args.run_id == "new":
        suffix = 1
        while path.exists():  # two inits in the same second
            suffix += 1
            path = results_dir / f"{run_id}-{suffix}"
        run_id = path.name
    config = load_config(args.config) if args.config else None
    if path.exists():
        folder = RunFolder(path)
        if config is not None:
            diffs = same_config(folder.config, config)
            if diffs:
                raise RunFolderError(
                    f"{path} was started with a different configuration, so resuming it would mix two "
                    f"experiments: {'; '.join(diffs)}. Resume with the same configuration, or start a new run."
                )
        done = [item.run_key for item in folder.plan() if folder.is_done(item.run_key)]
        resumed = [*folder.manifest.get("resumed_utc", []), utc_now()]
        folder.update(status="running", finished_utc=None, resumed_utc=resumed)
        _say(f"resuming {path}: {len(done)} of {len(folder.plan())} steps already done")
        for key in done:
            _say(f"  done: {key}")
        resumed_flag = True
    else:
        if config is None:
            raise ConfigError(f"{path} does not exist yet; creating it needs --config FILE")
        folder = create(results_dir, run_id, config)
        _say(f"created {path}: {len(folder.plan())} steps planned, payload {folder.manifest['payload']['name']} "
             f"({folder.manifest['payload']['bytes']} bytes)")
        done, resumed_flag = [], False
    _check_machine(folder)  # issue 14
    print(json.dumps({"run_id": folder.run_id, "run_dir": str(folder.path), "resumed": resumed_flag,
                      "done": len(done), "planned": len(folder.plan())}))
    return 0


def _check_machine(folder: RunFolder) -> None:
    """Look at the machine before the load starts (analysis/bench/system.py); warn when it is busy, and keep what
    was seen, with where ab and the servers run, in the manifest (one entry per init: a resume checks again)."""
    from analysis.bench import system

    knobs = folder.config.knobs
    (serving_ids, serving_pids), placement = system.where(folder.config)
    try:
        check = system.check_quiet(knobs["quiet_check_s"], knobs["busy_cpu_pct"], serving_ids,
                                   serving_pids=serving_pids)
    except OSError as exc:
        _say(f"machine check skipped: cannot read /proc ({exc})")
        return
    check["placement"] = placement
    for line in system.describe(check):
        _say(line)
    _say(f"placement: {check['placement']['text']}")
    folder.update(system_checks=[*folder.manifest.get("system_checks", []), check])


def cmd_extra_repetitions(args: argparse.Namespace) -> int:
    from analysis.bench.stability import run_extra

    return print_step(run_extra(RunFolder(args.run_dir)))


def cmd_plan(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    items = []
    for item in folder.plan():
        done = folder.is_done(item.run_key)
        if args.pending and done:
            continue
        items.append({**item.to_dict(), "done": done})
    print(json.dumps(items, indent=None if args.compact else 1))
    return 0


def _mark_interrupted(run_dir: Path, what: str) -> int:
    try:
        folder = RunFolder(run_dir)
        folder.update(status="incomplete", finished_utc=None)
    except RunFolderError:
        pass
    _say(f"interrupted during {what}: its unfinished output will be discarded on resume; the manifest says "
         "'incomplete'. Run the same command again (or bench.yml -e run_id=...) to resume.")
    return EXIT_INTERRUPTED


def cmd_run_one(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    return print_step(run_one(folder, args.experiment, args.platform, args.concurrency, args.repetition,
                              args.requests))


def cmd_probe(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    return print_step(probe(folder, args.platform, args.requests))


def cmd_paired(args: argparse.Namespace) -> int:  # issue 24
    return print_step(paired(RunFolder(args.run_dir), args.rounds))


def cmd_coldstart(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    if args.repetition is not None:
        reps = [args.repetition]
    else:
        reps = list(range(1, (args.repetitions or folder.config.knobs["coldstart_repetitions"]) + 1))
    for rep in reps:
        print(coldstart(folder, args.platform, rep, args.restart).line, flush=True)
    return 0


def cmd_run_all(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    plan = folder.plan()
    for item in plan:
        if args.limit is not None and sum(1 for i in plan if folder.is_done(i.run_key)) >= args.limit:
            break
        print(run_item(folder, item).line, flush=True)
    return cmd_finalize(args) if not args.no_finalize else 0


def cmd_finalize(args: argparse.Namespace) -> int:
    from analysis.bench.tidy import finalize  # pandas: only finalize needs it, keep the other steps quick

    folder = RunFolder(args.run_dir)
    lines, problems = finalize(folder)
    for line in lines:
        print(line, flush=True)
    for problem in problems:
        _say(f"problem: {problem}")
    return EXIT_ERROR if problems else 0


def cmd_example_config(args: argparse.Namespace) -> int:
    print(json.dumps(example_config(), indent=2))
    return 0


def _add_extra_repetitions(sub: argparse._SubParsersAction) -> None:
    run_dir_parser(sub, "extra-repetitions", cmd_extra_repetitions,
                   help="more repetitions for cells whose repetitions disagree",
                   description="The stability step (a plan item right after the concurrency runs): a cell whose "
                               "repetitions' medians vary by more than stability_cv_pct (coefficient of "
                               "variation), or whose failed requests left it short of the 662 served requests "
                               "a p99 needs, gets one more repetition at a time, up to "
                               "stability_max_extra_repetitions per cell and stability_budget_s in all. Extra "
                               "repetitions are numbered after the planned ones; raw/extra-repetitions/done.json "
                               "records each decision. Prints 'already done' when it ran before.")


def cmd_nowarmup(args: argparse.Namespace) -> int:  # issue 11
    from analysis.bench.nowarmup import nowarmup

    return print_step(nowarmup(RunFolder(args.run_dir), args.platform))


def cmd_bodylimit(args: argparse.Namespace) -> int:  # issue 11
    from analysis.bench.bodylimit import bodylimit

    return print_step(bodylimit(RunFolder(args.run_dir), args.platform))


def cmd_autoscale(args: argparse.Namespace) -> int:  # paper profile
    from analysis.bench.runner import autoscale

    return print_step(autoscale(RunFolder(args.run_dir), args.platform))


def _platform_step_parsers(sub: Any) -> None:  # nowarmup, bodylimit (issue 11), autoscale (paper profile)
    p = run_dir_parser(sub, "nowarmup", cmd_nowarmup,
                       help="the function with WARMUP_CALLS=0: one ab run at c=1 in a temporary copy",
                       description="Start a copy of the platform's container (same image, environment and caps) "
                                   "with WARMUP_CALLS=0 on a free 127.0.0.1 port, wait for /healthz, run ab -c 1 -n "
                                   "nowarmup_requests (experiment nowarmup) bounded by nowarmup_timeout_s, remove "
                                   "the copy. Writes raw/nowarmup-<platform>-c1-r1/ (with nowarmup.json: the copy's "
                                   "start-up time).")
    p.add_argument("--platform", default="function",
                   help="a platform whose kind has a warm-up switch (default: function)")
    p = run_dir_parser(sub, "bodylimit", cmd_bodylimit,
                       help="one POST over the ingress's body limit: which layer answers",
                       description="POST bodylimit_bytes (the payload JPEG, padded) to the platform once and "
                                   "record the status and the layer that answered, from nginx's access log (no "
                                   "upstream status: nginx itself) or the runtime's access log. Writes "
                                   "raw/bodylimit-<platform>/bodylimit.json.")
    p.add_argument("--platform", required=True, help="which platform of the run (its kind has the body-limit check)")
    p = run_dir_parser(sub, "autoscale", cmd_autoscale,
                       help="ab load on a cluster platform while its HPA scales; replicas over time",
                       description="The paper profile's autoscaling run (a plan item for each platform of "
                                   "autoscale_platforms): look for the platform's HorizontalPodAutoscaler (named "
                                   "after kubectl.deployment; without it the step does not run and stays pending), "
                                   "then run ab at autoscale_concurrency for autoscale_duration_s (at most "
                                   "run_timeout_s) while the Deployment's and the HPA's replica counts and CPU "
                                   "utilisation are read through kubectl (the platform's kubectl group: "
                                   "kubeconfig, context and namespace) every autoscale_sample_interval_s, and for "
                                   "autoscale_tail_s after the load. Writes raw/autoscale-<platform>-c<C>/ "
                                   "(autoscale.jsonl, hpa.json, ab's files, done.json); finalize makes "
                                   "autoscale.csv of it.")
    p.add_argument("--platform", required=True,
                   help="which platform (it needs kubectl.kubeconfig, kubectl.context and kubectl.deployment)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.bench", description=__doc__.split("\n\n")[0],
        epilog="Each subcommand has --help. The results folder is described in analysis/RESULTS.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create a run folder, or reopen one to resume it",
                       description="Create RESULTS_DIR/RUN_ID with manifest.json (status 'running'; versions, host "
                                   "facts, git commit) and the payload JPEG; or, when RUN_ID exists, reopen it for "
                                   "resuming and list the steps already done. Then looks at the machine for "
                                   "quiet_check_s seconds (load average, CPU steal, the busiest other processes) and "
                                   "prints a WARNING on stderr when it is busy; the check goes into the manifest "
                                   "(system_checks). Prints one JSON line: run_id, run_dir, resumed, done, planned.")
    p.add_argument("--results-dir", type=Path, default=Path("results"),
                   help="folder that holds the run folders (default: results)")
    p.add_argument("--run-id", default="new",
                   help="'new' (default) for a fresh UTC-timestamp id, or the id of a run to create or resume")
    p.add_argument("--config", type=Path,
                   help="JSON configuration (see `example-config`); required for a new run; on resume it must "
                        "match the run's own configuration")
    p.set_defaults(func=cmd_init)

    p = run_dir_parser(sub, "plan", cmd_plan,
                       help="print the planned steps as JSON",
                       description="Print the plan as a JSON list, in run order: warm-up per platform, then for "
                                   "each repetition and concurrency both platforms (their order alternating), then "
                                   "the probe and the paired step, then cold starts. Each item: index, run_key, step, "
                                   "platform, concurrency, repetition, requests, argv (the arguments after "
                                   "`python -m analysis.bench`), done.")
    p.add_argument("--pending", action="store_true", help="list only steps without done.json")
    p.add_argument("--compact", action="store_true", help="one line of JSON instead of indented")

    p = run_dir_parser(sub, "run-one", cmd_run_one,
                       help="one ab run (skipped if already done)",
                       description="One ApacheBench run POSTing the payload (image/jpeg) to the platform's URL, "
                                   "with /metrics scraped before and after, CPU/memory sampled during it, and the "
                                   "serving container's log lines of the run collected; writes "
                                   "raw/<experiment>-<platform>-c<C>-r<R>/ and done.json last, and prints one "
                                   "progress line. Prints 'already done' when done.json exists.")
    p.add_argument("--experiment", choices=("warmup", "concurrency", "overload"), required=True,
                   help="warmup (discarded by the analysis; repetition 0), concurrency, or overload (issue 11: "
                        "the short runs at overload_concurrency)")
    p.add_argument("--platform", required=True, help="which platform of the run's configuration")
    p.add_argument("--concurrency", type=int, required=True, help="ab -c")
    p.add_argument("--repetition", type=int, required=True, help="1..repetitions; 0 for the warm-up")
    p.add_argument("--requests", type=int, default=None,
                   help="ab -n (default: the run's warmup_requests or requests_per_run)")

    _add_extra_repetitions(sub)
    rate.add_subcommands(sub)  # issue 13: rate-step (a plan item), rate (any URL), rate-capacity (benchmark)

    p = run_dir_parser(sub, "probe", cmd_probe,
                       help="N sequential requests timed by the client (paper Table 1)",
                       description="N sequential POSTs, each on a fresh connection, with Python's http.client: the "
                                   "client's response time and the prediction_ms the service reports. Writes "
                                   "raw/probe-<platform>/probe.jsonl.")
    p.add_argument("--platform", required=True, help="which platform of the run's configuration")
    p.add_argument("--requests", type=int, default=None, help="how many (default: the run's probe_requests)")

    p = run_dir_parser(sub, "paired", cmd_paired,
                       help="the headline: every platform alternated request by request, order rotated",
                       description="ROUNDS rounds; in each, one sequential POST of the payload to every platform "
                                   "of the run, each on a fresh connection and timed by the client like the probe, "
                                   "the order rotated by one platform from round to round so that none always goes "
                                   "first. A platform with requests_per_run set (a bounded, slow platform) takes "
                                   "part in at most that many rounds, spread evenly over the step. The per-round "
                                   "ratio of a function platform to the baseline is the report's headline: two "
                                   "requests sent moments apart share the machine's drift, which cancels in their "
                                   "ratio. Writes raw/paired/paired.jsonl (one line per request, flushed as "
                                   "measured) and done.json; an interrupted step keeps its complete rounds and goes "
                                   "on from there when run again. finalize makes paired.csv of it.")
    p.add_argument("--rounds", type=int, default=None,
                   help="how many rounds (default: the run's paired_requests)")

    p = run_dir_parser(sub, "coldstart", cmd_coldstart,
                       help="restart a platform and time start -> first HTTP 200",
                       description="Take the platform down and bring it back by its configured restart, then POST "
                                   "the payload until the first HTTP 200 (bounded by coldstart_timeout_s). "
                                   "docker: docker stop + docker start of its container, timed from just before "
                                   "`docker start`; raw/coldstart-<platform>-r<R>/. kubectl-scale: its Deployment "
                                   "scaled 0 -> 1; kubectl-redeploy: its objects (Function, HTTPTrigger) deleted "
                                   "and applied again; timed from the first kubectl command of the start; "
                                   "raw/coldstart-<platform>-<kind>-r<R>/.")
    p.add_argument("--platform", required=True, help="which platform of the run's configuration")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--repetition", type=int, help="run this one repetition (what the plan does)")
    group.add_argument("--repetitions", type=int,
                       help="run repetitions 1..K, skipping done ones (default: the run's coldstart_repetitions)")
    p.add_argument("--restart", choices=("docker", "kubectl-scale", "kubectl-redeploy"), default=None,
                   help="which of the platform's configured restarts (needed when it has several)")

    p = run_dir_parser(sub, "run-all", cmd_run_all,
                       help="every pending step of the plan in order, then finalize",
                       description="Run every step of the plan that has no done.json, in plan order, then finalize. "
                                   "For running by hand; bench.yml loops over `plan` instead.")
    p.add_argument("--limit", type=int, default=None, help="stop once this many steps are done (for testing)")
    p.add_argument("--no-finalize", action="store_true", help="do not finalize at the end")

    _platform_step_parsers(sub)

    p = run_dir_parser(sub, "finalize", cmd_finalize,
                       help="rebuild the CSVs from raw/ and set complete/incomplete",
                       description="Re-parse every finished step under raw/ (ab output with analysis.bench.ab), write "
                                   "runs.csv, requests.csv, probe.csv, paired.csv, predictions.csv, "
                                   "coldstart.csv and resources.csv, set the manifest's status to complete (every "
                                   "planned step has done.json) or incomplete, and print a summary. Exit 1 if a raw "
                                   "file could not be parsed (named on stderr).")

    p = sub.add_parser("example-config", help="print a configuration for the local profile",
                       description="Print a complete configuration JSON for the local profile with the default "
                                   "knobs (the paper's values): edit it and pass it to init --config.")
    p.set_defaults(func=cmd_example_config)

    p = sub.add_parser("micro-function", help="ab against the function's runtime image, backends x runtime modes",
                       description=micro_function.DESCRIPTION, epilog=micro_function.EPILOG)
    micro_function.add_arguments(p)
    p.set_defaults(func=micro_function.run)

    p = sub.add_parser("micro-app", help="the app's image: in-process floor, ab sweep, memory, targets",
                       description=micro_app.DESCRIPTION, epilog=micro_app.EPILOG)
    micro_app.add_arguments(p)
    p.set_defaults(func=micro_app.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with interruptible():
            return args.func(args)
    except Interrupted as exc:
        run_dir = getattr(args, "run_dir", None)
        return _mark_interrupted(run_dir, f"{args.command} ({exc})") if run_dir else EXIT_INTERRUPTED
    except (ConfigError, RunFolderError, StepError, ab.AbError) as exc:
        _say(f"error: {exc}")
        return EXIT_ERROR
