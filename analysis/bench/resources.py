"""CPU and memory of a serving container, sampled in a background thread while ab runs.

Each sample records cumulative CPU time (ns) and memory as the source reports it; `finalize` turns
consecutive samples into CPU % of one core, so resources.jsonl stays the raw record. Memory is the working
set, as `docker stats` shows it: usage minus inactive page cache (file pages the kernel may drop).

Sources: `cgroup` (the cgroup v1 or v2 files of the container's main process, read directly: any sampling
period, and the numbers `docker stats` shows), `docker` (Engine API stats over the socket: the daemon
collects them once a second, so a request waits up to 1 s and the period cannot be shorter; each sample is
timed by the daemon's own `read` stamp), `auto` (cgroup when this machine can see the container's cgroup,
else docker: the default for a platform with a container), `proc` (a process tree's /proc/<pid>/stat: for
servers outside containers), `none`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from analysis.bench.client import DockerError, docker_inspect, docker_stats
from analysis.bench.config import PlatformConfig

RESOURCES_FILE = "resources.jsonl"
CGROUP_ROOT = Path("/sys/fs/cgroup")
_NO_LIMIT = 1 << 60  # cgroup v1 reports "no limit" as a number near 2**63


class ResourceError(RuntimeError):
    """A resource source cannot be read; the message says which file or API call."""


class ResourceSource(Protocol):
    name: str

    def sample(self) -> dict[str, Any]: ...


class DockerStatsSource:
    name = "docker"

    def __init__(self, container: str, docker_host: str) -> None:
        self.container = container
        self.docker_host = docker_host

    def sample(self) -> dict[str, Any]:
        try:
            stats = docker_stats(self.docker_host, self.container)
        except DockerError as exc:
            raise ResourceError(str(exc)) from None
        cpu = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage")
        memory = stats.get("memory_stats", {})
        usage = memory.get("usage")
        inner = memory.get("stats", {})
        inactive = inner.get("inactive_file", inner.get("total_inactive_file", 0))
        if cpu is None or usage is None:
            raise ResourceError(f"container {self.container} is not running (Docker returned no CPU/memory stats)")
        return {
            "read_epoch": _rfc3339_epoch(stats.get("read")),
            "cpu_usage_ns": int(cpu),
            "mem_bytes": int(usage) - int(inactive or 0),
            "mem_usage_bytes": int(usage),
            "mem_limit_bytes": memory.get("limit"),
            "online_cpus": stats.get("cpu_stats", {}).get("online_cpus"),
        }


def _rfc3339_epoch(stamp: str | None) -> float | None:
    """Docker's `read` (2026-11-28T11:41:03.460712345Z) as epoch seconds; None if absent or zero."""
    if not stamp or stamp.startswith("0001-"):
        return None
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        base = datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return None
    return base + (float("0." + frac) if frac.isdigit() else 0.0)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ResourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _stat_field(path: Path, key: str) -> int | None:
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


class CgroupSource:
    """The cgroup of a process (a container's main process when `container` is given)."""

    name = "cgroup"

    def __init__(self, pid: int | None = None, container: str | None = None, docker_host: str | None = None,
                 root: Path = CGROUP_ROOT) -> None:
        if pid is None:
            if not (container and docker_host):
                raise ResourceError("the cgroup source needs a pid or a container")
            try:
                pid = int(docker_inspect(docker_host, container)["State"]["Pid"])
            except DockerError as exc:
                raise ResourceError(str(exc)) from None
            if not pid:
                raise ResourceError(f"container {container} is not running")
        self.pid = pid
        self.root = root
        self._resolve()

    def _resolve(self) -> None:
        lines = _read(Path(f"/proc/{self.pid}/cgroup")).splitlines()
        self.v2 = (self.root / "cgroup.controllers").exists()
        if self.v2:
            path = next((ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")), None)
            if path is None:
                raise ResourceError(f"/proc/{self.pid}/cgroup has no cgroup v2 entry")
            self.cpu_dir = self.mem_dir = self.root / path.lstrip("/")
            return
        by_controller = {}
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(","):
                by_controller[c] = (controllers, path.lstrip("/"))
        if "cpuacct" not in by_controller or "memory" not in by_controller:
            raise ResourceError(f"/proc/{self.pid}/cgroup lists no cpuacct or memory controller (cgroup v1)")
        self.cpu_dir = self._v1_dir("cpuacct", *by_controller["cpuacct"])
        self.mem_dir = self._v1_dir("memory", *by_controller["memory"])

    def _v1_dir(self, controller: str, mount: str, path: str) -> Path:
        for name in (mount, controller, "cpu,cpuacct", "cpuacct,cpu"):
            candidate = self.root / name / path
            if candidate.is_dir():
                return candidate
        raise ResourceError(f"no {controller} cgroup directory for {path!r} under {self.root}")

    def sample(self) -> dict[str, Any]:
        if self.v2:
            usage_usec = _stat_field(self.cpu_dir / "cpu.stat", "usage_usec")
            cpu_ns = None if usage_usec is None else usage_usec * 1000
            usage = int(_read(self.mem_dir / "memory.current"))
            limit_text = _read(self.mem_dir / "memory.max")
            limit = None if limit_text == "max" else int(limit_text)
            inactive = _stat_field(self.mem_dir / "memory.stat", "inactive_file") or 0
        else:
            cpu_ns = int(_read(self.cpu_dir / "cpuacct.usage"))
            usage = int(_read(self.mem_dir / "memory.usage_in_bytes"))
            limit = int(_read(self.mem_dir / "memory.limit_in_bytes"))
            limit = None if limit >= _NO_LIMIT else limit
            inactive = _stat_field(self.mem_dir / "memory.stat", "total_inactive_file") or 0
        return {"cpu_usage_ns": cpu_ns, "mem_bytes": usage - inactive, "mem_usage_bytes": usage,
                "mem_limit_bytes": limit}


class ProcSource:
    """A process and all its descendants: CPU from utime+stime (+ reaped children), memory as summed RSS."""

    name = "proc"
    _ticks = os.sysconf("SC_CLK_TCK")
    _page = os.sysconf("SC_PAGE_SIZE")

    def __init__(self, pid: int) -> None:
        if not Path(f"/proc/{pid}").exists():
            raise ResourceError(f"no process with pid {pid}")
        self.pid = pid

    @staticmethod
    def _stat(pid: int) -> list[str] | None:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on; comm may hold spaces

    def sample(self) -> dict[str, Any]:
        stats: dict[int, list[str]] = {}
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                fields = self._stat(int(entry))
                if fields:
                    stats[int(entry)] = fields
                    children.setdefault(int(fields[1]), []).append(int(entry))
        if self.pid not in stats:
            raise ResourceError(f"process {self.pid} has exited")
        ticks = rss_pages = 0
        todo = [self.pid]
        while todo:
            pid = todo.pop()
            fields = stats.get(pid)
            if fields is None:
                continue
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
            rss_pages += int(fields[21])
            todo.extend(children.get(pid, []))
        return {"cpu_usage_ns": ticks * 1_000_000_000 // self._ticks, "mem_bytes": rss_pages * self._page,
                "mem_usage_bytes": rss_pages * self._page, "mem_limit_bytes": None}


def resource_source(platform: PlatformConfig, docker_host: str) -> ResourceSource | None:
    """The configured source, or None for `none`. Raises ResourceError if it cannot be set up."""
    if platform.resource_source == "auto" and platform.container:
        try:
            return CgroupSource(platform.pid, platform.container, docker_host)
        except ResourceError:
            return DockerStatsSource(platform.container, docker_host)
    if platform.resource_source == "docker" and platform.container:
        return DockerStatsSource(platform.container, docker_host)
    if platform.resource_source == "cgroup":
        return CgroupSource(platform.pid, platform.container, docker_host)
    if platform.resource_source == "proc" and platform.pid:
        return ProcSource(platform.pid)
    return None


class ResourceSampler:
    """Samples `source` every `interval_s` into a JSON-lines file, from start() to stop().

    start() takes the first sample itself, so the run's baseline is on disk before the load begins; stop()
    takes a last one after the load. Sampling errors are counted, never raised: a run's latency numbers
    matter more than its resource numbers.
    """

    def __init__(self, source: ResourceSource, interval_s: float, path: Path) -> None:
        self.source = source
        self.interval_s = interval_s
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)
        self._lock = threading.Lock()
        self.samples = 0
        self.errors = 0
        self.first_error: str | None = None
        self._t0 = 0.0
        self._t0_epoch = 0.0
        self._file = None

    def _take(self) -> None:
        t = time.monotonic() - self._t0
        try:
            values = self.source.sample()
        except (ResourceError, OSError, ValueError, KeyError) as exc:
            with self._lock:
                self.errors += 1
                self.first_error = self.first_error or str(exc)
            return
        read_epoch = values.pop("read_epoch", None)
        if read_epoch is not None:  # the source says when it measured: trust that over when we asked
            t = read_epoch - self._t0_epoch
        record = {"t_s": round(t, 4), "epoch": round(read_epoch or time.time(), 4), **values}
        with self._lock:
            assert self._file is not None
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take()

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._t0_epoch = time.time()
        self._file = open(self.path, "w", encoding="utf-8")  # closed in stop()
        self._take()
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 15)
        self._take()
        if self._file is not None:
            self._file.close()
        return {"source": self.source.name, "interval_s": self.interval_s, "samples": self.samples,
                "errors": self.errors, "first_error": self.first_error}


# ------------------------------------------------------------------ reading the samples back (finalize, rate)
def resource_rows(path: Path, started_epoch: float | None = None) -> list[dict[str, Any]]:
    """Samples with CPU % of one core over the interval since the previous sample (none for the first).

    t_s is counted from the start of ab (negative for the baseline taken just before it) when the run
    recorded that start; else from the sampler's start.
    """
    if not path.exists():
        return []
    rows, previous = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            s = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short when the sampler was killed
        cpu_pct = None
        if previous is not None and s.get("cpu_usage_ns") is not None and previous.get("cpu_usage_ns") is not None:
            dt = s["t_s"] - previous["t_s"]
            d_cpu = s["cpu_usage_ns"] - previous["cpu_usage_ns"]
            if dt > 0 and d_cpu >= 0:
                cpu_pct = round(d_cpu / (dt * 1e9) * 100.0, 2)
        t_s = s["t_s"] if started_epoch is None or "epoch" not in s else round(s["epoch"] - started_epoch, 4)
        rows.append({"t_s": t_s, "cpu_pct": cpu_pct, "mem_bytes": s.get("mem_bytes"),
                     "mem_limit_bytes": s.get("mem_limit_bytes"), "cpu_usage_ns": s.get("cpu_usage_ns")})
        previous = s
    return rows


def cpu_mean(rows: list[dict[str, Any]]) -> float | None:
    """Time-weighted: CPU time used between the first and last sample over the time between them."""
    usable = [r for r in rows if r["cpu_usage_ns"] is not None]
    if len(usable) < 2 or usable[-1]["t_s"] <= usable[0]["t_s"]:
        return None
    cpu_ns = usable[-1]["cpu_usage_ns"] - usable[0]["cpu_usage_ns"]
    return cpu_ns / ((usable[-1]["t_s"] - usable[0]["t_s"]) * 1e9) * 100


def round_or_none(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def max_or_none(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return max(values) if values else None
