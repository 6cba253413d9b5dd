"""The serving container's own output during a run, from wherever it lives.

Both services print one JSON line per prediction (`{"event": "prediction", "prediction_ms": ...}`, see
model/inference.py log_line). A log source marks where a run starts and, after it, writes the lines
printed since then into the run folder: server.log (stdout) and server.stderr.log (stderr, when the
source keeps the streams apart). Sources: `docker` (docker logs --since/--until; the local profile),
`kubectl` (kubectl logs --since-time, cut at the end time; clusters), `file` (a file the server appends
to; servers outside containers, the tests), `none`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from analysis.bench.config import PlatformConfig

STDOUT_LOG = "server.log"
STDERR_LOG = "server.stderr.log"
COMMAND_TIMEOUT_S = 60


@dataclass
class Mark:
    epoch: float
    file_offset: int = 0


class LogSource(Protocol):
    name: str

    def mark(self) -> Mark: ...

    def collect(self, since: Mark, out_dir: Path) -> dict[str, Any]: ...


def _epoch_arg(epoch: float) -> str:
    """Docker's --since/--until take `seconds.nanoseconds`."""
    seconds = int(epoch)
    return f"{seconds}.{round((epoch - seconds) * 1e9):09d}"


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class DockerLogs:
    name = "docker"

    def __init__(self, container: str, docker_host: str) -> None:
        self.container = container
        self.env = {**os.environ, "DOCKER_HOST": docker_host}

    def mark(self) -> Mark:
        return Mark(time.time())

    def collect(self, since: Mark, out_dir: Path) -> dict[str, Any]:
        until = time.time()
        argv = ["docker", "logs", "--since", _epoch_arg(since.epoch), "--until", _epoch_arg(until), self.container]
        with open(out_dir / STDOUT_LOG, "wb") as out, open(out_dir / STDERR_LOG, "wb") as err:
            try:
                proc = subprocess.run(argv, stdout=out, stderr=err, env=self.env, timeout=COMMAND_TIMEOUT_S,
                                      check=False)
            except FileNotFoundError:
                return {"source": self.name, "error": "the docker command is not on PATH"}
            except subprocess.TimeoutExpired:
                return {"source": self.name, "error": f"docker logs took over {COMMAND_TIMEOUT_S} s"}
        info: dict[str, Any] = {"source": self.name, "argv": argv, "since_utc": _utc(since.epoch),
                                "until_utc": _utc(until), "returncode": proc.returncode}
        if proc.returncode != 0:
            info["error"] = (out_dir / STDERR_LOG).read_text(errors="replace").strip()[-500:]
        return info


class KubectlLogs:
    """kubectl logs has --since-time but no --until: lines are fetched with timestamps and cut at the end."""

    name = "kubectl"

    def __init__(self, target: str, namespace: str | None, context: str | None, kubeconfig: str | None = None,
                 binary: str = "kubectl") -> None:
        self.target = target.split()
        self.namespace = namespace
        self.context = context
        self.kubeconfig = kubeconfig
        self.binary = binary

    def mark(self) -> Mark:
        return Mark(time.time())

    def collect(self, since: Mark, out_dir: Path) -> dict[str, Any]:
        until = time.time()
        argv = [self.binary, "logs", *self.target, f"--since-time={_utc(since.epoch)}", "--timestamps=true",
                "--all-containers=true"]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.namespace:
            argv += ["--namespace", self.namespace]
        if self.context:
            argv += ["--context", self.context]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)
        except FileNotFoundError:
            return {"source": self.name, "error": "the kubectl command is not on PATH"}
        except subprocess.TimeoutExpired:
            return {"source": self.name, "error": f"kubectl logs took over {COMMAND_TIMEOUT_S} s"}
        kept = []
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            stamp, _, text = line.partition(" ")
            try:
                when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                kept.append(line)
                continue
            if when <= until:
                kept.append(text)
        (out_dir / STDOUT_LOG).write_text("".join(f"{ln}\n" for ln in kept))
        (out_dir / STDERR_LOG).write_bytes(proc.stderr)
        info: dict[str, Any] = {"source": self.name, "argv": argv, "since_utc": _utc(since.epoch),
                                "until_utc": _utc(until), "returncode": proc.returncode}
        if proc.returncode != 0:
            info["error"] = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        return info


class FileLogs:
    """Lines a server appends to a file: everything written after the mark's byte offset."""

    name = "file"

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def mark(self) -> Mark:
        try:
            offset = self.path.stat().st_size
        except FileNotFoundError:
            offset = 0
        return Mark(time.time(), offset)

    def collect(self, since: Mark, out_dir: Path) -> dict[str, Any]:
        until = time.time()
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(since.file_offset if size >= since.file_offset else 0)  # truncated: read it all
                data = f.read()
        except FileNotFoundError:
            return {"source": self.name, "error": f"log file {self.path} does not exist"}
        (out_dir / STDOUT_LOG).write_bytes(data)
        return {"source": self.name, "path": str(self.path), "since_utc": _utc(since.epoch), "until_utc": _utc(until),
                "offset": since.file_offset}


class NoLogs:
    name = "none"

    def mark(self) -> Mark:
        return Mark(time.time())

    def collect(self, since: Mark, out_dir: Path) -> dict[str, Any]:
        return {"source": self.name}


def log_source(platform: PlatformConfig, docker_host: str) -> LogSource:
    if platform.log_source == "docker" and platform.container:
        return DockerLogs(platform.container, docker_host)
    group = platform.kubectl
    if platform.log_source == "kubectl" and group is not None and group.target:
        return KubectlLogs(group.target, group.namespace, group.context, group.kubeconfig, group.bin)
    if platform.log_source == "file" and platform.log_file:
        return FileLogs(platform.log_file)
    return NoLogs()


def prediction_records(run_dir: Path) -> list[dict[str, Any]]:
    """The `{"event": "prediction", ...}` JSON lines in a run folder's server logs, in file order."""
    records = []
    for name in (STDOUT_LOG, STDERR_LOG):
        path = run_dir / name
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            start = line.find("{")
            if start < 0:
                continue
            try:
                record = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("event") == "prediction":
                records.append(record)
    return records
