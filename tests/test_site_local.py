"""site.yml / teardown.yml on the local profile, through ansible-runner, against the real Docker engine.

The run uses its own ports, container names and model folder so it never touches a user's deployment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from model import LABELS
from model.inference import RESULT_JSON_LENGTH
from tests.conftest import BASE_IMAGE, ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FUNCTION_PORT, APP_PORT = 31080, 31081
INGRESS_PORT = 31082  # issue 11: the test deployment's own local ingress, folder and pod cgroup
NAMES = ("kde-test-site-function", "kde-test-site-app")


def run_playbook(playbook: str, tmp_path: Path, **extravars):
    import ansible_runner

    base = {
        "function_host_port": FUNCTION_PORT,
        "app_host_port": APP_PORT,
        "function_container_name": NAMES[0],
        "app_container_name": NAMES[1],
        "base_image_source": "debootstrap",
        "base_image_local_name": BASE_IMAGE,
        "model_artifacts_synthetic_dir": str(tmp_path / "data"),
        "model_artifacts_synthetic_images_per_class": 30,
        "model_artifacts_epochs": 2,
        "model_dir": str(ROOT / "build" / "test-site-model"),
        "serving_images_model_dir": "build/test-site-model",
        "teardown_stop_engine": False,
        "ingress_host_port": INGRESS_PORT,
        "function_ingress_dir": str(ROOT / "build" / "test-site-ingress"),
        "local_ingress_temp_dir": "/tmp/kubeless-dl-eval-ingress-test-site",
        "function_pod_cgroup": "/kde-test-site-pod",
    }
    base.update(extravars)
    env = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "ANSIBLE_NOCOLOR": "1",
    }
    private = tmp_path / f"runner-{playbook.replace('/', '-')}-{len(list(tmp_path.glob('runner-*')))}"
    private.mkdir()
    return ansible_runner.run(
        private_data_dir=str(private),
        project_dir=str(ROOT),
        playbook=playbook,
        inventory=str(ROOT / "inventory" / "local" / "hosts.yml"),
        extravars=base,
        envvars=env,
        quiet=True,
        timeout=3000,
    )


def output(result) -> str:
    return result.stdout.read()


def predict(url: str, data: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "image/jpeg"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = resp.read()
        assert len(body) == RESULT_JSON_LENGTH
        return resp.status, json.loads(body)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, docker_engine, base_image):
    tmp_path = tmp_path_factory.mktemp("site")
    first = run_playbook("site.yml", tmp_path)
    assert first.rc == 0, output(first)[-6000:]
    yield tmp_path, first
    run_playbook("teardown.yml", tmp_path)


def test_site_serves_real_predictions_on_both_platforms(deployed, sample_jpegs):
    for label, data in sample_jpegs.items():
        for url in (f"http://127.0.0.1:{FUNCTION_PORT}/", f"http://127.0.0.1:{APP_PORT}/predict"):
            status, result = predict(url, data)
            assert status == 200 and result["label"] in LABELS, (label, url, result)


def test_containers_are_capped_like_the_paper_vms(deployed):
    for name in NAMES:
        info = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True,
                                         check=True).stdout)[0]
        assert info["HostConfig"]["NanoCpus"] == 2_000_000_000
        assert info["HostConfig"]["Memory"] == 2 * 1024**3
        bindings = [b for v in info["HostConfig"]["PortBindings"].values() for b in v]
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}


def test_second_run_changes_nothing(deployed):
    tmp_path, _ = deployed
    second = run_playbook("site.yml", tmp_path)
    assert second.rc == 0, output(second)[-4000:]
    assert second.stats["changed"].get("localhost", 0) == 0, output(second)[-6000:]


def test_not_a_dataset_stops_with_instructions(deployed):
    tmp_path, _ = deployed
    empty = tmp_path / "not-a-dataset"
    empty.mkdir(exist_ok=True)
    (empty / "readme.txt").write_text("no photos here")
    result = run_playbook("site.yml", tmp_path, model_data_dir=str(empty))
    assert result.rc != 0
    text = output(result)
    assert "cannot be used" in text and "neither a Yelp photo layout" in text


def test_taken_port_stops_with_instructions(deployed):
    tmp_path, _ = deployed
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        result = run_playbook(
            "site.yml", tmp_path, function_host_port=port, function_container_name="kde-test-site-portcheck",
            tags="deploy",
        )
    assert result.rc != 0
    assert f"Port 127.0.0.1:{port} is already taken by another program" in output(result)
    assert subprocess.run(["docker", "inspect", "kde-test-site-portcheck"], capture_output=True).returncode != 0


def test_bench_and_analysis_on_what_site_deployed(deployed):
    """bench.yml with a tiny matrix against the real containers, then python -m analysis on its folder."""
    import csv

    tmp_path, _ = deployed
    results_dir = tmp_path / "results"
    result = run_playbook(
        "bench.yml", tmp_path,
        bench_results_dir=str(results_dir), bench_concurrency=[1, 5], bench_repetitions=1,
        bench_requests_per_run=60, bench_warmup_requests=10, bench_probe_requests=3, bench_coldstart_repetitions=1,
        bench_overload_concurrency=[50], bench_overload_requests=60, bench_nowarmup_requests=5,  # issue 11, short
        bench_rate_capacity_pct=[50], bench_rate_duration_s=3, bench_stability_max_extra_repetitions=0,
        bench_rate_search_platforms=["container"], bench_rate_search_bracket_pct=[50, 100],  # issue 24, short
        bench_rate_search_max_probes=3, bench_rate_search_budget_s=60,
    )
    text = output(result)
    assert result.rc == 0, text[-6000:]
    (run_dir,) = [p for p in results_dir.iterdir() if p.is_dir()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["runs_done"] == manifest["runs_planned"]
    assert f"next: python -m analysis {run_dir}" in text
    with open(run_dir / "runs.csv") as fh:
        runs = list(csv.DictReader(fh))
    measured = [r for r in runs if r["experiment"] == "concurrency"]
    assert {(r["platform"], r["concurrency"]) for r in measured} == {
        ("function", "1"), ("function", "5"), ("container", "1"), ("container", "5"),
        ("function_ingress", "1"), ("function_ingress", "5")}  # issue 11
    for r in measured:
        assert int(r["completed"]) == 60 and r["outcome"] == "ok"
        assert float(r["server_mean_ms"]) > 0 and float(r["prediction_mean_ms"]) > 0
        assert float(r["mem_max_bytes"]) > 0 and int(float(r["mem_limit_bytes"])) == 2 * 1024**3
    with open(run_dir / "bodylimit.csv") as fh:  # issue 11: nginx answers the body over 1 MiB itself
        limits = {r["platform"]: r for r in csv.DictReader(fh)}
    assert limits["function_ingress"]["status"] == "413" and limits["function_ingress"]["answered_by"] == "ingress"
    with open(run_dir / "errors_by_layer.csv") as fh:
        layer_rows = list(csv.DictReader(fh))
    assert {r["experiment"] for r in layer_rows} >= {"concurrency", "overload", "nowarmup"}
    with open(run_dir / "rate_runs.csv") as fh:  # issue 13: one open-loop rate per platform, at 50 % of capacity
        rates = list(csv.DictReader(fh))
    assert {r["platform"] for r in rates} == {"function", "container"}
    with open(run_dir / "rate_search.csv") as fh:  # issue 24: the search as a plan step, through bench.yml
        (search,) = list(csv.DictReader(fh))
    probes = [r for r in rates if r["search_probe"]]
    assert search["platform"] == "container" and 1 <= int(search["probes"]) == len(probes) <= 3
    assert {r["platform"] for r in probes} == {"container"} and not any(r["capacity_pct"] for r in probes)
    with open(run_dir / "coldstart.csv") as fh:
        cold = list(csv.DictReader(fh))
    assert {c["platform"] for c in cold} == {"function", "container"}
    assert all(float(c["start_to_first_200_ms"]) > 0 for c in cold)
    report = run_dir / "report"
    proc = subprocess.run([sys.executable, "-m", "analysis", str(run_dir), "--out", str(report)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (report / "report.md").read_text()
    assert "## Verdict" in md and "Table 1" in md
    assert (report / "report.html").stat().st_size > 10_000


def test_bench_stops_clearly_when_nothing_is_deployed(tmp_path):
    result = run_playbook("bench.yml", tmp_path, bench_results_dir=str(tmp_path / "results"),
                          function_host_port=1, app_host_port=2)
    assert result.rc != 0
    assert "does not answer" in output(result) and "ansible-playbook site.yml" in output(result)


def test_teardown_leaves_nothing(deployed):
    tmp_path, _ = deployed
    result = run_playbook("teardown.yml", tmp_path)
    assert result.rc == 0, output(result)[-4000:]
    for name in NAMES:
        assert subprocess.run(["docker", "inspect", name], capture_output=True).returncode != 0
    # and site.yml brings everything back (the fixture's teardown then removes it again)
    again = run_playbook("site.yml", tmp_path)
    assert again.rc == 0, output(again)[-4000:]
