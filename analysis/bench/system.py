"""Is the machine quiet? What competes with the benchmark for the CPUs, before and during every run.

A closed-loop benchmark on a small machine measures the machine as much as the server: a compile, a test suite
or another benchmark on the same cores moved cells of this kit by up to 25 % without a trace in the results.
pyperf's system checks (`python -m pyperf system show`) are the model: each check states what it found and, when
that can disturb a measurement, says so. Here the checks are the ones that matter for a load test on shared
cores, read straight from /proc (no psutil):

- the load average (/proc/loadavg), before the run: how busy the last minute was;
- CPU steal (/proc/stat): time the hypervisor gave another guest while ours wanted the CPU;
- the load generator's own CPU share: ab's user + system time (getrusage of the reaped child) over the run —
  ab on the cores it loads competes with the servers it measures;
- the busiest other processes over the run (/proc/<pid>/stat), each classified as the harness (this process and
  its children), the serving containers (their cgroup names the container), the serving path (docker-proxy and
  the containers' shims) or *other*: only *other* processes count as competitors.

`check_quiet` looks for a couple of seconds before a benchmark starts (`python -m analysis.bench init` prints it);
`Watch` brackets each ab run and writes raw/<run_key>/system.json. `placement` decides whether ab and the serving
containers can sit on disjoint CPUs (machines with more than 4 cores) or share them, and says which.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROC = Path("/proc")
SYSTEM_FILE = "system.json"
# Processes on the requests' way to the serving containers: part of what is measured, not competitors. dockerd
# and containerd are not on that path (a `docker build` next door shows up as their CPU), so they count as others.
SERVING_PATH = frozenset({"docker-proxy"})
# Pinning needs room: the two servers' CPUs plus at least a couple for ab. At or below this, everything shares.
PIN_MIN_CORES = 5
Serving = tuple[tuple[str, ...], tuple[int, ...]]  # serving container ids, serving process ids
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------------------------- /proc readers
def read_loadavg(proc: Path = PROC) -> dict[str, float | int]:
    """1/5/15-minute load averages and the number of runnable tasks (the reader itself included)."""
    fields = (proc / "loadavg").read_text().split()
    running, total = fields[3].split("/")
    return {"load_1m": float(fields[0]), "load_5m": float(fields[1]), "load_15m": float(fields[2]),
            "runnable": int(running), "tasks": int(total)}


def read_cpu_stat(proc: Path = PROC) -> dict[str, int]:
    """The machine-wide `cpu` line of /proc/stat, in clock ticks (guest time is already inside user/nice)."""
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            return dict(zip(CPU_FIELDS, values + [0] * (len(CPU_FIELDS) - len(values)), strict=False))
    raise OSError(f"{proc / 'stat'} has no 'cpu' line")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    ticks: int  # utime + stime
    start: int  # starttime in ticks since boot: tells a reused pid apart


def read_processes(proc: Path = PROC) -> dict[int, Proc]:
    """Every process's accumulated CPU time; processes that vanish while being read are skipped."""
    out: dict[int, Proc] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        # comm is parenthesised and may hold spaces or parentheses itself: split at the last ')'
        head, _, tail = text.rpartition(")")
        comm = head.partition("(")[2]
        rest = tail.split()
        try:  # fields after comm: state(3) ppid(4) ... utime(14) stime(15) ... starttime(22)
            out[int(entry.name)] = Proc(int(entry.name), int(rest[1]), comm, int(rest[11]) + int(rest[12]),
                                        int(rest[19]))
        except (IndexError, ValueError):
            continue
    return out


def _cgroup(pid: int, proc: Path = PROC) -> str:
    try:
        return (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return ""


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------------- snapshots
@dataclass
class Snapshot:
    monotonic: float
    epoch: float
    load: dict[str, float | int]
    cpu: dict[str, int]
    procs: dict[int, Proc] = field(repr=False)
    children_cpu_s: float


def snapshot(proc: Path = PROC) -> Snapshot:
    return Snapshot(time.monotonic(), time.time(), read_loadavg(proc), read_cpu_stat(proc), read_processes(proc),
                    _children_cpu_s())


def _descendants(procs: dict[int, Proc], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _ancestors(procs: dict[int, Proc], pid: int) -> set[int]:
    """The processes that started `pid`, parent by parent, up to but not including init (pid 1): for a bench run
    by bench.yml, the shell, Ansible's module wrapper and ansible-playbook, which poll and wait for it."""
    found: set[int] = set()
    parent = procs[pid].ppid if pid in procs else 0
    while parent > 1 and parent not in found:
        found.add(parent)
        parent = procs[parent].ppid if parent in procs else 0
    return found


def classify(pid: int, comm: str, harness: set[int], serving_ids: tuple[str, ...], proc: Path = PROC,
             serving_pids: set[int] | frozenset[int] = frozenset()) -> str:
    """harness | serving | serving-path | other (only `other` competes with the measurement). A serving container
    is known by its id in the process's cgroup; a server run as a plain process (resource_source proc) by its pid
    and the pids below it."""
    if pid in serving_pids:
        return "serving"
    if pid in harness:
        return "harness"
    if serving_ids:
        cgroup = _cgroup(pid, proc)
        if any(cid and cid in cgroup for cid in serving_ids):
            return "serving"
    if comm in SERVING_PATH or comm.startswith("containerd-shim"):
        return "serving-path"
    return "other"


def activity(before: Snapshot, after: Snapshot, *, serving_ids: tuple[str, ...] = (), top: int = 5,
             harness_pid: int | None = None, proc: Path = PROC, serving_pids: tuple[int, ...] = ()
             ) -> dict[str, Any]:
    """What used the CPUs between two snapshots, in % of one core (200 % = two cores busy).

    ``load_generator_cpu_pct`` is the CPU time of the harness's children reaped in between (ab, when the
    snapshots bracket run_ab); processes that started and ended between the snapshots are invisible to the
    per-process view and show up only in ``unattributed_cpu_pct``.
    """
    wall = max(after.monotonic - before.monotonic, 1e-6)
    tck = clock_ticks()
    cores = os.cpu_count() or 1
    d = {k: after.cpu.get(k, 0) - before.cpu.get(k, 0) for k in CPU_FIELDS}
    total_ticks = sum(d[k] for k in CPU_FIELDS if k not in ("guest", "guest_nice")) or 1
    busy_ticks = total_ticks - d["idle"] - d["iowait"]

    def of_machine(ticks: float) -> float:  # share of all CPU time, as % of one core
        return round(100.0 * cores * ticks / total_ticks, 1)

    root = os.getpid() if harness_pid is None else harness_pid
    # the harness: the runner, what it started (ab, docker CLI calls) and what started it (ansible-playbook polls
    # its task a few % of a core: counted as another process it made every quiet run look busy, issue 24)
    harness = (_descendants(after.procs, root) | _descendants(before.procs, root)
               | _ancestors(after.procs, root) | _ancestors(before.procs, root))
    servers = set().union(*(_descendants(after.procs, p) | _descendants(before.procs, p) for p in serving_pids))
    sums = {"harness": 0.0, "serving": 0.0, "serving-path": 0.0, "other": 0.0}
    busiest: list[dict[str, Any]] = []
    for pid, p in after.procs.items():
        old = before.procs.get(pid)
        ticks = p.ticks - old.ticks if old is not None and old.start == p.start else p.ticks
        if ticks <= 0:
            continue
        pct = 100.0 * ticks / tck / wall
        role = classify(pid, p.comm, harness, serving_ids, proc, servers)
        sums[role] += pct
        busiest.append({"pid": pid, "comm": p.comm, "role": role, "cpu_pct": round(pct, 1)})
    busiest.sort(key=lambda r: -r["cpu_pct"])
    load_generator = 100.0 * max(after.children_cpu_s - before.children_cpu_s, 0.0) / wall
    seen = sum(sums.values()) + load_generator
    busy = of_machine(busy_ticks)
    return {
        "wall_s": round(wall, 3),
        "cores": cores,
        "cpu_busy_pct": busy,
        "steal_pct": of_machine(d["steal"]),
        "iowait_pct": of_machine(d["iowait"]),
        "load_generator_cpu_pct": round(load_generator, 1),
        "harness_cpu_pct": round(sums["harness"], 1),
        "serving_cpu_pct": round(sums["serving"], 1),
        "serving_path_cpu_pct": round(sums["serving-path"], 1),
        "others_cpu_pct": round(sums["other"], 1),
        "unattributed_cpu_pct": round(max(busy - seen, 0.0), 1),
        "competitors": [r for r in busiest if r["role"] == "other"][:top],
        "busiest": busiest[:top],
    }


def verdict(act: dict[str, Any], threshold_pct: float) -> tuple[bool, list[str]]:
    """Busy when other processes, or the hypervisor (steal), took more than ``threshold_pct`` of one core."""
    reasons = []
    if act["others_cpu_pct"] > threshold_pct:
        names = ", ".join(f"{c['comm']} (pid {c['pid']}) {c['cpu_pct']:.0f} %" for c in act["competitors"][:3])
        reasons.append(f"other processes used {act['others_cpu_pct']:.0f} % of a core"
                       + (f": {names}" if names else ""))
    if act["steal_pct"] > threshold_pct:
        reasons.append(f"the hypervisor took {act['steal_pct']:.0f} % of a core (CPU steal)")
    return bool(reasons), reasons


# ------------------------------------------------------------------------------------------------- the checks
def check_quiet(window_s: float, threshold_pct: float, serving_ids: tuple[str, ...] = (),
                proc: Path = PROC, serving_pids: tuple[int, ...] = ()) -> dict[str, Any]:
    """Look at the machine for ``window_s`` seconds before a benchmark: load average, steal, competitors."""
    before = snapshot(proc)
    time.sleep(max(window_s, 0.05))
    after = snapshot(proc)
    act = activity(before, after, serving_ids=serving_ids, proc=proc, serving_pids=serving_pids)
    busy, reasons = verdict(act, threshold_pct)
    cores = act["cores"]
    if before.load["load_1m"] > cores:
        reasons.append(f"load average {before.load['load_1m']:.2f} over the last minute on {cores} cores: "
                       "something kept every core busy recently")
        busy = True
    return {"checked_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before.epoch)),
            "window_s": act["wall_s"], "threshold_pct": threshold_pct, "load": before.load, **act,
            "busy": busy, "reasons": reasons}


def describe(check: dict[str, Any]) -> list[str]:
    """Lines for a person: the warning first when the machine is busy."""
    load = check["load"]
    head = (f"machine check ({check['window_s']:.1f} s, {check['cores']} cores): load average "
            f"{load['load_1m']:.2f} / {load['load_5m']:.2f} / {load['load_15m']:.2f}, CPU busy "
            f"{check['cpu_busy_pct']:.0f} %, steal {check['steal_pct']:.0f} %, other processes "
            f"{check['others_cpu_pct']:.0f} % (of one core)")
    if not check["busy"]:
        return [head + ": quiet"]
    return [head, "WARNING: the machine is busy, so latencies will include its noise: " + "; ".join(check["reasons"])
            + ". Stop what competes, or compare this run only with runs made under the same load."]


class Watch:
    """Brackets one ab run: load average before, then everything `activity` sees during it."""

    def __init__(self, out_dir: Path, threshold_pct: float, serving: Serving = ((), ()),
                 placement_info: dict[str, Any] | None = None, proc: Path = PROC) -> None:
        self.out_dir = out_dir
        self.threshold_pct = threshold_pct
        self.serving_ids, self.serving_pids = serving
        self.placement = placement_info
        self.proc = proc
        self.before: Snapshot | None = None
        self.record: dict[str, Any] = {}

    def start(self) -> Watch:
        try:
            self.before = snapshot(self.proc)
        except OSError as exc:  # no /proc: not Linux, or a locked-down container
            self.record = {"error": f"cannot read /proc: {exc}"}
        return self

    def stop(self) -> dict[str, Any]:
        """The summary for done.json (the full record goes to system.json)."""
        import json

        if self.before is not None:
            try:
                after = snapshot(self.proc)
            except OSError as exc:
                self.record = {"error": f"cannot read /proc: {exc}"}
            else:
                act = activity(self.before, after, serving_ids=self.serving_ids, proc=self.proc,
                               serving_pids=self.serving_pids)
                busy, reasons = verdict(act, self.threshold_pct)
                self.record = {"before": {"load": self.before.load}, "during": act, "busy": busy,
                               "reasons": reasons, "threshold_pct": self.threshold_pct,
                               "placement": self.placement}
        (self.out_dir / SYSTEM_FILE).write_text(json.dumps(self.record, indent=2) + "\n", encoding="utf-8")
        return summary(self.record)


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The few numbers runs.csv keeps per run (empty when /proc could not be read)."""
    during = record.get("during") or {}
    return {
        "load_1m_before": (record.get("before") or {}).get("load", {}).get("load_1m"),
        "steal_pct": during.get("steal_pct"),
        "load_generator_cpu_pct": during.get("load_generator_cpu_pct"),
        "others_cpu_pct": during.get("others_cpu_pct"),
        "top_competitor": (f"{during['competitors'][0]['comm']} {during['competitors'][0]['cpu_pct']:.0f} %"
                           if during.get("competitors") else None),
        "busy": record.get("busy"),
        "reasons": record.get("reasons", []),
    }


# --------------------------------------------------------------------------------------------------- pinning
def serving_containers(config: Any, platforms: dict[str, Any] | None = None) -> dict[str, dict[str, str | None]]:
    """platform -> {"id": container id, "cpuset": its --cpuset-cpus or None} for the platforms Docker runs here
    (those of a BenchConfig, or `platforms`); platforms without a container, or that Docker cannot describe, are
    left out."""
    from analysis.bench.client import DockerError, docker_inspect

    out: dict[str, dict[str, str | None]] = {}
    for name, platform in (platforms or config.platforms).items():
        if not platform.container:
            continue
        try:
            info = docker_inspect(config.docker_host, platform.container, timeout=5)
        except DockerError:
            continue
        out[name] = {"id": info.get("Id"), "cpuset": (info.get("HostConfig") or {}).get("CpusetCpus") or None}
    return out


def ingress_pids(platforms: dict[str, Any]) -> tuple[int, ...]:
    """The nginx master of each local ingress a platform is reached through (`<ingress_dir>/nginx.pid`; `activity`
    counts its workers below it): the ingress is on that platform's serving path, in a cgroup of its own beside the
    function's container, so without its pid its workers read as competitors. A missing or unreadable pid file
    adds nothing."""
    found: list[int] = []
    for p in platforms.values():
        if getattr(p, "ingress_dir", None):
            try:
                pid = int((Path(p.ingress_dir) / "nginx.pid").read_text().strip())
            except (OSError, ValueError):
                continue
            if pid > 1 and pid not in found:
                found.append(pid)
    return tuple(found)


def where(config: Any, platform: Any = None) -> tuple[Serving, dict[str, Any]]:
    """What serves (the containers' ids and the plain server processes' pids, to tell their processes from
    competitors) and `placement` for the run's ab_cpus knob. `platform` stands in for the configured platform of
    its name (a run against a temporary copy of a container)."""
    platforms = {**config.platforms, **({platform.name: platform} if platform is not None else {})}
    serving = serving_containers(config, platforms)
    ids = tuple(c["id"] for c in serving.values() if c["id"])
    pids = tuple(p.pid for p in platforms.values() if p.pid) + ingress_pids(platforms)
    return (ids, pids), placement(config.knobs["ab_cpus"], {name: c["cpuset"] for name, c in serving.items()})


def parse_cpu_list(text: str | None) -> set[int]:
    """'0-1,4' -> {0, 1, 4}; empty or None -> empty set."""
    cpus: set[int] = set()
    for part in (text or "").replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def format_cpu_list(cpus: set[int] | list[int]) -> str:
    """{0, 1, 2, 5} -> '0-2,5'."""
    out, run = [], []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def placement(ab_cpus: str, serving_cpusets: dict[str, str | None], usable: set[int] | None = None
              ) -> dict[str, Any]:
    """Which CPUs ab runs on, and whether it shares them with the serving containers.

    ``ab_cpus`` is the knob: ``auto`` pins ab to the usable CPUs no serving container is pinned to, on machines
    with more than 4 cores where every serving container is pinned (roles/serving_containers does that with
    ``--cpuset-cpus``); ``none`` never pins; a CPU list such as ``4-7`` pins ab there.
    """
    usable = set(os.sched_getaffinity(0)) if usable is None else usable
    cores = len(usable)
    pinned = {name: parse_cpu_list(cpus) for name, cpus in serving_cpusets.items()}
    serving = set().union(*pinned.values()) if pinned else set()
    all_pinned = bool(pinned) and all(pinned.values())
    chosen: set[int] = set()
    if ab_cpus == "auto":
        if cores >= PIN_MIN_CORES and all_pinned and usable - serving:
            chosen = usable - serving
    elif ab_cpus != "none":
        chosen = parse_cpu_list(ab_cpus)
    shared = not chosen or not all_pinned or bool(chosen & serving)
    servers = ", ".join(f"{n} on {format_cpu_list(c) if c else 'any CPU'}" for n, c in pinned.items()) or "none"
    if not shared:
        text = (f"load generator (ab) pinned to CPUs {format_cpu_list(chosen)}, disjoint from the serving "
                f"containers ({servers})")
    elif cores < PIN_MIN_CORES and ab_cpus == "auto":
        text = (f"the load generator (ab) and the serving containers share this machine's {cores} cores (no "
                f"pinning below {PIN_MIN_CORES} cores): ab's own CPU time is taken from the servers'")
    else:
        text = (f"the load generator (ab{' on CPUs ' + format_cpu_list(chosen) if chosen else ''}) and the serving "
                f"containers ({servers}) share CPUs: ab's own CPU time is taken from the servers'")
    return {"cores": cores, "load_generator_cpus": format_cpu_list(chosen) if chosen else None,
            "serving_cpus": {n: format_cpu_list(c) if c else None for n, c in pinned.items()},
            "shared": shared, "text": text}
