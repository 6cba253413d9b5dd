"""Helpers for the Fission tests: the environment server and the router + executor as real local processes.

Plain helpers (not fixtures), so each test declares the processes it needs. Everything listens on 127.0.0.1 on
free ports. `write_probe` writes a tiny Fission function (no model) used for the slow, timeout and connection
cases; the real prediction function is function/fission/package/handler.py.
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
from typing import Any

from tests.http_client import free_port, request

REPO_ROOT = Path(__file__).resolve().parent.parent
FISSION_DIR = REPO_ROOT / "function" / "fission"
ENV_SERVER = FISSION_DIR / "environment" / "server.py"
ROUTER_MAIN = FISSION_DIR / "runtime" / "main.py"
START_TIMEOUT_S = 60

PROBE = '''
import os
import time

from flask import jsonify, request

IMPORTED_AT = time.time()
time.sleep(float(os.environ.get("PROBE_IMPORT_SLEEP", "0")))  # a slow module-level load, like a model's


def _client_ports():
    """The peer ports of this process's established connections to its own port: what the server sees."""
    port = int(os.environ["RUNTIME_PORT"])
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            cols = line.split()
            if cols[9] in inodes and cols[3] == "01" and int(cols[1].split(":")[1], 16) == port:
                ports.append(int(cols[2].split(":")[1], 16))
    return sorted(ports)


def main():
    sleep = float(request.args.get("sleep", "0"))
    started = time.time()
    if sleep:
        time.sleep(sleep)
    return jsonify(pid=os.getpid(), imported_at=IMPORTED_AT, client_ports=_client_ports(), started=started,
                   body_len=len(request.get_data()), path=request.path, method=request.method)
'''


def write_probe(folder: Path) -> Path:
    """A package folder holding probe.py (entrypoint probe.main)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe.py").write_text(PROBE)
    return folder


class Process:
    """A server subprocess with its stdout/stderr in files; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1",
                    "TF_CPP_MIN_LOG_LEVEL": "2", **env}
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(argv, env=full_env, cwd=log_dir, stdout=out, stderr=err)

    def wait_http(self, url: str, path: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.process.args} exited with {self.process.returncode}:\n"
                                   f"{self.stderr()[-3000:]}")
            with contextlib.suppress(OSError):
                if request(url, "GET", path, timeout=2).status == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{url}{path} did not answer 200 in {timeout_s} s:\n{self.stderr()[-3000:]}")

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
        """SIGTERM; return how long the process took to exit."""
        start = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return time.monotonic() - start


class EnvServer(Process):
    """function/fission/environment/server.py on 127.0.0.1:<port> with its own USERFUNCVOL."""

    def __init__(self, log_dir: Path, port: int | None = None, wait: bool = True, **env: str) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.userfunc = log_dir / f"userfunc-{self.port}"
        self.userfunc.mkdir(parents=True, exist_ok=True)
        super().__init__([sys.executable, str(ENV_SERVER)],
                         {"RUNTIME_PORT": str(self.port), "RUNTIME_BIND": "127.0.0.1",
                          "USERFUNCVOL": str(self.userfunc), **env}, log_dir, f"env-{self.port}")
        if wait:
            self.wait_http(self.url, "/healthz")

    def specialize_v2(self, filepath: Path, function_name: str, timeout: float = 120):
        body = json.dumps({"filepath": str(filepath), "functionName": function_name}).encode()
        return request(self.url, "POST", "/v2/specialize", body=body,
                       headers={"Content-Type": "application/json"}, timeout=timeout)


def prespecialized_state(userfunc: Path, filepath: Path, function_name: str) -> None:
    """What a v2 specialization leaves in USERFUNCVOL (state.json): an env started on it loads the function."""
    userfunc.mkdir(parents=True, exist_ok=True)
    (userfunc / "state.json").write_text(json.dumps({"filepath": str(filepath), "functionName": function_name}))


class FissionRouter(Process):
    """function/fission/runtime/main.py (router + executor) on 127.0.0.1:<port>; `args` are its flags."""

    def __init__(self, log_dir: Path, *args: str, wait: bool = True, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        name = f"router-{self.port}"
        super().__init__([sys.executable, str(ROUTER_MAIN), "--bind", "127.0.0.1", "--port", str(self.port),
                          "--work-dir", str(log_dir / f"work-{self.port}"), *args], env or {}, log_dir, name)
        if wait:
            self.wait_http(self.url, "/router-healthz")


@contextlib.contextmanager
def running(proc: Process) -> Iterator[Process]:
    try:
        yield proc
    finally:
        proc.stop()


def env_children(pid: int) -> list[int]:
    """The pids of environment processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and "server.py" in (entry / "cmdline").read_text(errors="replace"):
                found.append(int(entry.name))
    return found
