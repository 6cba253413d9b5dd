#!/usr/bin/env python3
"""What the OpenFaaS stand-ins add per request: the watchdog (of-watchdog mode=http) and the gateway hop in front
of it, each measured against calling the function's own server directly.

Starts, as local processes on 127.0.0.1, the python3-http template's server (Flask on waitress, 4 threads) with a
handler that answers a fixed 256-byte JSON at once, the watchdog in front of it, and the gateway in both
topologies (direct: gateway -> watchdog; provider: gateway -> faas-netes proxy -> watchdog). Then runs ApacheBench
(`ab`, a new connection per request as bench.yml does, POSTing a --payload-bytes body) against each path at each
concurrency, the paths interleaved within every repetition so that a busy moment of the machine hits them all.

Prints, per path and concurrency, the mean latency (ab's "Time per request (mean)", which is the mean response
time of a closed loop), the throughput, and what the path adds to the direct call: the watchdog's own cost is
`watchdog - direct`, the gateway's `gateway(direct) - watchdog`. It also prints the CPU time each proxy
process spent per request (from /proc), which a busy machine disturbs less than the latencies. The handler does no
work on purpose: the numbers are the proxies' cost, not a model's. Read them as upper bounds on a machine that
runs other things.

Run from the repository root: .venv/bin/python scripts/openfaas-overhead.py --requests 2000 --repetitions 3
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

UPSTREAM_HANDLER = '''
import json
BODY = json.dumps({"label": "food", "pad": " " * 220})

def handle(event, context):
    return {"statusCode": 200, "body": BODY, "headers": {"Content-Type": "application/json"}}
'''
PATHS = ("direct", "watchdog", "gateway-direct", "gateway-provider")
_MEAN = re.compile(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)")
_RPS = re.compile(r"Requests per second:\s+([\d.]+)")
_FAILED = re.compile(r"Failed requests:\s+(\d+)")
_NON2XX = re.compile(r"Non-2xx responses:\s+(\d+)")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of one process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_ab(url: str, payload: Path, requests: int, concurrency: int) -> tuple[float, float, int]:
    argv = ["ab", "-q", "-r", "-n", str(requests), "-c", str(concurrency), "-p", str(payload), "-T", "image/jpeg", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    mean, rps = _MEAN.search(done.stdout), _RPS.search(done.stdout)
    if done.returncode != 0 or not mean or not rps:
        raise SystemExit(f"ab failed on {url}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    failed = int(_FAILED.search(done.stdout).group(1))
    non2xx = _NON2XX.search(done.stdout)
    return float(mean.group(1)), float(rps.group(1)), failed + (int(non2xx.group(1)) if non2xx else 0)


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
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder with the processes' logs")
    args = parser.parse_args()
    if shutil.which("ab") is None:
        raise SystemExit("ab (ApacheBench) is not on PATH: apt-get install -y apache2-utils")

    sys.path.insert(0, str(ROOT))
    from tests.fixtures_openfaas import build_function, running, start_gateway, start_watchdog, wait_until
    from tests.fixtures_openfaas import port_open as is_open

    work = Path(tempfile.mkdtemp(prefix="openfaas-overhead-"))
    payload = work / "payload.bin"
    payload.write_bytes(os.urandom(args.payload_bytes))
    function_dir = build_function(work / "function", "http", UPSTREAM_HANDLER)
    watchdog = start_watchdog(work, "http", function_dir, prefix_logs="false")
    upstream_port = watchdog.upstream_port  # type: ignore[attr-defined]
    wait_until(lambda: is_open(upstream_port), 60, "the template's server listening")
    function = {"predict": watchdog.url}
    gateway_direct = start_gateway(work, function, OPENFAAS_GATEWAY_TOPOLOGY="direct")
    provider = start_gateway(work, function, role="provider")
    gateway_provider = start_gateway(work, {}, functions_provider_url=provider.url)
    urls = {
        "direct": f"http://127.0.0.1:{upstream_port}/",
        "watchdog": watchdog.url + "/",
        "gateway-direct": gateway_direct.url + "/function/predict",
        "gateway-provider": gateway_provider.url + "/function/predict",
    }
    results: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
    # CPU time each proxy process spends per request on the paths that cross it
    proxies = {"watchdog": watchdog.process.pid, "gateway": gateway_direct.process.pid,
               "faas-netes": provider.process.pid, "gateway(provider)": gateway_provider.process.pid}
    crosses = {"watchdog": "watchdog", "gateway": "gateway-direct", "faas-netes": "gateway-provider",
               "gateway(provider)": "gateway-provider"}
    cpu: dict[tuple[str, int], float] = {}
    with running(watchdog, gateway_direct, provider, gateway_provider):
        for concurrency in args.concurrency:
            for path in PATHS:  # warm-up: connections, pools, Python's caches
                run_ab(urls[path], payload, min(200, args.requests), concurrency)
            for _ in range(args.repetitions):
                for path in PATHS:
                    before = {name: cpu_seconds(pid) for name, pid in proxies.items()}
                    results.setdefault((path, concurrency), []).append(
                        run_ab(urls[path], payload, args.requests, concurrency))
                    for name, pid in proxies.items():
                        if crosses[name] == path:
                            cpu[(name, concurrency)] = cpu.get((name, concurrency), 0.0) + (
                                cpu_seconds(pid) - before[name])
    print(f"{args.requests} requests per run, {args.repetitions} interleaved runs per cell (median run shown), "
          f"{args.payload_bytes}-byte POST, a new connection per request; load average before: "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'path':<18}{'c':>4}{'mean ms':>10}{'req/s':>10}{'adds ms':>10}{'  over':<10}{'failed':>8}")
    for concurrency in args.concurrency:
        medians = {}
        for path in PATHS:
            runs = results[(path, concurrency)]
            mean = statistics.median(r[0] for r in runs)
            rps = statistics.median(r[1] for r in runs)
            medians[path] = mean
            base = {"watchdog": "direct", "gateway-direct": "watchdog", "gateway-provider": "watchdog"}.get(path)
            added = f"{mean - medians[base]:+.3f}" if base else ""
            print(f"{path:<18}{concurrency:>4}{mean:>10.3f}{rps:>10.0f}{added:>10}  {base or '':<8}"
                  f"{sum(r[2] for r in runs):>8}")
    print("CPU time per request of each proxy process (mean over all runs; ms):")
    for concurrency in args.concurrency:
        print(f"  c={concurrency}: " + ", ".join(
            f"{name} {1000 * cpu[(name, concurrency)] / (args.requests * args.repetitions):.3f}" for name in proxies))
    if args.keep:
        print(f"logs: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
