"""`python -m analysis.bench micro-function`: ab against the function's runtime image, printed as a table.

    python -m analysis.bench micro-function --build                # build the image, then keras+litert, faithful
    python -m analysis.bench micro-function --backend keras --mode faithful repaired --requests 300

For each backend x mode it starts the image with the local profile's limits (`docker run --cpus 2 --memory 2g
-p 127.0.0.1:PORT:8080`), warms it up, runs ab (`-r`, so connection resets at c >= 10 are counted rather than
aborting the run) POSTing bench.yml's payload, and reads the container's stdout for what ab cannot tell: the
status of each request (the runtime's access log, so 408s are counted apart from other non-2xx) and the
prediction time of each call (the function's JSON line). From those it prints p50/p99/max and requests/s, and
where the mean response time goes: prediction (decode + model, in the forked child), fork + queue inside the
runtime (access-log time minus prediction), and HTTP + waiting for a thread (ab time minus access-log time).

Raw ab files, the container's lines of each run (server.log beside the ab files), its whole log and
results.json (one row per run) are kept under --out. This measures the runtime image itself on this machine;
bench.yml (the other subcommands) measures the deployed platforms.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from analysis.bench.ab import AbCommand, run_ab, served_flags
from analysis.bench.client import request
from analysis.bench.micro_harness import (
    REPO_ROOT,
    Container,
    MicroBenchError,
    build_image,
    capped_container,
    mean,
    payload_file,
    prediction_ms,
    wait_ready,
)

DESCRIPTION = "ab at c=1 and c=20 against the function's runtime image (times in ms)."
EPILOG = (
    "Columns: pred = mean prediction time in the child; fork+q = runtime time outside the function; "
    "http = ab time outside the runtime (connection, waiting for one of the 10 threads), over the requests "
    "that got a reply; outside = share of the mean response time not spent predicting; p50/p99/max are ab's own "
    "(-e), over every attempt. resets = requests that got no reply at all (reset, refused or "
    "closed empty when the listen backlog overflows), each counted once."
)
DEFAULT_IMAGE = "kubeless-dl-eval/function:latest"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
CONTAINER_PREFIX = "kde-bench-function-"
AB_TIMEOUT_S = 600
LOG_SETTLE_S = 0.5
# The runtime's access line: ... "POST / HTTP/1.0" 200 256 "referer" "agent" <seconds>/<microseconds>
ACCESS_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) \d+ .* (?P<seconds>\d+)/(?P<total>\d+)$'
)
MODEL_FILES = ("build/wheelhouse", "build/model/model.keras", "build/model/model.tflite")


def access_stats(lines: list[str]) -> tuple[dict[str, int], list[float]]:
    """Status counts and server-side times (ms) of the POSTs to the function, from the runtime's access log."""
    statuses: dict[str, int] = {}
    server_ms = []
    for line in lines:
        match = ACCESS_LINE.search(line)
        if match and match["method"] == "POST" and (match["path"] == "/" or match["path"].startswith("/?")):
            statuses[match["status"]] = statuses.get(match["status"], 0) + 1
            server_ms.append(int(match["total"]) / 1000.0)
    return statuses, server_ms


def warm_up(url: str, data: bytes, content_type: str, count: int) -> None:
    for _ in range(count):
        resp = request("POST", url, data, content_type, timeout=60)
        if resp.status is None or resp.status >= 400:
            raise MicroBenchError(f"warm-up POST {url} got {resp.error or f'HTTP {resp.status}'}: "
                                  f"{resp.body[:300].decode('utf-8', 'replace')}")


def measure(args: argparse.Namespace, container: Container, backend: str, mode: str, payload: Path,
            run_dir: Path, concurrency: int) -> dict[str, Any]:
    """One ab run at `concurrency`, with the container's lines of that run beside ab's files."""
    out = run_dir / f"c{concurrency}"
    mark = container.mark()
    result = run_ab(
        AbCommand(f"{container.url}/", args.requests, concurrency, post_file=payload, content_type=args.content_type),
        out,
        timeout_s=AB_TIMEOUT_S,
        check=False,
    )
    time.sleep(LOG_SETTLE_S)  # let the last lines reach the log
    statuses, server_ms = access_stats(container.collect_logs(mark, out))
    summary, classes = result.summary, result.classified
    # ab's time of the requests that got a reply: the 0 ms refusals and resets have no server or prediction time
    served = served_flags(result.requests, classes)
    ab_mean_ms = mean([r.total_ms for r, replied in zip(result.requests, served, strict=True) if replied])
    server_mean, prediction_mean = mean(server_ms), mean(prediction_ms(out))
    completed = summary.completed if summary else 0
    return {
        "platform": "function",
        "backend": backend,
        "runtime_mode": mode,
        "concurrency": concurrency,
        "requests": args.requests,
        "ab_outcome": result.outcome,
        "p50_ms": result.percentile(50),
        "p99_ms": result.percentile(99),
        "max_ms": result.percentile(100),
        "requests_per_s": summary.requests_per_s if summary else None,
        "non_2xx": summary.non_2xx if summary else None,
        # attempts that got no reply at all (reset, refused, closed empty: the backlog of 5 overflowing), each once
        "no_reply": classes.no_reply if classes else None,
        **{cause: getattr(classes, cause) if classes else None for cause in ("reset", "refused", "empty_reply")},
        "status_counts": statuses,
        "count_408": statuses.get("408", 0),
        "share_408": statuses.get("408", 0) / completed if completed else None,
        "ab_mean_ms": ab_mean_ms,
        "server_mean_ms": server_mean,
        "prediction_mean_ms": prediction_mean,
        "outside_handler_share": (
            1 - prediction_mean / ab_mean_ms if ab_mean_ms and prediction_mean is not None else None
        ),
        "raw_dir": str(out),
    }


def bench_one(args: argparse.Namespace, backend: str, mode: str, payload: Path) -> list[dict[str, Any]]:
    """Start the image for one backend x mode, measure every concurrency, keep its whole log, remove it."""
    env = {"MODEL_BACKEND": backend, "KUBELESS_RUNTIME_MODE": mode, "FUNC_MEMORY_LIMIT": args.memory}
    run_dir = args.out / f"{backend}-{mode}"
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with capped_container(args.image, f"{CONTAINER_PREFIX}{backend}-{mode}", args.cpus, args.memory, env,
                          port=args.port) as container:
        try:
            wait_ready(f"{container.url}/healthz", lambda r: r.status == 200 and r.body == b"OK", container)
            warm_up(f"{container.url}/", payload.read_bytes(), args.content_type, args.warmup)
            time.sleep(LOG_SETTLE_S)  # the warm-up's last lines reach the log before the first run's window opens
            for concurrency in args.concurrency:
                rows.append(measure(args, container, backend, mode, payload, run_dir, concurrency))
                print_row(rows[-1])
        finally:
            logs = container.logs()
            (run_dir / "container.log").write_text(logs.stdout)
            (run_dir / "container.stderr.log").write_text(logs.stderr)
    return rows


HEADER = (
    f"{'backend':8} {'mode':9} {'c':>3} {'p50':>6} {'p99':>6} {'max':>6} {'req/s':>7} {'non2xx':>6} {'408':>4} "
    f"{'resets':>6}  {'pred':>6} {'fork+q':>6} {'http':>6} {'outside':>7}"
)


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def print_row(row: dict[str, Any]) -> None:
    pred, server, total = row["prediction_mean_ms"], row["server_mean_ms"], row["ab_mean_ms"]
    fork_queue = server - pred if server is not None and pred is not None else None
    http = total - server if total is not None and server is not None else None
    print(
        f"{row['backend']:8} {row['runtime_mode']:9} {row['concurrency']:>3} {_fmt(row['p50_ms']):>6} "
        f"{_fmt(row['p99_ms']):>6} {_fmt(row['max_ms']):>6} {_fmt(row['requests_per_s'], '.1f'):>7} "
        f"{_fmt(row['non_2xx']):>6} {row['count_408']:>4} {_fmt(row['no_reply']):>6}  {_fmt(pred, '.1f'):>6} "
        f"{_fmt(fork_queue, '.1f'):>6} {_fmt(http, '.1f'):>6} {_fmt(row['outside_handler_share'], '.0%'):>7}",
        flush=True,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"image to run (default {DEFAULT_IMAGE})")
    parser.add_argument("--build", action="store_true",
                        help="docker build -f function/kubeless/Dockerfile first, tagged --image (needs "
                             "build/wheelhouse and build/model with model.keras and model.tflite)")
    parser.add_argument("--base-image", default=DEFAULT_BASE_IMAGE,
                        help=f"BASE_IMAGE for --build (default {DEFAULT_BASE_IMAGE}); offline use "
                             "kubeless-dl-eval/base:bookworm-py311")
    parser.add_argument("--backend", nargs="+", default=["keras", "litert"], choices=["keras", "litert"],
                        help="MODEL_BACKEND values to run, one container each (default keras litert)")
    parser.add_argument("--mode", nargs="+", default=["faithful"], choices=["faithful", "repaired"],
                        help="KUBELESS_RUNTIME_MODE values to run, one container each (default faithful)")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 20], help="ab -c values (default 1 20)")
    parser.add_argument("--requests", type=int, default=200, help="ab -n per concurrency (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="requests sent before measuring (default 10)")
    parser.add_argument("--payload", type=Path,
                        help="image to POST (default: bench.yml's, analysis.bench.payloads' photo-500x375.jpg, "
                             "written into --out)")
    parser.add_argument("--content-type", default="image/jpeg", help="Content-Type of the payload (default image/jpeg)")
    parser.add_argument("--port", type=int, default=30080, help="host port on 127.0.0.1 (default 30080)")
    parser.add_argument("--cpus", default="2", help="docker run --cpus (default 2)")
    parser.add_argument("--memory", default="2g", help="docker run --memory, also FUNC_MEMORY_LIMIT (default 2g)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "bench" / "function",
                        help="results folder (default build/bench/function in the repository)")


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    if args.build:
        missing = [needed for needed in MODEL_FILES if not (REPO_ROOT / needed).exists()]
        if missing:
            raise MicroBenchError(f"{', '.join(missing)} missing: run scripts/build-wheelhouse.sh and "
                                  "`python -m model train` and `python -m model export`")
        print(f"building {args.image} FROM {args.base_image} ...", flush=True)
        build_image("function/kubeless/Dockerfile", args.image, args.base_image)
    payload = payload_file(args.payload, args.out)
    print(f"payload {payload} ({payload.stat().st_size} bytes), {args.requests} requests per run\n{HEADER}")
    rows = []
    for backend in args.backend:
        for mode in args.mode:
            rows += bench_one(args, backend, mode, payload)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\nresults: {args.out / 'results.json'} (raw ab output and container logs next to it)")
    return 0
