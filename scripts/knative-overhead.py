#!/usr/bin/env python3
"""What the Knative stand-ins add per request: the queue-proxy, and the activator in front of it, each measured
against calling the user container directly; and, with --model, whether func-python serves predictions serially.

Starts, as local processes on 127.0.0.1, the activator with its pod: the queue-proxy and, as the user container, a
func-python function (the real middleware on hypercorn) that answers a fixed 256-byte JSON at once. Then runs
ApacheBench (`ab`, a new connection per request as bench.yml does, POSTing a --payload-bytes body) against the
three ways in (direct: the function's own port; queue-proxy; activator -> queue-proxy), at each concurrency, the
paths interleaved within every repetition so that a busy moment of the machine hits them all.

Prints, per path and concurrency, the mean latency (ab's "Time per request (mean)"), the throughput and what the
path adds: the queue-proxy's own cost is `queue-proxy - direct`, the activator's `activator - queue-proxy`. It also
prints the CPU time each front process spent per request (from /proc), which a busy machine disturbs less than the
latencies. The function does no work on purpose: the numbers are the front's cost, not a model's.

--model DIR runs the real prediction function (function/knative/predict) directly, inline (the default: on the
event loop) and with FUNC_PREDICT_IN_THREAD=1, at c=1 and c=4 with a synthetic photo: if the inline function
serves one prediction at a time, its throughput does not grow with the concurrency and its mean latency grows
with it; the script also counts, from the function's own log, how often two predictions overlapped in time.
With --cold-starts N it also times N cold starts from zero of each user container, through the activator.

Run from the repository root: .venv/bin/python scripts/knative-overhead.py --requests 2000 --repetitions 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TRIVIAL_FUNCTION = '''
import json
BODY = json.dumps({"label": "food", "pad": " " * 220}).encode()

def new():
    return Function()

class Function:
    async def handle(self, scope, receive, send):
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": [[b"content-type", b"application/json"]]})
        await send({"type": "http.response.body", "body": BODY})
'''
PATHS = ("direct", "queue-proxy", "activator")
_MEAN = re.compile(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)")
_RPS = re.compile(r"Requests per second:\s+([\d.]+)")
_FAILED = re.compile(r"Failed requests:\s+(\d+)")
_NON2XX = re.compile(r"Non-2xx responses:\s+(\d+)")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of one process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The direct children of a process (the activator's pod: queue-proxy and user container)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def run_ab(url: str, payload: Path, requests: int, concurrency: int,
           content_type: str = "image/jpeg") -> tuple[float, float, int]:
    argv = ["ab", "-q", "-r", "-n", str(requests), "-c", str(concurrency), "-p", str(payload), "-T", content_type, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    mean, rps = _MEAN.search(done.stdout), _RPS.search(done.stdout)
    if done.returncode != 0 or not mean or not rps:
        raise SystemExit(f"ab failed on {url}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    failed = int(_FAILED.search(done.stdout).group(1))
    non2xx = _NON2XX.search(done.stdout)
    return float(mean.group(1)), float(rps.group(1)), failed + (int(non2xx.group(1)) if non2xx else 0)


def front_overhead(args: argparse.Namespace, work: Path) -> None:
    from tests.fixtures_knative import RUNTIME_DIR, running, start_activator
    from tests.http_client import request

    function_root = work / "trivial"
    (function_root / "function").mkdir(parents=True)
    (function_root / "function" / "__init__.py").write_text(TRIVIAL_FUNCTION)
    payload = work / "payload.bin"
    payload.write_bytes(os.urandom(args.payload_bytes))
    activator = start_activator(work, cc=args.cc, initial_scale=1, SERVING_READINESS_PROBE="",
                                KNATIVE_USER_COMMAND=f"{sys.executable} {RUNTIME_DIR / 'func_main.py'}",
                                KNATIVE_USER_WORKDIR=str(function_root))
    results: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
    cpu: dict[tuple[str, int], float] = {}
    with running(activator):
        assert request(activator.url, "POST", "/", body=b"x", timeout=60).status == 200
        pod = {("queue-proxy" if "queue_proxy.py" in cmdline(p) else "user"): p
               for p in children(activator.process.pid)}
        procs = {"activator": activator.process.pid, "queue-proxy": pod["queue-proxy"]}
        urls = {"direct": f"http://127.0.0.1:{activator.user_port}/",  # type: ignore[attr-defined]
                "queue-proxy": f"http://127.0.0.1:{activator.queue_port}/",  # type: ignore[attr-defined]
                "activator": activator.url + "/"}
        for concurrency in args.concurrency:
            for path in PATHS:  # warm-up: connections, pools, Python's caches
                run_ab(urls[path], payload, min(200, args.requests), concurrency)
            for _ in range(args.repetitions):
                for path in PATHS:
                    before = {name: cpu_seconds(pid) for name, pid in procs.items()}
                    results.setdefault((path, concurrency), []).append(
                        run_ab(urls[path], payload, args.requests, concurrency))
                    if path == "activator":  # the one path that crosses both
                        for name, pid in procs.items():
                            cpu[(name, concurrency)] = cpu.get((name, concurrency), 0.0) + (
                                cpu_seconds(pid) - before[name])
    print(f"containerConcurrency {args.cc}; {args.requests} requests per run, {args.repetitions} interleaved runs "
          f"per cell (median run shown), {args.payload_bytes}-byte POST, a new connection per request; load "
          f"average before: {os.getloadavg()[0]:.2f}")
    print(f"{'path':<14}{'c':>4}{'mean ms':>10}{'req/s':>10}{'adds ms':>10}{'  over':<14}{'failed':>8}")
    for concurrency in args.concurrency:
        medians = {}
        for path in PATHS:
            runs = results[(path, concurrency)]
            mean = statistics.median(r[0] for r in runs)
            rps = statistics.median(r[1] for r in runs)
            medians[path] = mean
            base = {"queue-proxy": "direct", "activator": "queue-proxy"}.get(path)
            added = f"{mean - medians[base]:+.3f}" if base else ""
            print(f"{path:<14}{concurrency:>4}{mean:>10.3f}{rps:>10.0f}{added:>10}  {base or '':<12}"
                  f"{sum(r[2] for r in runs):>8}")
    print("CPU time per request of each front process, on the activator path (ms):")
    for concurrency in args.concurrency:
        print(f"  c={concurrency}: " + ", ".join(
            f"{name} {1000 * cpu[(name, concurrency)] / (args.requests * args.repetitions):.3f}" for name in procs))


def serial_check(args: argparse.Namespace, work: Path) -> None:
    import numpy as np

    from model.synth import jpeg_bytes, synth_photo
    from tests.fixtures_knative import FUNC_ROOT, RUNTIME_DIR, Proc, port_open
    from tests.http_client import free_port

    photo = work / "photo.jpg"
    photo.write_bytes(jpeg_bytes(synth_photo("food", np.random.default_rng(5), (500, 375))))
    print(f"func-python with the model ({args.model}, {args.backend}), directly, {args.model_requests} requests "
          f"per run; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'mode':<8}{'c':>4}{'mean ms':>10}{'req/s':>10}{'overlapping':>13}")
    for mode, flag in (("inline", "0"), ("thread", "1")):
        port = free_port()
        env = {"LISTEN_ADDRESS": f"127.0.0.1:{port}", "MODEL_DIR": str(args.model), "MODEL_BACKEND": args.backend,
               "FUNC_PREDICT_IN_THREAD": flag}
        proc = Proc(f"func-{mode}", [sys.executable, str(RUNTIME_DIR / "func_main.py")], env, work, port,
                    cwd=FUNC_ROOT)
        try:
            deadline = time.monotonic() + 300
            while not port_open(port):
                if time.monotonic() > deadline or proc.process.poll() is not None:
                    raise SystemExit(f"the function did not start:\n{proc.logs()[-2000:]}")
                time.sleep(0.2)
            for concurrency in args.model_concurrency:
                run_ab(f"http://127.0.0.1:{port}/", photo, min(20, args.model_requests), concurrency)
                before = len(_spans(proc))
                mean, rps, failed = run_ab(f"http://127.0.0.1:{port}/", photo, args.model_requests, concurrency)
                spans = sorted(_spans(proc)[before:])
                overlaps = sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1] - 0.001)
                print(f"{mode:<8}{concurrency:>4}{mean:>10.2f}{rps:>10.1f}{overlaps:>8} of {len(spans) - 1}"
                      + (f"  ({failed} failed)" if failed else ""))
        finally:
            proc.stop()


def cold_starts(args: argparse.Namespace, work: Path) -> None:
    """Cold starts from zero: the activator starts with no pod; the time from sending the first request (which it
    holds while the pod starts, the model loads and the readiness probe passes) to its 200."""
    import numpy as np

    from model.synth import jpeg_bytes, synth_photo
    from tests.fixtures_knative import running, start_activator
    from tests.http_client import request

    photo = jpeg_bytes(synth_photo("food", np.random.default_rng(5), (500, 375)))
    print(f"cold start from zero ({args.model}, {args.backend}): first request held -> its 200, "
          f"{args.cold_starts} starts per user container; load average before: {os.getloadavg()[0]:.2f}")
    for user, path in (("func", "/"), ("app", "/predict")):
        times, ready = [], []
        for i in range(args.cold_starts):
            log_dir = work / f"cold-{user}-{i}"
            log_dir.mkdir()
            activator = start_activator(log_dir, user=user, MODEL_DIR=str(args.model), MODEL_BACKEND=args.backend)
            with running(activator):
                start = time.monotonic()
                resp = request(activator.url, "POST", path, body=photo, headers={"Content-Type": "image/jpeg"},
                               timeout=300)
                times.append(time.monotonic() - start)
                if resp.status != 200:
                    raise SystemExit(f"{user}: the held request got {resp.status}: {resp.body[:300]!r}")
                ready += [e["pod_ready_s"] for e in activator.events("cold_start")]
        print(f"  {user:<5} held -> 200: " + ", ".join(f"{t:.2f}" for t in times) + f" s (median "
              f"{statistics.median(times):.2f}); pod start -> ready: median {statistics.median(ready):.2f} s")


def _spans(proc) -> list[tuple[float, float]]:
    spans = []
    for line in proc.stdout_path.read_text(errors="replace").splitlines():
        if line.startswith('{"event": "prediction"'):
            record = json.loads(line)
            spans.append((record["ts"] - record["prediction_ms"] / 1000, record["ts"]))
    return spans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--requests", type=int, default=2000, help="requests per ab run (default 2000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 20],
                        help="ab concurrency levels (default: 1 20)")
    parser.add_argument("--repetitions", type=int, default=3,
                        help="runs per path and concurrency, interleaved across paths (default 3); the table "
                        "shows the median run")
    parser.add_argument("--payload-bytes", type=int, default=36_000,
                        help="size of the POSTed body; bench.yml's JPEG is ~36 KB (default 36000)")
    parser.add_argument("--cc", type=int, default=0, help="the revision's containerConcurrency (default 0)")
    parser.add_argument("--model", type=Path, help="a model folder: also run the serial check with it")
    parser.add_argument("--model-only", action="store_true", help="with --model: skip the front's overhead")
    parser.add_argument("--backend", default="keras", help="MODEL_BACKEND of the serial check (default keras)")
    parser.add_argument("--model-requests", type=int, default=200, help="requests per serial-check run (default 200)")
    parser.add_argument("--model-concurrency", type=int, nargs="+", default=[1, 4],
                        help="concurrency levels of the serial check (default: 1 4)")
    parser.add_argument("--cold-starts", type=int, default=0,
                        help="with --model: also time this many cold starts from zero per user container")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder with the processes' logs")
    args = parser.parse_args()
    if shutil.which("ab") is None:
        raise SystemExit("ab (ApacheBench) is not on PATH: apt-get install -y apache2-utils")
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="knative-overhead-"))
    if not args.model_only:
        front_overhead(args, work)
    if args.model:
        serial_check(args, work)
        if args.cold_starts:
            cold_starts(args, work)
    if args.keep:
        print(f"logs: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
