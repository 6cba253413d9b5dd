"""`python -m analysis.bench` end to end against real HTTP services on 127.0.0.1 (tests/bench_server.py), with
the real ab: init, plan, run-one, probe, finalize, run-all, interrupt-and-resume, and the error paths. The
Docker test runs the same service in containers to exercise docker logs, the Engine API stats, cgroup
sampling and cold starts. Every server, container and run here is bounded in count and time."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from analysis.bench.schema import SCHEMA_VERSION
from tests.platform_kinds import with_kinds

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "bench_server.py"
METRIC = "bench_request_duration_seconds"

pytestmark = pytest.mark.skipif(shutil.which("ab") is None, reason="needs ab (apt-get install apache2-utils)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, deadline_s: float = 15.0) -> None:
    import http.client

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/metrics")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
        finally:
            conn.close()
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {deadline_s} s")


class Service:
    """tests/bench_server.py as a real process on 127.0.0.1."""

    def __init__(self, tmp: Path, platform: str, *extra: str) -> None:
        self.port = free_port()
        self.log = tmp / f"{platform}-{self.port}.log"
        self.proc = subprocess.Popen([sys.executable, str(SERVER), "--port", str(self.port), "--platform", platform,
                                      "--log", str(self.log), *extra], stdout=subprocess.DEVNULL)
        wait_http(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def platform(self, path: str = "/predict") -> dict:
        return {"url": f"http://127.0.0.1:{self.port}{path}", "server_time_metric": METRIC,
                "log_source": "file", "log_file": str(self.log), "resource_source": "proc", "pid": self.proc.pid}


@pytest.fixture
def services(tmp_path):
    made: list[Service] = []

    def start(platform: str, *extra: str) -> Service:
        made.append(Service(tmp_path, platform, *extra))
        return made[-1]

    yield start
    for service in made:
        service.stop()


def write_config(path: Path, platforms: dict, **knobs) -> Path:
    config = {"concurrency": [1, 4], "repetitions": 2, "requests_per_run": 20, "warmup_requests": 8,
              "probe_requests": 5, "paired_requests": 0, "coldstart_repetitions": 0, "resource_interval_s": 0.05,
              "log_settle_s": 0.05,
              "request_timeout_s": 5, "stability_max_extra_repetitions": 0, "quiet_check_s": 0.1,
              "rate_capacity_pct": [],  # rate_capacity_pct: the open-loop steps are tests/test_openloop.py's
              "overload_concurrency": [], "nowarmup_requests": 0, "bodylimit_bytes": 0,  # issue 11's: its own tests
              **knobs}
    path.write_text(json.dumps({"profile": "local", "config": config, "platforms": with_kinds(platforms)}))
    return path


def bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.bench", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False)


def init(results: Path, config: Path, run_id: str = "new") -> dict:
    proc = bench("init", "--results-dir", results, "--config", config, "--run-id", run_id)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def manifest(run_dir: Path | str) -> dict:
    return json.loads((Path(run_dir) / "manifest.json").read_text())


@pytest.fixture
def two(services, tmp_path):
    """Both platforms as real services, the function at / and the container at /predict, as on the local profile."""
    function, container = services("function"), services("container")
    config = write_config(tmp_path / "bench.json", {"function": function.platform("/"),
                                                     "container": container.platform()})
    return function, container, config


# --------------------------------------------------------------------------------------------- tests
def test_init_records_the_run_and_plans_it(two, tmp_path):
    _, _, config = two
    info = init(tmp_path / "results", config)
    run_dir = Path(info["run_dir"])
    assert info["resumed"] is False and info["planned"] == 2 + 2 * 2 * 2 + 2
    m = manifest(run_dir)
    assert m["status"] == "running" and m["schema_version"] == SCHEMA_VERSION and m["run_id"] == run_dir.name
    assert m["config"]["concurrency"] == [1, 4] and m["config"]["payload"] == "photo-500x375.jpg"
    assert m["versions"]["ab"].startswith("2.3") and m["versions"]["python"]
    assert m["host"]["cores"] >= 1 and m["host"]["memory_bytes"] > 2**28 and m["host"]["kernel"]
    payload = run_dir / m["payload"]["path"]
    assert hashlib.sha256(payload.read_bytes()).hexdigest() == m["payload"]["sha256"]
    assert payload.read_bytes()[:2] == b"\xff\xd8" and (m["payload"]["width"], m["payload"]["height"]) == (500, 375)
    assert m["platforms"]["function"]["metrics_url"].endswith("/metrics")

    plan = json.loads(bench("plan", run_dir).stdout)
    keys = [item["run_key"] for item in plan]
    assert keys[:2] == ["warmup-function-c4-r0", "warmup-container-c4-r0"]  # warm-up first, at max concurrency
    assert keys[2:6] == ["concurrency-function-c1-r1", "concurrency-container-c1-r1",
                         "concurrency-function-c4-r1", "concurrency-container-c4-r1"]
    assert keys[6:10] == ["concurrency-container-c1-r2", "concurrency-function-c1-r2",  # order alternates
                          "concurrency-container-c4-r2", "concurrency-function-c4-r2"]
    assert keys[10:] == ["probe-function", "probe-container"]
    assert plan[2]["argv"] == ["run-one", str(run_dir), "--experiment", "concurrency", "--platform", "function",
                               "--concurrency", "1", "--repetition", "1"]
    assert not any(item["done"] for item in plan)


def test_full_run_writes_consistent_tables(two, tmp_path):
    _, _, config = two
    run_dir = Path(init(tmp_path / "results", config)["run_dir"])
    proc = bench("run-all", run_dir)
    assert proc.returncode == 0, proc.stderr
    progress = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert len(progress) == 12 and "req/s" in progress[0] and "p50" in progress[0] and "errors 0" in progress[0]
    m = manifest(run_dir)
    assert m["status"] == "complete" and m["finished_utc"] and m["runs_done"] == m["runs_planned"] == 12

    runs = rows(run_dir / "runs.csv")
    assert [r["run_key"] for r in runs][:2] == ["warmup-function-c4-r0", "warmup-container-c4-r0"]
    assert len(runs) == 10
    for r in runs:
        assert r["outcome"] == "ok" and r["failed"] == "0" and r["non_2xx"] == "0" and r["errors"] == "0"
        assert int(r["completed"]) == int(r["requests"]) == int(r["served"])
        if int(r["served"]) >= 11:  # a median needs 11 samples (schema.samples_needed)
            assert float(r["min_ms"]) <= float(r["p50_ms"]) <= float(r["max_ms"])
        else:
            assert r["p50_ms"] == ""
        assert r["p99_ms"] == ""  # far fewer than the 662 served requests a p99 needs: no number
        # the server's own histogram: at least its 2 ms sleep, at most what the client saw
        assert 2.0 <= float(r["server_mean_ms"]) <= float(r["mean_ms"]) + 1.0
        assert float(r["prediction_mean_ms"]) >= 2.0
        assert float(r["mem_max_bytes"]) > 1e6
    requests = rows(run_dir / "requests.csv")
    assert len(requests) == sum(int(r["requests"]) for r in runs)
    # every request ab counted, the service logged: a cross-check of two independent counts
    predictions = rows(run_dir / "predictions.csv")
    for r in runs:
        assert sum(1 for p in predictions if p["run_key"] == r["run_key"]) == int(r["requests"])
    assert sum(1 for p in predictions if p["run_key"] == "probe-function") == 5
    probe = rows(run_dir / "probe.csv")
    assert [(p["platform"], p["seq"]) for p in probe][:2] == [("function", "1"), ("function", "2")]
    assert all(p["status"] == "200" and float(p["prediction_ms"]) >= 2.0 for p in probe)
    assert all(float(p["response_ms"]) > float(p["prediction_ms"]) for p in probe)
    resources = rows(run_dir / "resources.csv")
    assert {r["run_key"] for r in resources} == {r["run_key"] for r in runs}
    assert rows(run_dir / "coldstart.csv") == []  # header only: no cold starts configured
    raw = run_dir / "raw" / "concurrency-container-c4-r2"
    for name in ("ab.stdout", "ab.stderr", "ab.tsv", "ab.csv", "metrics.before.txt", "metrics.after.txt",
                 "server.log", "resources.jsonl", "done.json"):
        assert (raw / name).exists(), name

    before = (raw / "done.json").read_bytes()
    again = bench("run-one", run_dir, "--experiment", "concurrency", "--platform", "container", "--concurrency", 4,
                  "--repetition", 2)
    assert again.returncode == 0 and "already done" in again.stdout
    assert (raw / "done.json").read_bytes() == before


def test_interrupt_keeps_finished_runs_and_resume_completes(services, tmp_path):
    function, container = services("function", "--delay-ms", "8"), services("container", "--delay-ms", "8")
    config = write_config(tmp_path / "bench.json", {"function": function.platform("/"),
                                                     "container": container.platform()},
                          requests_per_run=30, probe_requests=3)
    info = init(tmp_path / "results", config)
    run_dir = Path(info["run_dir"])
    runner = subprocess.Popen([sys.executable, "-m", "analysis.bench", "run-all", str(run_dir)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(list((run_dir / "raw").glob("*/done.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == 130, err
    assert "interrupted" in err
    assert manifest(run_dir)["status"] == "incomplete"
    finished = {p.parent.name: p.read_bytes() for p in (run_dir / "raw").glob("*/done.json")}
    assert 3 <= len(finished) < 12

    proc = bench("finalize", run_dir)
    assert proc.returncode == 0 and "incomplete" in proc.stdout
    m = manifest(run_dir)
    assert m["status"] == "incomplete" and m["finished_utc"] is None and len(m["runs_missing"]) == 12 - len(finished)
    assert {r["run_key"] for r in rows(run_dir / "runs.csv")} == {k for k in finished if not k.startswith("probe")}

    # a step that died before writing done.json: its folder is there, its done.json is not
    lost = sorted(finished)[0]
    (run_dir / "raw" / lost / "done.json").unlink()
    del finished[lost]

    resumed = init(tmp_path / "results", config, run_id=run_dir.name)
    assert resumed["resumed"] is True and resumed["done"] == len(finished)
    assert manifest(run_dir)["status"] == "running"
    proc = bench("run-all", run_dir)
    assert proc.returncode == 0, proc.stderr
    assert f"{lost}: discarding the unfinished attempt" in proc.stdout
    assert sum("already done" in ln for ln in proc.stdout.splitlines()) == len(finished)
    m = manifest(run_dir)
    assert m["status"] == "complete" and m["runs_done"] == 12 and len(m["resumed_utc"]) == 1
    for key, content in finished.items():  # earlier runs kept as they were
        assert (run_dir / "raw" / key / "done.json").read_bytes() == content
    assert (run_dir / "raw" / lost / "done.json").exists()
    assert len(rows(run_dir / "runs.csv")) == 10


def test_resume_with_another_configuration_is_refused(two, tmp_path):
    _, _, config = two
    run_dir = Path(init(tmp_path / "results", config)["run_dir"])
    data = json.loads(config.read_text())
    data["config"]["repetitions"] = 3
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    proc = bench("init", "--results-dir", tmp_path / "results", "--run-id", run_dir.name, "--config", other)
    assert proc.returncode == 1
    assert "different configuration" in proc.stderr and "config.repetitions: 2 -> 3" in proc.stderr


def test_aborted_ab_run_is_recorded_not_raised(services, tmp_path):
    hanging = services("container", "--hang-nth", "3", "--hang-s", "3")
    config = write_config(tmp_path / "bench.json", {"container": hanging.platform()}, ab_timeout_s=1)
    run_dir = Path(init(tmp_path / "results", config)["run_dir"])
    proc = bench("run-one", run_dir, "--experiment", "concurrency", "--platform", "container", "--concurrency", 1,
                 "--repetition", 1)
    assert proc.returncode == 0, proc.stderr
    assert "ABORTED" in proc.stdout and "apr_pollset_poll" in proc.stdout
    done = json.loads((run_dir / "raw" / "concurrency-container-c1-r1" / "done.json").read_text())
    assert done["outcome"] == "aborted" and done["ab"]["completed_before_abort"] == 2
    bench("finalize", run_dir)
    (row,) = rows(run_dir / "runs.csv")
    assert row["outcome"] == "aborted" and "timeout" in row["error"]
    assert row["completed"] == "" and row["requests_per_s"] == ""  # ab printed no statistics: none invented
    assert manifest(run_dir)["status"] == "incomplete"


def test_probe_records_requests_that_got_no_answer(tmp_path):
    closed = free_port()
    platform = {"url": f"http://127.0.0.1:{closed}/predict"}
    config = write_config(tmp_path / "bench.json", {"container": platform})
    run_dir = Path(init(tmp_path / "results", config)["run_dir"])
    proc = bench("probe", run_dir, "--platform", "container", "--requests", 3)
    assert proc.returncode == 0 and "0/3 ok" in proc.stdout
    bench("finalize", run_dir)
    probe = rows(run_dir / "probe.csv")
    assert [p["status"] for p in probe] == ["0", "0", "0"]
    assert all("ConnectionRefused" in p["error"] and p["response_ms"] == "" for p in probe)


@pytest.mark.parametrize(("change", "message"), [
    ({"config": {"concurency": [1]}}, "unknown knobs ['concurency']"),
    ({"config": {"concurrency": [1, 500]}}, "requests_per_run"),
    ({"config": {"concurrency": [1, 50]}}, "warmup_requests"),
    ({"platforms": {"function": {"url": "127.0.0.1:30080"}}}, "platforms.function.url"),
    ({"platforms": {"lambda": {"url": "http://127.0.0.1:1/", "kind": "aws-lambda"}}},
     "unknown platform kind 'aws-lambda'; known kinds:"),
    ({"platforms": {"Function": {"url": "http://127.0.0.1:1/", "kind": "kubeless"}}}, "platform name 'Function'"),
    ({"platforms": {"function": {"url": "http://127.0.0.1:1/", "kind": "kubeless", "log_source": "file"}}},
     "needs 'log_file'"),
    ({"platforms": {"a": {"url": "http://127.0.0.1:1/", "kind": "container"},
                    "b": {"url": "http://127.0.0.1:2/", "kind": "container"}}}, "all have role 'baseline'"),
    ({"platforms": {"a": {"url": "http://127.0.0.1:1/", "kind": "ingress-nginx", "via": "b"}}},
     "platforms.a.via must name another platform"),
    ({"config": {"payload": "holiday.png"}}, "neither a generated payload name"),
])
def test_configuration_errors_name_the_key(tmp_path, change, message):
    data = {"profile": "local", "platforms": {"function": {"url": "http://127.0.0.1:1/", "kind": "kubeless"}},
            **change}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    proc = bench("init", "--results-dir", tmp_path / "results", "--config", path)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_steps_need_a_run_folder(tmp_path):
    proc = bench("run-one", tmp_path, "--experiment", "warmup", "--platform", "function", "--concurrency", 1,
                 "--repetition", 0)
    assert proc.returncode == 1 and "not a run folder" in proc.stderr
    proc = bench("init", "--results-dir", tmp_path, "--run-id", "20260101T000000Z")
    assert proc.returncode == 1 and "needs --config" in proc.stderr


def test_every_subcommand_has_help():
    for command in ("init", "plan", "run-one", "probe", "coldstart", "run-all", "finalize", "example-config"):
        proc = bench(command, "--help")
        assert proc.returncode == 0 and "usage: python -m analysis.bench" in proc.stdout, command


# ------------------------------------------------------------------------------------------- Docker
@pytest.mark.docker
def test_docker_logs_stats_cgroups_and_cold_start(tmp_path, base_image):
    """Real containers from the project's base image (the conftest fixture builds it when missing)."""
    tag = uuid.uuid4().hex[:8]
    names, platforms = [], {}
    try:
        for platform, path, resources in (("function", "/", "docker"), ("container", "/predict", "auto")):
            name, port = f"kde-benchtest-{platform}-{tag}", free_port()
            subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", "--cpus", "1",
                            "--memory", "256m", "-v", f"{SERVER}:/srv/bench_server.py:ro", base_image,
                            "python3", "-u", "/srv/bench_server.py", "--port", "8080", "--bind", "0.0.0.0",
                            "--platform", platform, "--startup-delay-s", "0.5"],
                           check=True, capture_output=True, timeout=60)
            names.append(name)
            wait_http(port, 30)
            platforms[platform] = {"url": f"http://127.0.0.1:{port}{path}", "container": name,
                                   "server_time_metric": METRIC, "resource_source": resources}
        config = write_config(tmp_path / "bench.json", platforms, concurrency=[2], repetitions=1,
                              requests_per_run=30, probe_requests=2, coldstart_repetitions=1, log_settle_s=0.3)
        run_dir = Path(init(tmp_path / "results", config)["run_dir"])
        m = manifest(run_dir)
        assert m["versions"]["docker"] and m["images"]["function"]["memory_bytes"] == 256 * 2**20
        proc = bench("run-all", run_dir, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert manifest(run_dir)["status"] == "complete"

        runs = {r["run_key"]: r for r in rows(run_dir / "runs.csv")}
        predictions = rows(run_dir / "predictions.csv")
        for key, r in runs.items():  # docker logs --since/--until caught exactly this run's lines
            assert sum(1 for p in predictions if p["run_key"] == key) == int(r["requests"]), key
            assert float(r["mem_limit_bytes"]) == 256 * 2**20, key
            assert 0 < float(r["mem_max_bytes"]) < 256 * 2**20
            assert r["cpu_max_pct"] != ""
            assert float(r["reference_ms"]) > 0, key  # the machine's speed, timed just before the run
        cold = rows(run_dir / "coldstart.csv")
        assert {c["platform"] for c in cold} == {"function", "container"}
        for c in cold:  # the server waits 0.5 s before listening: the cold start must include it
            assert c["outcome"] == "ok" and 500 <= float(c["start_to_first_200_ms"]) < 30_000
            assert int(c["attempts"]) >= 1
        sources = {json.loads((run_dir / "raw" / key / "done.json").read_text())["resources"]["source"]
                   for key in runs if "container" in key}
        assert sources == {"cgroup"}  # auto: this machine sees the container's cgroup
        startup = (run_dir / "raw" / "coldstart-function-r1" / "server.log").read_text()
        assert '"event": "listening"' in startup and '"event": "prediction"' in startup
        # issue 14: the serving container's processes (found by the container id in their cgroup) are not
        # competitors of the run that loads them
        during = json.loads((run_dir / "raw" / "concurrency-container-c2-r1" / "system.json").read_text())["during"]
        assert during["serving_cpu_pct"] > 0 and all(c["role"] == "other" for c in during["competitors"])
        assert any(c["role"] == "serving" for c in during["busiest"]) or during["serving_cpu_pct"] < 5
    finally:
        for name in names:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)
