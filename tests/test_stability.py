"""The stability step (analysis/bench/stability.py): when it asks for more repetitions, its place in the plan, and
end to end against a real server whose latency changes between repetitions: the cell gets extra repetitions up
to the cap, stays unstable, and the report (which accepts repetitions beyond the planned ones) flags it."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from analysis.bench.config import DEFAULTS, EXTRA_REPETITIONS, config_from_dict, make_plan
from analysis.bench.stability import Cell, cv_pct, why_more
from analysis.load import load_results
from analysis.summarize import per_run
from analysis.tables import Settings, concurrency_table
from tests.platform_kinds import with_kinds

REPO = Path(__file__).resolve().parents[1]
# the experiments after the stability step, switched off where this version of the driver has them
OTHER_EXPERIMENTS_OFF = {k: v for k, v in {"rate_platforms": [], "overload_concurrency": [], "nowarmup_requests": 0,
                                           "bodylimit_bytes": 0}.items() if k in DEFAULTS}
KNOBS = {**DEFAULTS, "repetitions": 5, "requests_per_run": 140, "stability_cv_pct": 5.0,
         "stability_max_extra_repetitions": 2}


def test_cv_is_the_sample_standard_deviation_over_the_mean() -> None:
    x = [100.0, 110.0, 90.0, 105.0]
    assert cv_pct(x) == pytest.approx(np.std(x, ddof=1) / np.mean(x) * 100)
    assert cv_pct([100.0]) is None


def test_when_a_cell_asks_for_more() -> None:
    steady = Cell("function", 20, {r: 300.0 + r for r in range(1, 6)}, served=700, repetitions=set(range(1, 6)))
    assert why_more(steady, KNOBS) is None  # CV 0.5 %, 700 served
    jumpy = Cell("function", 20, {1: 302, 2: 404, 3: 310, 4: 390, 5: 300}, served=700, repetitions=set(range(1, 6)))
    assert "vary by" in why_more(jumpy, KNOBS)
    capped = Cell("function", 20, {**jumpy.medians, 6: 400, 7: 300}, served=980, repetitions=set(range(1, 8)))
    assert why_more(capped, KNOBS) is None  # two extra repetitions: the cap
    short = Cell("function", 20, dict(steady.medians), served=640, repetitions=set(range(1, 6)))
    assert why_more(short, KNOBS) == "640 served requests, a p99 needs 662"
    # a plan that never meant to reach a p99 (5 x 100 requests) is not topped up for one
    assert why_more(short, {**KNOBS, "requests_per_run": 100}) is None


def test_the_step_runs_after_the_concurrency_runs_and_before_the_probe() -> None:
    platforms = with_kinds({"function": {"url": "http://127.0.0.1:9/"}, "container": {"url": "http://127.0.0.1:9/predict"}})
    plan = make_plan(config_from_dict({"config": {"concurrency": [1, 20]}, "platforms": platforms}), "/r")
    steps = [i.step for i in plan]
    at = steps.index(EXTRA_REPETITIONS)
    assert set(steps[:at]) == {"warmup", "concurrency"} and "concurrency" not in steps[at:]
    assert plan[at].argv == [EXTRA_REPETITIONS, "/r"]
    off = make_plan(config_from_dict({"config": {"stability_max_extra_repetitions": 0}, "platforms": platforms}),
                    "/r")
    assert EXTRA_REPETITIONS not in [i.step for i in off]


# ------------------------------------------------------------------------------------------------ end to end
def _server(port: int, delay_ms: float, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "bench_server.py"), "--port", str(port),
                             "--delay-ms", str(delay_ms), "--log", str(log)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"bench_server did not listen on {port}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.bench", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v ab"], capture_output=True).returncode != 0,
                    reason="needs ab (apt-get install apache2-utils)")
def test_an_unstable_cell_gets_extra_repetitions_and_is_flagged(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "server.log"
    config = tmp_path / "bench.json"
    config.write_text(json.dumps({"profile": "local", "platforms": {"container": {"kind": "container",
        "url": f"http://127.0.0.1:{port}/predict", "server_time_metric": "bench_request_duration_seconds",
        "log_source": "file", "log_file": str(log)}}, "config": {
        "concurrency": [1], "repetitions": 2, "requests_per_run": 30, "warmup_requests": 4, "probe_requests": 0,
        "paired_requests": 0, "coldstart_repetitions": 0, "log_settle_s": 0.05, "quiet_check_s": 0.1,
        "stability_cv_pct": 5.0, "stability_max_extra_repetitions": 2, "stability_budget_s": 60,
        **OTHER_EXPERIMENTS_OFF}}))
    server = _server(port, 5, log)
    try:
        init = bench("init", "--config", config, "--results-dir", tmp_path / "results")
        assert init.returncode == 0, init.stderr
        run_dir = Path(json.loads(init.stdout)["run_dir"])
        plan = json.loads(bench("plan", run_dir).stdout)
        assert [i["run_key"] for i in plan] == ["warmup-container-c1-r0", "concurrency-container-c1-r1",
                                                "concurrency-container-c1-r2", EXTRA_REPETITIONS]
        for item in plan[:2]:
            assert bench(*item["argv"]).returncode == 0
        _stop(server)
        server = _server(port, 40, log)  # the same service, now 8 x slower: repetition 2 disagrees with 1
        assert bench(*plan[2]["argv"]).returncode == 0
        step = bench(*plan[3]["argv"])
        assert step.returncode == 0, step.stderr
        assert "2 extra repetition(s)" in step.stdout and "still unstable: container c=1" in step.stdout
        assert bench(*plan[3]["argv"]).stdout.strip().endswith("already done")
    finally:
        _stop(server)
    done = json.loads((run_dir / "raw" / EXTRA_REPETITIONS / "done.json").read_text())
    assert [a["repetition"] for a in done["added"]] == [3, 4] and done["stopped"] == "cap"
    assert done["cells"] == [{"platform": "container", "concurrency": 1, "repetitions": 4, "extra": 2,
                              "cv_pct": done["cells"][0]["cv_pct"], "served": 120, "stable": False}]
    assert bench("finalize", run_dir).returncode == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["runs_done"] == manifest["runs_planned"] == 4
    with (run_dir / "runs.csv").open(newline="") as fh:
        reps = sorted(int(r["repetition"]) for r in csv.DictReader(fh) if r["experiment"] == "concurrency")
    assert reps == [1, 2, 3, 4]
    # the report's loader and concurrency table take the extra repetitions (the whole report needs both platforms;
    # tests/test_analysis.py renders one with an extra repetition)
    results = load_results(run_dir)
    assert results.complete and not results.warnings
    row = concurrency_table(per_run(results), results, Settings()).iloc[0]
    assert row["repetitions"] == 4 and row["repetitions_planned"] == 2 and row["extra_repetitions"] == 2
    assert bool(row["unstable"]) and row["median_cv_pct"] == pytest.approx(done["cells"][0]["cv_pct"], abs=0.01)
