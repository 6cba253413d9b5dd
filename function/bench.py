"""Speed of the function's runtime image: ab at c=1 and c=20 against the container, printed as a table.

    python function/bench.py --build                       # build the image, then keras+litert, faithful
    python function/bench.py --backend keras --mode faithful repaired --requests 300

For each backend x mode it starts the image with the local profile's limits (`docker run --cpus 2 --memory 2g
-p 127.0.0.1:PORT:8080`), warms it up, runs ab (`-r`, so connection resets at c >= 10 are counted rather than
aborting the run), and reads the container's stdout for what ab cannot tell: the status of each request (the
runtime's access log, so 408s are counted apart from other non-2xx) and the prediction time of each call (the
function's JSON line). From those it prints p50/p99/max and requests/s, and where the mean response time
goes: prediction (decode + model, in the forked child), fork + queue inside the runtime (access-log time minus
prediction), and HTTP + waiting for a thread (ab time minus access-log time).

Raw ab files, the container log and results.json (one row per run) are kept under --out. This measures the
runtime image itself on this machine; the project's benchmark driver (python -m analysis.bench) measures the
deployed platforms.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: `python function/bench.py`
    sys.path.insert(0, str(REPO_ROOT))

from analysis.bench.ab import AbCommand, run_ab  # noqa: E402 - needs the repository root on sys.path first

DEFAULT_IMAGE = "kubeless-dl-eval/function:latest"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
READY_TIMEOUT_S = 180
AB_TIMEOUT_S = 600
# The runtime's access line: ... "POST / HTTP/1.0" 200 256 "referer" "agent" <seconds>/<microseconds>
ACCESS_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) \d+ .* (?P<seconds>\d+)/(?P<total>\d+)$'
)


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:3])} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return proc


def build_image(tag: str, base_image: str) -> None:
    for needed in ("build/wheelhouse", "build/model/model.keras", "build/model/model.tflite"):
        if not (REPO_ROOT / needed).exists():
            raise SystemExit(f"{needed} is missing: run scripts/build-wheelhouse.sh and `python -m model train/export`")
    print(f"building {tag} FROM {base_image} ...", flush=True)
    docker(
        "build", "-f", "function/Dockerfile", "--build-arg", f"BASE_IMAGE={base_image}", "-t", tag, str(REPO_ROOT),
        timeout=1800,
    )  # fmt: skip


def photo_payload(path: Path) -> Path:
    """A 500x375 photo-like JPEG (~100 KB, the size of a Yelp photo) when no --payload is given."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 500)[None, :, None] * np.ones((375, 1, 3))
    pixels = np.clip(ramp + rng.normal(0, 40, (375, 500, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
    path.write_bytes(buffer.getvalue())
    return path


def post(url: str, data: bytes, content_type: str, timeout: float = 60) -> int:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the benchmark only talks to 127.0.0.1, not {url}")
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")  # noqa: S310
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - checked above: http on 127.0.0.1
        resp.read()
        return resp.status


def wait_ready(url: str, container: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2) as resp:  # noqa: S310 - 127.0.0.1
                if resp.read() == b"OK":
                    return
        except OSError:
            pass
        state = docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout.strip()
        if state == "false":
            raise SystemExit(f"{container} exited:\n{docker('logs', container, check=False).stderr[-3000:]}")
        time.sleep(0.5)
    raise SystemExit(f"{container} did not answer /healthz within {READY_TIMEOUT_S} s")


def container_stdout(container: str) -> list[str]:
    return docker("logs", container, timeout=120).stdout.splitlines()


def log_stats(lines: list[str]) -> dict[str, Any]:
    """Statuses and server-side times from the access log; prediction times from the function's JSON lines."""
    statuses: dict[str, int] = {}
    server_ms, prediction_ms = [], []
    for line in lines:
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "prediction":
                prediction_ms.append(float(record["prediction_ms"]))
            continue
        match = ACCESS_LINE.search(line)
        if match and match["method"] == "POST" and (match["path"] == "/" or match["path"].startswith("/?")):
            statuses[match["status"]] = statuses.get(match["status"], 0) + 1
            server_ms.append(int(match["total"]) / 1000.0)
    return {"statuses": statuses, "server_ms": server_ms, "prediction_ms": prediction_ms}


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def bench_one(args: argparse.Namespace, backend: str, mode: str, payload: Path) -> list[dict[str, Any]]:
    container = f"kde-bench-function-{backend}-{mode}"
    url = f"http://127.0.0.1:{args.port}/"
    docker("rm", "-f", container, check=False)
    docker(
        "run", "-d", "--name", container, "--cpus", args.cpus, "--memory", args.memory,
        "-p", f"127.0.0.1:{args.port}:8080", "-e", f"MODEL_BACKEND={backend}", "-e", f"KUBELESS_RUNTIME_MODE={mode}",
        "-e", f"FUNC_MEMORY_LIMIT={args.memory}", args.image,
    )  # fmt: skip
    rows = []
    run_dir = args.out / f"{backend}-{mode}"
    try:
        wait_ready(url, container)
        data = payload.read_bytes()
        for _ in range(args.warmup):
            post(url, data, args.content_type)
        for concurrency in args.concurrency:
            before = len(container_stdout(container))
            result = run_ab(
                AbCommand(url, args.requests, concurrency, post_file=payload, content_type=args.content_type),
                run_dir / f"c{concurrency}",
                timeout_s=AB_TIMEOUT_S,
                check=False,
            )
            time.sleep(0.5)  # let the last lines reach the log
            stats = log_stats(container_stdout(container)[before:])
            summary = result.summary
            ab_mean_ms = mean([r.total_ms for r in result.requests])
            server_mean, prediction_mean = mean(stats["server_ms"]), mean(stats["prediction_ms"])
            completed = summary.completed if summary else 0
            rows.append(
                {
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
                    "receive_errors": summary.failures.errors if summary else None,
                    "status_counts": stats["statuses"],
                    "count_408": stats["statuses"].get("408", 0),
                    "share_408": stats["statuses"].get("408", 0) / completed if completed else None,
                    "ab_mean_ms": ab_mean_ms,
                    "server_mean_ms": server_mean,
                    "prediction_mean_ms": prediction_mean,
                    "outside_handler_share": (
                        1 - prediction_mean / ab_mean_ms if ab_mean_ms and prediction_mean is not None else None
                    ),
                    "raw_dir": str(run_dir / f"c{concurrency}"),
                }
            )
            print_row(rows[-1])
    finally:
        run_dir.mkdir(parents=True, exist_ok=True)
        logs = docker("logs", container, check=False, timeout=120)
        (run_dir / "container.log").write_text(logs.stdout)
        (run_dir / "container.stderr.log").write_text(logs.stderr)
        docker("rm", "-f", container, check=False)
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
        f"{_fmt(row['non_2xx']):>6} {row['count_408']:>4} {_fmt(row['receive_errors']):>6}  {_fmt(pred, '.1f'):>6} "
        f"{_fmt(fork_queue, '.1f'):>6} {_fmt(http, '.1f'):>6} {_fmt(row['outside_handler_share'], '.0%'):>7}",
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="ab at c=1 and c=20 against the function's runtime image (times in ms).",
        epilog="Columns: pred = mean prediction time in the child; fork+q = runtime time outside the function; "
        "http = ab time outside the runtime (connection, waiting for one of the 10 threads); outside = share of "
        "the mean response time not spent predicting. resets = ab's receive/connect errors (backlog overflow).",
    )
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"image to run (default {DEFAULT_IMAGE})")
    parser.add_argument("--build", action="store_true", help="docker build the image first (needs build/wheelhouse)")
    parser.add_argument(
        "--base-image",
        default=DEFAULT_BASE_IMAGE,
        help="BASE_IMAGE for --build; offline use kubeless-dl-eval/base:bookworm-py311",
    )
    parser.add_argument("--backend", nargs="+", default=["keras", "litert"], choices=["keras", "litert"])
    parser.add_argument("--mode", nargs="+", default=["faithful"], choices=["faithful", "repaired"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 20], help="ab -c values (default 1 20)")
    parser.add_argument("--requests", type=int, default=200, help="ab -n per concurrency (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="requests sent before measuring (default 10)")
    parser.add_argument("--payload", type=Path, help="image to POST (default: a generated 500x375 ~100 KB JPEG)")
    parser.add_argument("--content-type", default="image/jpeg", help="Content-Type of the payload")
    parser.add_argument("--port", type=int, default=30080, help="host port on 127.0.0.1 (default 30080)")
    parser.add_argument("--cpus", default="2", help="docker run --cpus (default 2)")
    parser.add_argument("--memory", default="2g", help="docker run --memory (default 2g)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "bench" / "function", help="results folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.build:
        build_image(args.image, args.base_image)
    payload = args.payload or photo_payload(args.out / "payload.jpg")
    print(f"payload {payload} ({payload.stat().st_size} bytes), {args.requests} requests per run\n{HEADER}")
    rows = []
    for backend in args.backend:
        for mode in args.mode:
            rows += bench_one(args, backend, mode, payload)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\nresults: {args.out / 'results.json'} (raw ab output and container logs next to it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
