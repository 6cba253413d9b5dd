"""analysis/bench/system.py against this real machine: a busy loop that is not ours is found as a competitor and
makes the machine "busy"; our own children are the harness, a configured server pid is serving; the load
generator's CPU is the reaped child's; `init` prints the warning and keeps the check in the manifest; pinning is
off on small machines and disjoint on large ones; ab runs under taskset when pinned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.bench import ab, system
from analysis.bench.config import ConfigError, config_from_dict
from tests.platform_kinds import with_kinds

REPO = Path(__file__).resolve().parents[1]
BUSY_LOOP = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass\n"
PLATFORMS = with_kinds({"function": {"url": "http://127.0.0.1:9/"}, "container": {"url": "http://127.0.0.1:9/predict"}})


@pytest.fixture
def stranger() -> int:
    """A busy loop that is *not* a child of this process: started through a shell that exits at once, so it is
    reparented away from us, as another engineer's job would be. Killed by its pid afterwards (it also stops by
    itself after 60 s)."""
    out = subprocess.run(["sh", "-c", f"{sys.executable} -c '{BUSY_LOOP}' >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True, timeout=10)
    pid = int(out.stdout.strip())
    time.sleep(0.3)
    yield pid
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_busy_loop_elsewhere_is_a_competitor_and_the_machine_is_busy(stranger: int) -> None:
    check = system.check_quiet(1.5, threshold_pct=10.0)
    mine = [c for c in check["busiest"] if c["pid"] == stranger]
    assert mine and mine[0]["role"] == "other", check["busiest"]
    # at most one core's worth; on a machine that others share too it may get much less than that
    assert 5 < mine[0]["cpu_pct"] <= 105
    assert any(c["pid"] == stranger for c in check["competitors"])
    assert check["busy"] and check["others_cpu_pct"] >= mine[0]["cpu_pct"]
    assert any(f"(pid {stranger})" in reason for reason in check["reasons"]) or len(check["competitors"]) > 3
    lines = system.describe(check)
    assert lines[1].startswith("WARNING: the machine is busy")


def test_our_children_are_the_harness_and_a_server_pid_is_serving() -> None:
    child = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    server = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.2)
        before = system.snapshot()
        time.sleep(1.0)
        after = system.snapshot()
        act = system.activity(before, after, serving_pids=(server.pid,), top=50)
        roles = {c["pid"]: c["role"] for c in act["busiest"]}
        assert roles.get(child.pid) == "harness" and roles.get(server.pid) == "serving", act["busiest"]
        assert all(c["pid"] not in (child.pid, server.pid) for c in act["competitors"])
        assert act["serving_cpu_pct"] > 5 and act["harness_cpu_pct"] > 5  # a busy loop each, on shared cores
    finally:
        for p in (child, server):
            p.kill()
            p.wait()


def test_a_local_ingress_and_its_workers_are_serving_not_competitors(tmp_path: Path) -> None:
    """An nginx-like master that is not our child, with a busy worker below it, named by the platform's
    <ingress_dir>/nginx.pid: where() gives its pid with the serving ones, and activity() files master and worker as
    serving. The same processes without the pid file are competitors (the check can fail)."""
    loop = tmp_path / "busy.py"
    loop.write_text(BUSY_LOOP)
    out = subprocess.run(["sh", "-c", f"sh -c '{sys.executable} {loop} & wait' >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True, timeout=10)
    master = int(out.stdout.strip())
    time.sleep(0.3)
    workers = [p.pid for p in system.read_processes().values() if p.ppid == master]
    folder = tmp_path / "ingress"
    folder.mkdir()
    platforms = with_kinds({**PLATFORMS, "function_ingress": {"url": "http://127.0.0.1:9/predict", "via": "function",
                                                              "ingress_dir": str(folder)}})
    config = config_from_dict({"platforms": platforms})
    try:
        assert len(workers) == 1
        (serving_ids, serving_pids), _ = system.where(config)
        assert master not in serving_pids  # no pid file yet
        (folder / "nginx.pid").write_text(f"{master}\n")
        (serving_ids, serving_pids), _ = system.where(config)
        assert master in serving_pids and serving_ids == ()
        for pids, role in ((serving_pids, "serving"), ((), "other")):
            before = system.snapshot()
            time.sleep(1.0)
            act = system.activity(before, system.snapshot(), serving_pids=pids, top=50)
            roles = {c["pid"]: c["role"] for c in act["busiest"]}
            assert roles.get(workers[0]) == role, act["busiest"]
    finally:
        for pid in (*workers, master):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_load_generators_cpu_is_its_reaped_children(tmp_path: Path) -> None:
    """What Watch brackets (run_ab: ab started and reaped in between) counts as the load generator's CPU."""
    watch = system.Watch(tmp_path, threshold_pct=10.0).start()
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.6\n"
                    "while time.process_time() < end: pass\n"], check=True, timeout=30)
    summary = watch.stop()
    record = json.loads((tmp_path / system.SYSTEM_FILE).read_text())
    during = record["during"]
    # 0.6 s of CPU (plus the interpreter's start) over a wall time of at least that
    assert 0.6 / during["wall_s"] * 100 - 1 <= during["load_generator_cpu_pct"] <= 100 * 1.01 + 1
    assert summary["load_generator_cpu_pct"] == during["load_generator_cpu_pct"]
    assert summary["load_1m_before"] == record["before"]["load"]["load_1m"]
    assert set(summary) == {"load_1m_before", "steal_pct", "load_generator_cpu_pct", "others_cpu_pct",
                            "top_competitor", "busy", "reasons"}


def _fake_proc(root: Path, stat: str, procs: dict[int, tuple[str, int, int]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "loadavg").write_text("0.50 0.40 0.30 2/100 4242\n")
    (root / "stat").write_text(f"{stat}\nintr 1 2 3\n")
    for pid, (comm, ppid, ticks) in procs.items():
        (root / str(pid)).mkdir(exist_ok=True)
        fields = ["S", str(ppid)] + ["0"] * 9 + [str(ticks), "0"] + ["0"] * 6 + ["77"]
        (root / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")
        (root / str(pid) / "cgroup").write_text("0::/user.slice\n")
    return root


def test_steal_and_process_cpu_from_proc_files(tmp_path: Path) -> None:
    """Two /proc states 1 s apart: the shares come out of the tick deltas (comm with spaces and parentheses)."""
    tck = system.clock_ticks()
    cores = os.cpu_count() or 1
    # machine: 4 * tck ticks elapsed in all; 1 * tck of them stolen, 2 * tck idle
    a = _fake_proc(tmp_path / "a", "cpu  100 0 100 1000 0 0 0 50 0 0", {4000: ("odd (name) x", 3, 10)})
    b = _fake_proc(tmp_path / "b", f"cpu  {100 + tck // 2} 0 {100 + tck // 2} {1000 + 2 * tck} 0 0 0 {50 + tck} 0 0",
                   {4000: ("odd (name) x", 3, 10 + tck // 2)})
    before, after = system.snapshot(a), system.snapshot(b)
    after.monotonic = before.monotonic + 1.0
    act = system.activity(before, after, harness_pid=1, proc=b)
    assert act["steal_pct"] == pytest.approx(100 * cores * 1 / 4, abs=0.1)
    assert act["cpu_busy_pct"] == pytest.approx(100 * cores * 2 / 4, abs=0.1)
    assert act["competitors"][0]["comm"] == "odd (name) x"
    assert act["competitors"][0]["cpu_pct"] == pytest.approx(100 * (tck // 2) / tck, abs=0.1)
    assert system.read_loadavg(a) == {"load_1m": 0.5, "load_5m": 0.4, "load_15m": 0.3, "runnable": 2, "tasks": 100}


def test_what_started_the_harness_is_the_harness_but_not_init(tmp_path: Path) -> None:
    """bench.yml runs the driver under ansible-playbook, which polls its task: that CPU is the harness's own, not a
    competitor's (counted as a competitor it made quiet runs look busy). init and an unrelated process are others."""
    tck = system.clock_ticks()
    tree = {1: ("init", 0, 0), 500: ("ansible-playboo", 1, 0), 600: ("sh", 500, 0), 700: ("python3", 600, 0),
            800: ("ab", 700, 0), 900: ("stress", 1, 0)}
    a = _fake_proc(tmp_path / "a", "cpu  100 0 100 1000 0 0 0 0 0 0", tree)
    # one second later every process has used a tenth of a second
    b = _fake_proc(tmp_path / "b", f"cpu  {100 + tck} 0 100 {1000 + tck} 0 0 0 0 0 0",
                   {pid: (comm, ppid, tck // 10) for pid, (comm, ppid, _) in tree.items()})
    before, after = system.snapshot(a), system.snapshot(b)
    after.monotonic = before.monotonic + 1.0
    act = system.activity(before, after, harness_pid=700, proc=b, top=10)
    roles = {c["pid"]: c["role"] for c in act["busiest"]}
    assert roles == {1: "other", 500: "harness", 600: "harness", 700: "harness", 800: "harness", 900: "other"}
    tenth = 100 * (tck // 10) / tck
    assert act["harness_cpu_pct"] == pytest.approx(4 * tenth, abs=0.2)
    assert act["others_cpu_pct"] == pytest.approx(2 * tenth, abs=0.2)


def test_pinning_is_off_on_small_machines_and_disjoint_on_large_ones() -> None:
    small = system.placement("auto", {"function": None, "container": None}, usable={0, 1})
    assert small["shared"] and small["load_generator_cpus"] is None
    assert "share this machine's 2 cores" in small["text"]
    large = system.placement("auto", {"function": "0-1", "container": "0-1"}, usable=set(range(8)))
    assert not large["shared"] and large["load_generator_cpus"] == "2-7" and "disjoint" in large["text"]
    unpinned = system.placement("auto", {"function": None, "container": "0-1"}, usable=set(range(8)))
    assert unpinned["shared"] and unpinned["load_generator_cpus"] is None
    explicit = system.placement("1", {"function": "0-1"}, usable=set(range(8)))
    assert explicit["shared"] and explicit["load_generator_cpus"] == "1"
    assert system.placement("none", {"function": "0-1"}, usable=set(range(8)))["load_generator_cpus"] is None
    assert system.format_cpu_list(system.parse_cpu_list("0-2,5,7-8")) == "0-2,5,7-8"


def test_ab_runs_under_taskset_when_pinned(tmp_path: Path) -> None:
    if not (ab.shutil.which("ab") and ab.shutil.which("taskset")):
        pytest.skip("needs ab and taskset")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "bench_server.py"), "--port", str(port),
                               "--log", str(tmp_path / "server.log")], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        payload = tmp_path / "body.jpg"
        payload.write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
        cpu = sorted(os.sched_getaffinity(0))[-1]
        result = ab.run_ab(ab.AbCommand(url=f"http://127.0.0.1:{port}/predict", requests=20, concurrency=2,
                                        post_file=payload, cpus=str(cpu)), tmp_path / "run")
        assert Path(result.argv[0]).name == "taskset" and result.argv[1:3] == ["-c", str(cpu)]
        assert result.summary is not None and result.summary.completed == 20
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("knob, value", [("stability_cv_pct", -1), ("stability_max_extra_repetitions", 1.5),
                                         ("busy_cpu_pct", "lots"), ("ab_cpus", "fast"), ("quiet_check_s", True)])
def test_bad_knobs_are_refused_with_their_name(knob: str, value: object) -> None:
    with pytest.raises(ConfigError, match=knob):
        config_from_dict({"config": {knob: value}, "platforms": PLATFORMS})


def test_init_warns_when_the_machine_is_busy_and_keeps_the_check(stranger: int, tmp_path: Path) -> None:
    config = tmp_path / "bench.json"
    config.write_text(json.dumps({"profile": "local", "platforms": PLATFORMS, "config": {
        "concurrency": [1], "repetitions": 1, "requests_per_run": 20, "warmup_requests": 2, "probe_requests": 0,
        "coldstart_repetitions": 0, "paired_requests": 0, "quiet_check_s": 1.0}}))
    proc = subprocess.run([sys.executable, "-m", "analysis.bench", "init", "--config", str(config), "--results-dir",
                           str(tmp_path / "results")], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: the machine is busy" in proc.stderr and "placement: " in proc.stderr
    manifest = json.loads((Path(json.loads(proc.stdout)["run_dir"]) / "manifest.json").read_text())
    check = manifest["system_checks"][0]
    assert check["busy"] and any(c["pid"] == stranger for c in check["competitors"] + check["busiest"])
    assert check["placement"]["shared"] == (len(os.sched_getaffinity(0)) < system.PIN_MIN_CORES)


def test_the_report_shows_what_competed(tmp_path: Path) -> None:
    """runs.csv's competition columns and the manifest's check become a banner and the machine table."""
    import csv
    import shutil

    from analysis.__main__ import main

    folder = shutil.copytree(REPO / "tests" / "fixtures" / "results" / "complete", tmp_path / "run")
    with (folder / "runs.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    for i, r in enumerate(table):
        busy = r["run_key"] == "concurrency-container-c5-r2"
        r.update(load_1m_before=str(0.5 + i / 10), steal_pct="0.0", load_generator_cpu_pct=str(10 + i),
                 others_cpu_pct="85.0" if busy else "2.0", busy="1" if busy else "0")
    with (folder / "runs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["system_checks"] = [{
        "checked_utc": "2026-12-04T11:59:58Z", "window_s": 2.0, "cores": 2, "cpu_busy_pct": 120.0, "steal_pct": 0.0,
        "others_cpu_pct": 95.0, "load": {"load_1m": 1.5, "load_5m": 1.0, "load_15m": 0.5}, "busy": True,
        "reasons": ["other processes used 95 % of a core: cc1plus (pid 77) 95 %"],
        "placement": system.placement("auto", {"function": None, "container": None}, usable={0, 1})}]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "report"
    assert main([str(folder), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "BUSY MACHINE" in text and "cc1plus (pid 77) 95 %" in text
    assert "1 of 18 concurrency runs were busy" in text and "concurrency-container-c5-r2" in text
    assert "share this machine's 2 cores" in text
    with (out / "tables" / "machine.csv").open(newline="") as fh:
        machine = {(r["platform"], r["concurrency"]): r for r in csv.DictReader(fh)}
    conc = [r for r in table if r["experiment"] == "concurrency"]
    for (platform, c), row in machine.items():
        cell = [r for r in conc if r["platform"] == platform and r["concurrency"] == c]
        assert int(row["runs"]) == len(cell)
        assert int(row["runs_busy"]) == sum(r["busy"] == "1" for r in cell)
        assert float(row["load_generator_cpu_pct_mean"]) == pytest.approx(
            sum(float(r["load_generator_cpu_pct"]) for r in cell) / len(cell))
        assert float(row["others_cpu_pct_max"]) == max(float(r["others_cpu_pct"]) for r in cell)
