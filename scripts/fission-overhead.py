#!/usr/bin/env python3
"""The Fission router hop's own cost per request: the same trivial function called directly and through the router.

Starts, on 127.0.0.1 only, one environment (function/fission/environment/server.py) specialized with a function
that does nothing but read the body, and one router per mode in front of it (function/fission/runtime/main.py
--executor static). Each request opens a new connection, as ApacheBench without -k does. The added latency of a
mode is its mean (and median) latency minus the direct one at the same concurrency; the env is serial, so at c=20
most of every latency is queueing and the difference is what the hop adds per request to that queue.

    .venv/bin/python scripts/fission-overhead.py                  # 2000 requests at c=1 and c=20, both modes
    .venv/bin/python scripts/fission-overhead.py --requests 500 --concurrency 1 5 --modes 2018
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_SERVER = ROOT / "function" / "fission" / "environment" / "server.py"
ROUTER = ROOT / "function" / "fission" / "runtime" / "main.py"
NOOP = "from flask import request\n\n\ndef main():\n    request.get_data()\n    return 'ok'\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ok(port: int, path: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"127.0.0.1:{port}{path} did not answer 200 in {timeout_s} s")


def one(port: int, body: bytes) -> float:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/", body=body, headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"a request through port {port} got {resp.status}")
    return (time.perf_counter() - start) * 1000


def run(port: int, body: bytes, requests: int, concurrency: int) -> list[float]:
    for _ in range(min(50, requests)):  # warm-up
        one(port, body)
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: one(port, body), range(requests)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--requests", type=int, default=2000, help="requests per path and concurrency")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 20], help="client concurrencies")
    p.add_argument("--modes", nargs="+", choices=("2018", "current"), default=["2018", "current"],
                   help="router modes measured")
    p.add_argument("--body-bytes", type=int, default=36 * 1024, help="request body size (bench.yml's photo: 36 KB)")
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = p.parse_args()

    body = os.urandom(args.body_bytes)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="fission-overhead-") as tmp:
        work = Path(tmp)
        (work / "pkg").mkdir()
        (work / "pkg" / "noop.py").write_text(NOOP)
        (work / "uf").mkdir()
        state = {"filepath": str(work / "pkg"), "functionName": "noop.main"}
        (work / "uf" / "state.json").write_text(json.dumps(state))  # the env loads it at start
        env_port = free_port()
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        try:
            procs.append(subprocess.Popen(
                [sys.executable, str(ENV_SERVER)],
                env={**os.environ, "RUNTIME_PORT": str(env_port), "RUNTIME_BIND": "127.0.0.1",
                     "USERFUNCVOL": str(work / "uf")}, **quiet))
            wait_ok(env_port, "/healthz")
            routers = {}
            for mode in args.modes:
                port = free_port()
                procs.append(subprocess.Popen(
                    [sys.executable, str(ROUTER), "--executor", "static", "--function-address",
                     f"127.0.0.1:{env_port}", "--router-mode", mode, "--bind", "127.0.0.1", "--port", str(port),
                     "--access-log", "false", "--work-dir", str(work / "router")], **quiet))
                wait_ok(port, "/router-healthz")
                routers[mode] = port
            rows = []
            print(f"{'concurrency':>11} {'path':>14} {'mean ms':>9} {'p50 ms':>8} {'added mean':>11} {'added p50':>10}")
            for c in args.concurrency:
                direct = run(env_port, body, args.requests, c)
                base_mean, base_p50 = statistics.fmean(direct), statistics.median(direct)
                print(f"{c:>11} {'direct':>14} {base_mean:>9.3f} {base_p50:>8.3f}")
                rows.append({"concurrency": c, "path": "direct", "mean_ms": base_mean, "p50_ms": base_p50})
                for mode, port in routers.items():
                    lat = run(port, body, args.requests, c)
                    mean, p50 = statistics.fmean(lat), statistics.median(lat)
                    print(f"{c:>11} {'router ' + mode:>14} {mean:>9.3f} {p50:>8.3f} {mean - base_mean:>+11.3f} "
                          f"{p50 - base_p50:>+10.3f}")
                    rows.append({"concurrency": c, "path": f"router-{mode}", "mean_ms": mean, "p50_ms": p50,
                                 "added_mean_ms": mean - base_mean, "added_p50_ms": p50 - base_p50})
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
