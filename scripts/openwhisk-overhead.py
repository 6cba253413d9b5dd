#!/usr/bin/env python3
"""The OpenWhisk front's own cost per request, and a cold start's parts: start, /init, /run.

Starts, on 127.0.0.1 only, one action container's proxy (function/openwhisk/runtime/proxy.py) initialized with an
action that does nothing but answer, and the front (runtime/controller.py) serving the same action from a pool of
one container. ApacheBench POSTs the same photo-sized body both ways, a new connection per request:

- `proxy`: straight to the proxy's /run, the JSON the front would send (the body base64-encoded in __ow_body);
- `front`: the raw body to the web action, through the front's rules (parse, throttles, base64 into params,
  activation record, the keep-alive call to the container, transcoding the result into the HTTP answer).

The proxy has no lock (the invoker never sends it two activations), so the `proxy` path runs at c = 1 only; the
container is serial either way, so at c > 1 the front's cost shows as its CPU time per request and as the
throughput it leaves of the container's. With --model-dir, --cold-starts fronts are started with the real action
and each first prediction's start, /init (TensorFlow import, model load, warm-up) and /run times are printed; and
--reexec runs what the 2018 python runtime did on every /run (pythonrunner.py at 3@1.12.0-incubating re-`exec`s the
whole compiled action module into its persistent globals before calling main): the module's top level again, in a
process where TensorFlow is already imported, i.e. what an unguarded module-level model load would cost per request.

    .venv/bin/python scripts/openwhisk-overhead.py                        # 2000 requests at c=1 and c=20
    .venv/bin/python scripts/openwhisk-overhead.py --model-dir build/model --cold-starts 3 --reexec 5
"""

from __future__ import annotations

import argparse
import base64
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
NOOP = '''
def main(params):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}
'''


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_ab(url: str, payload: Path, content_type: str, requests: int, concurrency: int) -> tuple[float, float, int]:
    """(mean latency ms, requests per second, failed requests) of one ab run."""
    out = subprocess.run(["ab", "-q", "-n", str(requests), "-c", str(concurrency), "-p", str(payload), "-T",
                          content_type, url], capture_output=True, text=True, check=True, timeout=600).stdout
    mean = float(re.search(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)", out)[1])
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out)[1])
    failed = int(re.search(r"Failed requests:\s+(\d+)", out)[1]) + int(
        (re.search(r"Non-2xx responses:\s+(\d+)", out) or [0, 0])[1])
    return mean, rps, failed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--requests", type=int, default=2000, help="requests per ab run (default 2000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 20],
                        help="ab concurrency levels for the front (default 1 20)")
    parser.add_argument("--repetitions", type=int, default=3, help="interleaved runs per cell (default 3)")
    parser.add_argument("--payload-bytes", type=int, default=36_000,
                        help="POST body size, as the benchmark's 500x375 photo (default 36000)")
    parser.add_argument("--model-dir", type=Path, help="a model folder: also time cold starts of the real action")
    parser.add_argument("--cold-starts", type=int, default=3, help="cold starts with --model-dir (default 3)")
    parser.add_argument("--reexec", type=int, default=0,
                        help="with --model-dir: time this many 2018-style re-executions of the action module")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder with the processes' logs")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if shutil.which("ab") is None:
        raise SystemExit("ab (ApacheBench) is not on PATH: apt-get install -y apache2-utils")

    sys.path.insert(0, str(ROOT))
    from tests.fixtures_openwhisk import init_body, running, start_front, start_proxy, zip_of
    from tests.http_client import request

    work = Path(tempfile.mkdtemp(prefix="openwhisk-overhead-"))
    raw = os.urandom(args.payload_bytes)
    (work / "raw.bin").write_bytes(raw)
    headers = {"host": "127.0.0.1", "user-agent": "ApacheBench/2.3", "accept": "*/*", "content-type": "image/jpeg",
               "content-length": str(len(raw))}
    (work / "run.json").write_text(json.dumps({"value": {
        "__ow_body": base64.b64encode(raw).decode(), "__ow_method": "post", "__ow_headers": headers,
        "__ow_path": ""}, "namespace": "guest", "action_name": "/guest/predict", "activation_id": "0" * 32,
        "transaction_id": "0" * 32, "deadline": "0"}))
    (work / "action").mkdir()
    (work / "action" / "__main__.py").write_text(NOOP)
    proxy = start_proxy(work)
    assert request(proxy.url, "POST", "/init", body=init_body(zip_of(NOOP))).status == 200
    front = start_front(work, work / "action", "--memory-mb", "2048", "--user-memory-mb", "2048",
                        "--invocations-per-minute", "100000000", "--concurrent-invocations", "100000",
                        "--pause-grace-s", "0", "--access-log", "false")
    web = front.url + "/api/v1/web/guest/default/predict"
    results: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
    cpu: dict[int, float] = {}
    with running(proxy), running(front):
        cells = [("proxy", 1)] + [("front", c) for c in args.concurrency]
        for path, concurrency in cells:  # warm-up: the container's cold start, connections, caches
            url, body, ctype = (proxy.url + "/run", work / "run.json", "application/json") if path == "proxy" \
                else (web, work / "raw.bin", "image/jpeg")
            run_ab(url, body, ctype, min(200, args.requests), concurrency)
        for _ in range(args.repetitions):
            for path, concurrency in cells:
                url, body, ctype = (proxy.url + "/run", work / "run.json", "application/json") if path == "proxy" \
                    else (web, work / "raw.bin", "image/jpeg")
                before = cpu_seconds(front.process.pid)
                results.setdefault((path, concurrency), []).append(
                    run_ab(url, body, ctype, args.requests, concurrency))
                if path == "front":
                    cpu[concurrency] = cpu.get(concurrency, 0.0) + cpu_seconds(front.process.pid) - before
    print(f"{args.requests} requests per run, {args.repetitions} interleaved runs per cell (median run shown), "
          f"{args.payload_bytes}-byte POST, a new connection per request; load average before: "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'path':<8}{'c':>4}{'mean ms':>10}{'req/s':>10}{'adds ms':>10}{'front CPU ms/req':>18}{'failed':>8}")
    base = statistics.median(r[0] for r in results[("proxy", 1)])
    base_rps = statistics.median(r[1] for r in results[("proxy", 1)])
    for path, concurrency in cells:
        runs = results[(path, concurrency)]
        mean, rps = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        added = f"{mean - base:+.3f}" if path == "front" and concurrency == 1 else ""
        per_request = f"{1000 * cpu[concurrency] / (args.requests * args.repetitions):.3f}" if path == "front" else ""
        print(f"{path:<8}{concurrency:>4}{mean:>10.3f}{rps:>10.0f}{added:>10}{per_request:>18}"
              f"{sum(r[2] for r in runs):>8}")
    for concurrency in args.concurrency:
        rps = statistics.median(r[1] for r in results[("front", concurrency)])
        print(f"c={concurrency}: the container alone (proxy, c=1) serves {base_rps:.0f} req/s, through the front "
              f"{rps:.0f} req/s: {1000 / rps - 1000 / base_rps:+.3f} ms of service time per request")
    if args.model_dir:
        cold_starts(work, args.model_dir.resolve(), args.cold_starts)
    if args.model_dir and args.reexec:
        reexec_cost(args.model_dir.resolve(), args.reexec)
    if args.keep:
        print(f"logs: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


REEXEC = """
import json, sys, time
source = open(sys.argv[1]).read()
if sys.argv[3] == "unguarded":  # the module-level load as a 2018 action without the guard would have it
    source = source.replace('if "PREDICTOR" not in globals():', "if True:")
code = compile(source, "__main__.py", "exec")
scope = {"__name__": "__main__"}
start = time.perf_counter()
exec(code, scope)  # the /init of 2018: TensorFlow's import, the model load, the warm-up
first = time.perf_counter() - start
again = []
for _ in range(int(sys.argv[2])):  # each 2018 /run: the module again, then main(params)
    start = time.perf_counter()
    exec(code, scope)
    again.append(time.perf_counter() - start)
print(json.dumps({"first_s": first, "again_s": again}))
"""


def reexec_cost(model_dir: Path, count: int) -> None:
    """What the 2018 runtime's per-/run re-exec of an unguarded action module costs, in a warm process."""
    action = ROOT / "function" / "openwhisk" / "action" / "__main__.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MODEL_DIR": str(model_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for guard, warmup in (("unguarded", "3"), ("unguarded", "0"), ("guarded", "3")):
        done = subprocess.run([sys.executable, "-c", REEXEC, str(action), str(count), guard], capture_output=True,
                              text=True, env={**env, "WARMUP_CALLS": warmup}, timeout=900, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        again = [1000 * t for t in result["again_s"]]
        print(f"2018 re-exec per /run, {guard} model load, WARMUP_CALLS={warmup}: first exec "
              f"{1000 * result['first_s']:.0f} ms, then median {statistics.median(again):.1f} ms (min "
              f"{min(again):.1f}, max {max(again):.1f}) per request over {count}")


def cold_starts(work: Path, model_dir: Path, count: int) -> None:
    """Start a front with the real action `count` times; print each first prediction's parts."""
    import numpy as np

    from model.synth import jpeg_bytes, synth_photo
    from tests.fixtures_openwhisk import OPENWHISK_DIR, running, start_front
    from tests.http_client import request

    jpeg = jpeg_bytes(synth_photo("food", np.random.default_rng(1), (500, 375)))
    for i in range(count):
        front = start_front(work, OPENWHISK_DIR / "action", "--memory-mb", "768", MODEL_DIR=str(model_dir),
                            WARMUP_CALLS="3")
        with running(front):
            start = time.perf_counter()
            resp = request(front.url, "POST", "/api/v1/web/guest/default/predict", body=jpeg,
                           headers={"Content-Type": "image/jpeg"}, timeout=300)
            total = (time.perf_counter() - start) * 1000
            (event,) = front.events("activation")
        print(f"cold start {i + 1}: {resp.status}, {total:.0f} ms at the client = container start "
              f"{event['start_ms']:.0f} + /init {event['init_ms']:.0f} + /run {event['run_ms']:.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
