"""Helpers for the Knative tests and scripts/knative-overhead.py: run the activator (with the pod it starts: the
queue-proxy and a user container) and a queue-proxy alone, as real processes on 127.0.0.1.

Plain helpers rather than fixtures, so each test declares the processes it needs with the scope it wants.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.http_client import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
KNATIVE_DIR = REPO_ROOT / "function" / "knative"
RUNTIME_DIR = KNATIVE_DIR / "runtime"
FUNC_ROOT = KNATIVE_DIR / "predict"

# A user container that does what the query asks, so the front's rules are driven without a model. It listens
# only after PROBE_START_DELAY_S (a slow start), answers its readiness path /ready with 200, and reports how many
# requests it holds at once (`inflight`, `max_inflight`); ?sleep=S, ?status=N, ?exit (the process dies mid-call).
PROBE_USER = '''
import json, os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

time.sleep(float(os.environ.get("PROBE_START_DELAY_S", "0")))
LOCK = threading.Lock()
STATE = {"inflight": 0, "max_inflight": 0, "served": 0}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        body_len = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(body_len)
        if url.path == "/ready":
            code, body = 200, b"ok"
        else:
            with LOCK:
                STATE["inflight"] += 1
                STATE["max_inflight"] = max(STATE["max_inflight"], STATE["inflight"])
            if "exit" in q:
                os._exit(3)
            try:
                time.sleep(float(q.get("sleep", "0")))
            finally:
                with LOCK:
                    STATE["inflight"] -= 1
                    STATE["served"] += 1
            code = int(q.get("status", "200"))
            body = json.dumps({"pid": os.getpid(), "len": body_len, "path": url.path,
                               "proxy": self.headers.get("K-Proxy-Request"), **STATE}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
server.serve_forever()
'''


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Proc:
    """A program of the front as a real subprocess; stdout and stderr go to files in `log_dir`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, port: int,
                 cwd: Path | None = None) -> None:
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self.stdout_path, self.stderr_path = log_dir / f"{name}-{port}.out", log_dir / f"{name}-{port}.err"
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                    **env}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(argv, env=full_env, cwd=cwd or REPO_ROOT, stdout=out, stderr=err)

    def wait_listening(self, timeout_s: float = 30) -> Proc:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
            if port_open(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port} in {timeout_s} s:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def events(self, kind: str) -> list[dict]:
        """The JSON lines of stdout whose "event" is `kind`."""
        found = []
        for line in self.stdout_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("event") == kind:
                        found.append(record)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def probe_user_file(log_dir: Path) -> Path:
    path = log_dir / "probe_user.py"
    path.write_text(PROBE_USER)
    return path


def start_activator(log_dir: Path, cc: int = 0, timeout_s: float = 300, user: str = "probe",
                    initial_scale: int = 0, **env: str) -> Proc:
    """The activator on a free port, its pod on free ports. user="probe": PROBE_USER as the user container
    (readiness on /ready); "func" or "app": the real user containers. Returns once the activator listens."""
    port, queue_port, user_port = free_port(), free_port(), free_port()
    settings = {
        "ACTIVATOR_PORT": str(port), "ACTIVATOR_BIND_ADDRESS": "127.0.0.1", "QUEUE_SERVING_PORT": str(queue_port),
        "USER_PORT": str(user_port), "CONTAINER_CONCURRENCY": str(cc), "REVISION_TIMEOUT_SECONDS": str(timeout_s),
        "KNATIVE_INITIAL_SCALE": str(initial_scale), "KNATIVE_FUNC_ROOT": str(FUNC_ROOT),
        "KNATIVE_APP_ROOT": str(REPO_ROOT), "STOP_GRACE_S": "5",
    }
    if user == "probe":
        settings |= {"KNATIVE_USER_COMMAND": f"{sys.executable} {probe_user_file(log_dir)}",
                     "SERVING_READINESS_PROBE": json.dumps({"httpGet": {"path": "/ready", "port": user_port}})}
    else:
        settings["KNATIVE_USER_CONTAINER"] = user
    proc = Proc(f"activator-{user}-cc{cc}", [sys.executable, str(RUNTIME_DIR / "activator.py")], settings | env,
                log_dir, port)
    proc.queue_port, proc.user_port = queue_port, user_port  # type: ignore[attr-defined]
    return proc.wait_listening()


def start_queue_proxy(log_dir: Path, user_port: int, cc: int = 0, timeout_s: float = 300, **env: str) -> Proc:
    port = free_port()
    settings = {"QUEUE_SERVING_PORT": str(port), "USER_PORT": str(user_port), "CONTAINER_CONCURRENCY": str(cc),
                "REVISION_TIMEOUT_SECONDS": str(timeout_s),
                "SERVING_READINESS_PROBE": json.dumps({"httpGet": {"path": "/ready", "port": user_port}})}
    return Proc(f"queue-proxy-cc{cc}", [sys.executable, str(RUNTIME_DIR / "queue_proxy.py")], settings | env,
                log_dir, port).wait_listening()


def start_probe_user(log_dir: Path, **env: str) -> Proc:
    port = free_port()
    return Proc("probe-user", [sys.executable, str(probe_user_file(log_dir))], {"PORT": str(port), **env},
                log_dir, port)


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            proc.stop()
