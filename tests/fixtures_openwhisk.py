"""Helpers for the OpenWhisk tests and scripts/openwhisk-overhead.py: the action-loop proxy and the front
(controller + invoker) as real processes on 127.0.0.1, and a probe action that does what its params ask.

Plain helpers rather than fixtures, so each test declares the processes it needs with the scope it wants.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
OPENWHISK_DIR = REPO_ROOT / "function" / "openwhisk"
RUNTIME_DIR = OPENWHISK_DIR / "runtime"
SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
# the python runtime image's settings (core/python311Action/Dockerfile), as function/openwhisk/Dockerfile sets them
RUNTIME_ENV = {"OW_WAIT_FOR_ACK": "1", "OW_LOG_INIT_ERROR": "1", "OW_EXECUTION_ENV": "openwhisk/action-python-v3.11",
               "OW_COMPILER": str(RUNTIME_DIR / "compile.py")}

# An action driven by its params: tests drive the proxy's and the front's rules with it, not the model.
PROBE = '''
import os, sys, time
LOADED_AT = time.time()
time.sleep(float(os.environ.get("PROBE_INIT_SLEEP", "0")))  # a slow module-level load, like a model's


def main(params):
    mode = params.get("mode", "echo")
    if mode == "sleep":
        time.sleep(float(params.get("s", 1)))
    if mode == "string":
        return "not a dictionary"
    if mode == "raise":
        raise ValueError("the probe failed")
    if mode == "exit":
        os._exit(3)
    if mode == "http":
        return {"statusCode": int(params.get("code", 200)), "headers": {"Content-Type": "application/json"},
                "body": params.get("body", "{}")}
    print("probe stdout", params.get("tag", ""))
    print("probe stderr", params.get("tag", ""), file=sys.stderr)
    return {"pid": os.getpid(), "ppid": os.getppid(), "loaded_at": LOADED_AT, "params": params, "started": time.time(),
            "ow_env": {k: v for k, v in os.environ.items() if k.startswith("__OW_")},
            "env_keys": sorted(os.environ)}
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def zip_of(source: str, name: str = "__main__.py") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, source)
    return buffer.getvalue()


def init_body(code: bytes | str, main: str = "main", env: dict[str, str] | None = None) -> bytes:
    """POST /init's body: a zip goes base64-encoded with binary true, a source as text."""
    if isinstance(code, bytes):
        value = {"code": base64.b64encode(code).decode(), "binary": True, "main": main}
    else:
        value = {"code": code, "binary": False, "main": main}
    return json.dumps({"value": {**value, "env": env or {}}}).encode()


def write_probe(folder: Path) -> Path:
    """An action folder (what the front zips) holding the probe as __main__.py."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__main__.py").write_text(PROBE)
    return folder


class Proc:
    """A server subprocess with its stdout/stderr in files; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, port: int,
                 cwd: Path | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.out_path, self.err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                    **RUNTIME_ENV, **env}
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(argv, env=full_env, cwd=cwd or log_dir, stdout=out, stderr=err)

    def wait_listening(self, timeout_s: float = 30) -> Proc:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.process.args} exited with {self.process.returncode}:\n"
                                   f"{self.stderr()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"port {self.port} did not listen in {timeout_s} s:\n{self.stderr()[-3000:]}")

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON lines {"event": name, ...} printed so far."""
        found = []
        for line in self.stdout().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("event") == name:
                        found.append(record)
        return found

    def stop(self, timeout_s: float = 15) -> float:
        start = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return time.monotonic() - start


def start_proxy(log_dir: Path, **env: str) -> Proc:
    """runtime/proxy.py alone: one action container's server."""
    port = free_port()
    return Proc(f"proxy-{port}", [sys.executable, str(RUNTIME_DIR / "proxy.py"), "--bind", "127.0.0.1", "--port",
                                  str(port), "--action-dir", str(log_dir / f"action-{port}")], env, log_dir,
                port).wait_listening()


def start_front(log_dir: Path, action_dir: Path, *args: str, **env: str) -> Proc:
    """runtime/controller.py (controller + invoker) serving the action in `action_dir`; `args` are its flags."""
    port = free_port()
    argv = [sys.executable, str(RUNTIME_DIR / "controller.py"), "--bind", "127.0.0.1", "--port", str(port),
            "--action-dir", str(action_dir), "--work-dir", str(log_dir / f"work-{port}"), *args]
    return Proc(f"front-{port}", argv, env, log_dir, port, cwd=RUNTIME_DIR).wait_listening()


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop()


def process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, T when stopped ...), None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]
