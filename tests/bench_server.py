"""A small real HTTP service shaped like the project's two serving platforms, for the benchmark driver's tests.

POST any path except /metrics: "predicts" by sleeping --delay-ms, answers a fixed-length (256-character)
JSON result with `prediction_ms`, and prints one `{"event": "prediction", ...}` line, as model/inference.py's
log_line does — to stdout, or appended to --log. GET /metrics: a Prometheus histogram of request time
(`bench_request_duration_seconds`) plus a series for /metrics itself, which the driver must ignore.
--startup-delay-s delays listening (a cold start); --hang-nth makes the n-th prediction take --hang-s.
It stops on SIGTERM, also as PID 1 in a container (where the default action would be to ignore it).

Standard library only: it runs in the bare base image as well as on the host.
"""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import sys
import threading
import time

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
RESULT_LENGTH = 256


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * len(BUCKETS)
        self.metrics_scrapes = 0
        self.seen = 0

    def observe(self, seconds: float) -> None:
        with self.lock:
            self.count += 1
            self.total += seconds
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1

    def render(self) -> str:
        with self.lock:
            self.metrics_scrapes += 1
            lines = ["# HELP bench_request_duration_seconds Time to serve a prediction.",
                     "# TYPE bench_request_duration_seconds histogram"]
            for bound, n in zip(BUCKETS, self.buckets, strict=True):
                lines.append(f'bench_request_duration_seconds_bucket{{le="{bound}",path="/predict"}} {n}')
            lines.append(f'bench_request_duration_seconds_bucket{{le="+Inf",path="/predict"}} {self.count}')
            lines.append(f'bench_request_duration_seconds_sum{{path="/predict"}} {self.total}')
            lines.append(f'bench_request_duration_seconds_count{{path="/predict"}} {self.count}')
            # a scrape series that must not count as server time of the predictions
            lines.append(f'bench_request_duration_seconds_sum{{path="/metrics"}} {self.metrics_scrapes * 5.0}')
            lines.append(f'bench_request_duration_seconds_count{{path="/metrics"}} {self.metrics_scrapes}')
            return "\n".join(lines) + "\n"


def make_handler(args: argparse.Namespace, state: State, log) -> type[http.server.BaseHTTPRequestHandler]:
    log_lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, state.render().encode(), "text/plain; version=0.0.4")
            else:
                self._send(404, b"not found\n", "text/plain")

        def do_POST(self) -> None:
            started = time.perf_counter()
            data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.seen += 1
                n = state.seen
            time.sleep(args.delay_ms / 1000.0)
            if args.hang_nth and n == args.hang_nth:
                time.sleep(args.hang_s)
            prediction_ms = (time.perf_counter() - started) * 1000.0
            result = {"label": "food", "prediction_ms": round(prediction_ms, 3), "backend": "test",
                      "bytes": len(data), "pad": ""}
            result["pad"] = " " * (RESULT_LENGTH - len(json.dumps(result)))
            line = json.dumps({"event": "prediction", "platform": args.platform, "ts": round(time.time(), 6),
                               "label": "food", "prediction_ms": result["prediction_ms"], "backend": "test"})
            with log_lock:
                log.write(line + "\n")
                log.flush()
            state.observe(time.perf_counter() - started)  # before replying, so a scrape right after sees it
            self._send(200, json.dumps(result).encode(), "application/json")

        def log_message(self, format: str, *a: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--platform", default="container")
    parser.add_argument("--delay-ms", type=float, default=2.0)
    parser.add_argument("--log", help="append prediction lines here instead of stdout")
    parser.add_argument("--startup-delay-s", type=float, default=0.0)
    parser.add_argument("--hang-nth", type=int, default=0)
    parser.add_argument("--hang-s", type=float, default=3.0)
    args = parser.parse_args()
    log = open(args.log, "a", encoding="utf-8") if args.log else sys.stdout
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(args.startup_delay_s)
    http.server.ThreadingHTTPServer.request_queue_size = 128
    server = http.server.ThreadingHTTPServer((args.bind, args.port), make_handler(args, State(), log))
    server.daemon_threads = True
    print(json.dumps({"event": "listening", "port": args.port}), flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
