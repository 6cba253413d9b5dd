"""Helpers for the OpenFaaS tests and scripts/openfaas-overhead.py: lay out a function as faas-cli build does
(template + handler folder), and run the real watchdog, gateway and function as processes on 127.0.0.1.

Plain helpers rather than fixtures, so each test declares the processes it needs with the scope it wants.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OPENFAAS_DIR = REPO_ROOT / "function" / "openfaas"
RUNTIME_DIR = OPENFAAS_DIR / "runtime"
TEMPLATES = {"http": OPENFAAS_DIR / "template" / "python3-http", "classic": OPENFAAS_DIR / "template" / "python3"}
HANDLERS = {"http": OPENFAAS_DIR / "predict-http", "classic": OPENFAAS_DIR / "predict-classic"}
START_TIMEOUT_S = 180  # TensorFlow import + model load + warm-up, on 2 busy cores

# A python3-http handler that does what the query asks: tests drive the watchdog's rules with it, not the model.
# PROBE_START_DELAY_S delays the import (the server listens only after it), as TensorFlow's import does.
PROBE_HTTP = '''
import json, os, time
time.sleep(float(os.environ.get("PROBE_START_DELAY_S", "0")))

def handle(event, context):
    q = event.query
    action = q.get("action", "echo")
    if action == "sleep":
        time.sleep(float(q.get("s", "1")))
    if action == "status":
        return {"statusCode": int(q.get("code", "200")), "body": "status"}
    if action == "exit":
        os._exit(int(q.get("code", "3")))
    from flask import request
    seen = {"pid": os.getpid(), "path": event.path, "method": event.method, "len": len(event.body),
            "query": dict(q), "peer_port": request.environ.get("REMOTE_PORT"),
            "headers": {k.lower(): v for k, v in event.headers.items()}}
    return {"statusCode": 200, "body": json.dumps(seen), "headers": {"Content-Type": "application/json"}}
'''

# A classic python3 handler driven by the query string (Http_Query), for the same purpose.
PROBE_CLASSIC = '''
import json, os, sys, time
from urllib.parse import parse_qs

def handle(req):
    q = {k: v[0] for k, v in parse_qs(os.environ.get("Http_Query", "")).items()}
    action = q.get("action", "echo")
    if action == "sleep":
        if os.environ.get("PROBE_PID_DIR"):
            open(os.path.join(os.environ["PROBE_PID_DIR"], str(os.getpid())), "w").close()
        time.sleep(float(q.get("s", "1")))
    if action == "exit":
        sys.stdout.write("partial output\\n")
        sys.exit(int(q.get("code", "3")))
    if action == "stderr":
        sys.stderr.write("to stderr\\n")
    return json.dumps({"pid": os.getpid(), "len": len(req), "method": os.environ.get("Http_Method"),
                       "content_type": os.environ.get("Http_Content_Type")})
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_function(dest: Path, mode: str, handler_source: str | None = None) -> Path:
    """faas-cli build's layout: the template's index.py, and the handler folder copied in as `function/`.
    `handler_source` replaces the real prediction handler (function/openfaas/predict-<mode>/handler.py)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(TEMPLATES[mode] / "index.py", dest / "index.py")
    (dest / "function").mkdir(exist_ok=True)
    if handler_source is None:
        shutil.copy(HANDLERS[mode] / "handler.py", dest / "function" / "handler.py")
    else:
        (dest / "function" / "handler.py").write_text(handler_source)
    return dest


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Proc:
    """One of the programs as a real subprocess; stdout and stderr go to files in `log_dir`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path | None = None,
                 port: int | None = None) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.stdout_path = log_dir / f"{name}-{port}.out"
        self.stderr_path = log_dir / f"{name}-{port}.err"
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                    **env}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(argv, env=full_env, cwd=cwd or REPO_ROOT, stdout=out, stderr=err)

    def wait_listening(self, timeout_s: float = 30) -> Proc:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
            if self.port and port_open(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port} in {timeout_s} s:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_watchdog(log_dir: Path, mode: str, function_dir: Path, upstream_port: int | None = None,
                   **env: str) -> Proc:
    """The watchdog (mode http or classic) serving `function_dir` on a free port, its lock file in its own TMPDIR.
    Returns once the watchdog listens: in http mode that is before the function does."""
    port = free_port()
    tmp = log_dir / f"watchdog-tmp-{port}"
    tmp.mkdir()
    settings = {"mode": mode, "fprocess": f"{sys.executable} index.py", "port": str(port), "TMPDIR": str(tmp),
                "WATCHDOG_BIND_ADDRESS": "127.0.0.1", "healthcheck_interval": "0"}
    if mode == "http":
        upstream_port = upstream_port or free_port()
        settings |= {"upstream_url": f"http://127.0.0.1:{upstream_port}", "FUNCTION_PORT": str(upstream_port),
                     "FUNCTION_BIND_ADDRESS": "127.0.0.1"}
    proc = Proc("watchdog", [sys.executable, str(RUNTIME_DIR / "watchdog.py")], settings | env, log_dir,
                cwd=function_dir, port=port)
    proc.lock = tmp / ".lock"  # type: ignore[attr-defined]
    proc.upstream_port = upstream_port  # type: ignore[attr-defined]
    return proc.wait_listening()


def start_gateway(log_dir: Path, functions: dict[str, str], role: str = "gateway", **env: str) -> Proc:
    """The gateway (or, role="provider", faas-netes's proxy) on a free port, FUNCTION_UPSTREAMS from `functions`."""
    port = free_port()
    settings = {"FUNCTION_UPSTREAMS": ",".join(f"{k}={v}" for k, v in functions.items())}
    argv = [sys.executable, str(RUNTIME_DIR / "gateway.py"), "--role", role, "--port", str(port), "--bind",
            "127.0.0.1"]
    return Proc(role, argv, settings | env, log_dir, port=port).wait_listening()


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            proc.stop()


def wait_until(check, timeout_s: float, what: str, poll_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            value = check()
            if value:
                return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what} did not happen within {timeout_s} s")
