"""The paper profile's autoscaling run through the bench driver (analysis/bench/autoscale.py, runner.autoscale), its
table (autoscale.csv), its report section, and roles/cluster_bench + playbooks/paper/autoscale.yml, which apply the
HPAs and call the driver.

No cluster runs here, and nothing below pretends to be one: the tests check the kubectl command the sampler sends,
how it reads what a Kubernetes 1.10 API server answers (JSON written by hand from the API reference), the plan, the
tidy table and the report made from a raw/ folder written by hand as the sampler writes it, the sampler's loop and
the step against the real kubectl and ab of this machine with no cluster behind them, and the playbooks statically.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.bench import autoscale as autoscaling
from analysis.bench.cluster import Kubectl
from analysis.bench.config import (
    ConfigError,
    _platform,
    autoscale_platforms,
    config_from_dict,
    example_config,
    make_plan,
)
from analysis.bench.manifest import RunFolder, create, write_json
from tests.conftest import ROOT
from tests.platform_kinds import with_kinds
from tests.test_cluster_driver import ENV, INVENTORY, ROLE, VENV_BIN  # one Ansible environment for both

# --- What a Kubernetes 1.10 API server answers --------------------------------------------------------------------
# Written by hand from the Kubernetes 1.10 API reference
# (https://v1-10.docs.kubernetes.io/docs/reference/generated/kubernetes-api/v1.10/): "Deployment v1 apps" with
# DeploymentSpec.replicas and DeploymentStatus {availableReplicas, conditions, observedGeneration, readyReplicas,
# replicas, updatedReplicas, unavailableReplicas}, and "HorizontalPodAutoscaler v1 autoscaling" with
# HorizontalPodAutoscalerSpec {maxReplicas, minReplicas, scaleTargetRef, targetCPUUtilizationPercentage} and
# HorizontalPodAutoscalerStatus {currentCPUUtilizationPercentage, currentReplicas, desiredReplicas, lastScaleTime,
# observedGeneration}. readyReplicas, replicas, currentCPUUtilizationPercentage and lastScaleTime are `omitempty`
# in the Go types (k8s.io/api v1.10 apps/v1/types.go, autoscaling/v1/types.go), so a zero or unknown value is absent.
# `kubectl get A B --output json` prints the two objects in a List (kind List, apiVersion v1).
# The Deployment is the one the Kubeless controller makes for the Function kde-function (labels function and
# created-by), two minutes into a load that made its HPA (named after the function, as the controller names it) ask
# for a second replica; the HPA is read as autoscaling/v1 though the controller created it as v2beta1, so the API
# server adds the v2beta1-only fields as annotations.
DEPLOYMENT_SCALING = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "kde-function", "namespace": "default", "uid": "5e0b6a1c-c4f5-11e8-9a4b-525400d3a1b2",
        "resourceVersion": "48211", "generation": 3, "creationTimestamp": "2018-10-01T09:12:44Z",
        "labels": {"created-by": "kubeless", "function": "kde-function"},
        "annotations": {"deployment.kubernetes.io/revision": "1"},
    },
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"created-by": "kubeless", "function": "kde-function"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "template": {"metadata": {"labels": {"created-by": "kubeless", "function": "kde-function"}},
                     "spec": {"containers": [{"name": "kde-function", "image": "kubeless-dl-eval/function:paper",
                                              "resources": {"requests": {"cpu": "400m", "memory": "448Mi"},
                                                            "limits": {"memory": "448Mi"}}}]}},
    },
    "status": {
        "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1,
        "unavailableReplicas": 1,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                        "lastUpdateTime": "2018-10-01T09:13:40Z", "lastTransitionTime": "2018-10-01T09:13:40Z",
                        "message": "Deployment has minimum availability."}],
    },
}
HPA_SCALING = {
    "apiVersion": "autoscaling/v1",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {
        "name": "kde-function", "namespace": "default", "uid": "5e1f2b9d-c4f5-11e8-9a4b-525400d3a1b2",
        "resourceVersion": "48209", "creationTimestamp": "2018-10-01T09:12:45Z",
        "labels": {"created-by": "kubeless", "function": "kde-function"},
        "annotations": {
            "autoscaling.alpha.kubernetes.io/conditions": "[{\"type\":\"AbleToScale\",\"status\":\"True\"}]",
            "autoscaling.alpha.kubernetes.io/current-metrics": "[{\"type\":\"Resource\",\"resource\":{\"name\":"
                                                               "\"cpu\",\"currentAverageUtilization\":187}}]",
        },
    },
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1beta1", "kind": "Deployment", "name": "kde-function"},
             "minReplicas": 1, "maxReplicas": 2, "targetCPUUtilizationPercentage": 70},
    "status": {"observedGeneration": 2, "lastScaleTime": "2018-10-01T09:14:31Z", "currentReplicas": 1,
               "desiredReplicas": 2, "currentCPUUtilizationPercentage": 187},
}
# Just applied: the app's Deployment has its one pod starting (readyReplicas absent: zero), and its HPA has no CPU
# figure yet (metrics-server has not scraped the pod: currentCPUUtilizationPercentage and lastScaleTime absent).
DEPLOYMENT_STARTING = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "kde-app", "namespace": "default", "generation": 1, "labels": {"app": "kde-app"}},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "kde-app"}}},
    "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1},
}
HPA_NO_METRICS = {
    "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "kde-app", "namespace": "default"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kde-app"},
             "minReplicas": 1, "maxReplicas": 2, "targetCPUUtilizationPercentage": 70},
    "status": {"currentReplicas": 1, "desiredReplicas": 1},
}


def kubectl_list(*items: dict) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": list(items),
            "metadata": {"resourceVersion": "", "selfLink": ""}}


def kubectl_platform(name: str = "function", kubectl: dict | None = None, **overrides) -> object:
    """A platform on its cluster; `kubectl` overrides keys of its kubectl group."""
    group = {"target": "--selector function=f", "namespace": "default", "context": "kde-kubeless",
             "kubeconfig": "/tmp/kde-kubeless.yaml", "deployment": "kde-function", "selector": "function=kde-function",
             **(kubectl or {})}
    settings = {"url": "http://192.168.150.10/predict", "log_source": "kubectl", "restart": "kubectl-scale",
                "kubectl": group, **overrides}
    return _platform(name, with_kinds({name: {k: v for k, v in settings.items() if v is not ...}})[name])


# --- kubectl argv --------------------------------------------------------------------------------------------------
def test_the_sampler_reads_the_deployment_and_its_hpa_in_one_kubectl_call_on_the_platforms_own_cluster(tmp_path):
    kubectl = Kubectl.for_platform(kubectl_platform())
    sampler = autoscaling.ReplicaSampler(kubectl, "kde-function", 5.0, tmp_path / "autoscale.jsonl")
    assert sampler.argv() == [
        "kubectl", "--kubeconfig", "/tmp/kde-kubeless.yaml", "--context", "kde-kubeless", "--namespace", "default",
        "get", "deployment/kde-function", "horizontalpodautoscalers.v1.autoscaling/kde-function", "--output", "json",
    ]
    # the HPA is pinned to autoscaling/v1: the function's (made as v2beta1 by Kubeless) and the app's read alike
    assert autoscaling.hpa_resource("kde-app") == "horizontalpodautoscalers.v1.autoscaling/kde-app"


# --- Parsing what kubectl prints -----------------------------------------------------------------------------------
def test_a_scaling_sample_is_read_from_the_deployment_and_the_hpa():
    row = autoscaling.parse_objects(kubectl_list(DEPLOYMENT_SCALING, HPA_SCALING))
    assert row == {
        "spec_replicas": 2, "status_replicas": 2, "ready_replicas": 1,
        "hpa_min_replicas": 1, "hpa_max_replicas": 2, "hpa_target_cpu_pct": 70,
        "hpa_current_replicas": 1, "hpa_desired_replicas": 2, "hpa_cpu_pct": 187,
        "hpa_last_scale_utc": "2018-10-01T09:14:31Z",
    }


def test_fields_the_api_server_omits_when_zero_read_as_zero_and_an_unknown_cpu_stays_empty():
    row = autoscaling.parse_objects(kubectl_list(DEPLOYMENT_STARTING, HPA_NO_METRICS))
    assert (row["spec_replicas"], row["status_replicas"], row["ready_replicas"]) == (1, 1, 0)
    assert (row["hpa_current_replicas"], row["hpa_desired_replicas"]) == (1, 1)
    assert row["hpa_cpu_pct"] is None and row["hpa_last_scale_utc"] is None


def test_one_object_alone_and_the_raw_parts_a_sample_keeps():
    row = autoscaling.parse_objects(DEPLOYMENT_SCALING)  # kubectl get of one object prints it without a List
    assert row["ready_replicas"] == 1 and row["hpa_desired_replicas"] is None
    kept = autoscaling.raw_parts(kubectl_list(DEPLOYMENT_SCALING, HPA_SCALING))
    assert kept["deployment"] == {"status": DEPLOYMENT_SCALING["status"]}
    assert kept["horizontalpodautoscaler"] == {"status": HPA_SCALING["status"], "spec": HPA_SCALING["spec"]}


# --- Knobs and the plan --------------------------------------------------------------------------------------------
def paper_like(**knobs) -> dict:
    data = example_config()
    data["profile"] = "paper"
    data["config"] = {"coldstart_repetitions": 0, **knobs}
    data["platforms"] = {
        "function": kubectl_platform().to_dict(),
        "container": kubectl_platform("container", url="http://192.168.150.11:30081/predict",
                                      kubectl={"context": "kde-kubernetes", "kubeconfig": "/tmp/kde-kubernetes.yaml",
                                               "deployment": "kde-app", "selector": "app=kde-app"}).to_dict(),
    }
    return data


def test_the_plan_has_no_autoscaling_locally_and_one_last_step_per_chosen_kubectl_platform():
    local = make_plan(config_from_dict(example_config()), "/r")
    assert not [i for i in local if i.step == "autoscale"]  # default []: nothing to scale without a cluster

    plan = make_plan(config_from_dict(paper_like(autoscale_platforms=["function", "container"],
                                                 autoscale_concurrency=20)), "/r")
    steps = [i for i in plan if i.step == "autoscale"]
    assert plan[-2:] == steps  # last: the HPA leaves more replicas behind than the other steps had
    assert [i.run_key for i in steps] == ["autoscale-function-c20", "autoscale-container-c20"]
    assert steps[0].argv == ["autoscale", "/r", "--platform", "function"]
    assert (steps[0].platform, steps[0].concurrency) == ("function", 20)

    # a platform chosen but not reachable by kubectl (no kubeconfig: the local containers) gets no step
    data = paper_like(autoscale_platforms="function,container")  # as -e bench_autoscale_platforms=... passes it
    data["platforms"]["container"] = example_config()["platforms"]["container"]
    config = config_from_dict(data)
    assert config.knobs["autoscale_platforms"] == ["function", "container"]
    assert autoscale_platforms(config) == ["function"]


@pytest.mark.parametrize(("knobs", "message"), [
    ({"autoscale_concurrency": 0}, "'autoscale_concurrency' must be an integer >= 1"),
    ({"autoscale_duration_s": 0}, "'autoscale_duration_s' must be a number > 0"),
    ({"autoscale_sample_interval_s": "often"}, "'autoscale_sample_interval_s' must be a number > 0"),
    ({"autoscale_tail_s": -1}, "'autoscale_tail_s' must be a number >= 0"),
    ({"autoscale_platforms": ["lambda"]}, "'autoscale_platforms' must be a list of distinct platforms"),
    ({"autoscale_platforms": ["function", "function"]}, "'autoscale_platforms' must be a list of distinct"),
])
def test_wrong_autoscaling_knobs_are_refused_with_the_knob_named(knobs, message):
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(paper_like(**knobs))
    assert message in str(excinfo.value)


def test_knobs_from_the_command_line_are_read_as_their_type():
    knobs = config_from_dict(paper_like(autoscale_concurrency="5", autoscale_duration_s="120",
                                        autoscale_sample_interval_s="2.5", autoscale_tail_s="0")).knobs
    assert (knobs["autoscale_concurrency"], knobs["autoscale_duration_s"], knobs["autoscale_sample_interval_s"],
            knobs["autoscale_tail_s"]) == (5, 120, 2.5, 0)


# --- A run folder written by hand as the step writes it -----------------------------------------------------------
KUBECONFIG_NOWHERE = """apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:9"}
  name: nowhere
contexts:
- context: {cluster: nowhere, user: nobody, namespace: default}
  name: kde-kubeless
current-context: kde-kubeless
users:
- name: nobody
  user: {token: not-a-token}
"""


def paper_folder(tmp_path: Path, url: str | None = None) -> RunFolder:
    """A paper-profile run folder: one tiny ab run per platform and the two autoscaling runs; the clusters'
    kubeconfig points nowhere (127.0.0.1:9)."""
    data = paper_like(autoscale_platforms=["function", "container"], repetitions=1, concurrency=[1],
                      requests_per_run=1, warmup_requests=1, probe_requests=0, paired_requests=0,
                      overload_concurrency=[],
                      nowarmup_requests=0, bodylimit_bytes=0, stability_max_extra_repetitions=0, rate_platforms=[],
                      autoscale_duration_s=120, autoscale_sample_interval_s=5, autoscale_tail_s=10)
    kubeconfig = tmp_path / "kde-kubeless.yaml"
    kubeconfig.write_text(KUBECONFIG_NOWHERE)
    for platform in data["platforms"].values():
        platform["kubectl"]["kubeconfig"] = str(kubeconfig)
        platform["url"] = url or platform["url"]
    return create(tmp_path / "results", "20261129T200000Z", config_from_dict(data))


@pytest.fixture
def run_folder(tmp_path) -> RunFolder:
    return paper_folder(tmp_path)


@pytest.fixture
def measured_folder(tmp_path) -> RunFolder:
    """The same with its ab runs done for real against tests/bench_server.py on 127.0.0.1 (the report needs runs),
    the autoscaling runs left to write by hand."""
    if shutil.which("ab") is None:
        pytest.skip("needs ab (apt-get install apache2-utils)")
    from tests.test_bench_runner import Service

    service = Service(tmp_path, "function")
    try:
        folder = paper_folder(tmp_path, f"http://127.0.0.1:{service.port}/predict")
        for item in folder.plan():
            if item.step != "autoscale":
                done = subprocess.run([sys.executable, "-m", "analysis.bench", *item.argv], cwd=ROOT,
                                      capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, done.stderr
    finally:
        service.stop()
    return folder


def write_autoscale_run(folder: RunFolder, platform: str, deployment: dict, hpa: dict, start: float) -> None:
    """raw/autoscale-<platform>-c10/ as runner.autoscale leaves it: samples every 5 s from 5 s before the load,
    the HPA asking for a second replica at 35 s and the replica ready at 60 s, and done.json last."""
    run_key = f"autoscale-{platform}-c10"
    out = folder.run_dir(run_key)
    out.mkdir(parents=True)
    write_json(out / autoscaling.HPA_FILE, hpa)
    lines = []
    for t in range(-5, 131, 5):
        phase = "before" if t < 0 else ("load" if t < 120 else "tail")
        desired, ready = (2 if t >= 35 else 1), (2 if t >= 60 else 1)
        cpu = None if t < 15 else (180 if t < 60 else 95 if t < 120 else 10)
        dep = {**deployment, "spec": {**deployment["spec"], "replicas": desired},
               "status": {**deployment["status"], "replicas": desired, "readyReplicas": ready}}
        status = {"currentReplicas": ready, "desiredReplicas": desired}
        if cpu is not None:
            status["currentCPUUtilizationPercentage"] = cpu
        doc = kubectl_list(dep, {**hpa, "status": status})
        epoch = start + t
        lines.append({"epoch": epoch, "utc": "x", "phase": phase, "kubectl_ms": 80.0,
                      **autoscaling.parse_objects(doc), "objects": autoscaling.raw_parts(doc)})
    lines.append({"epoch": start + 135, "utc": "x", "phase": "tail", "kubectl_ms": 10000.0,
                  "error": "get deployment/x: took over 10 s"})  # a failed sample: a row of empty counts
    (out / autoscaling.AUTOSCALE_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines)
                                                  + '{"epoch": 17')  # cut short by a kill: skipped
    write_json(out / "done.json", {"schema_version": 2, "run_key": run_key, "step": "autoscale",
                                   "platform": platform, "concurrency": 10, "started_epoch": start,
                                   "finished_epoch": start + 120, "outcome": "ok", "error": None})


def finalize(folder: RunFolder) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.bench", "finalize", str(folder.path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_finalize_writes_autoscale_csv_from_raw(run_folder):
    start = 1_800_000_000.0
    write_autoscale_run(run_folder, "function", DEPLOYMENT_SCALING, HPA_SCALING, start)
    finalize(run_folder)
    table = pd.read_csv(run_folder.path / "autoscale.csv")
    assert list(table.columns) == ["run_key", "platform", "t_s", "spec_replicas", "ready_replicas",
                                   "hpa_current_replicas", "hpa_desired_replicas", "hpa_cpu_pct"]
    assert len(table) == 29  # 28 samples and the failed one; the line cut short is not a row
    assert set(table["run_key"]) == {"autoscale-function-c10"} and set(table["platform"]) == {"function"}
    assert table["t_s"].iloc[0] == -5 and table["t_s"].iloc[-1] == 135  # from the load's start
    at = table.set_index("t_s")
    assert (at.loc[30, "hpa_desired_replicas"], at.loc[35, "hpa_desired_replicas"]) == (1, 2)
    assert (at.loc[55, "ready_replicas"], at.loc[60, "ready_replicas"]) == (1, 2)
    assert pd.isna(at.loc[10, "hpa_cpu_pct"]) and at.loc[15, "hpa_cpu_pct"] == 180
    assert at.loc[135].drop(["run_key", "platform"]).isna().all()  # the failed sample
    # the container's step has not run: the run is incomplete and says which step is missing
    manifest = json.loads((run_folder.path / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and "autoscale-container-c10" in manifest["runs_missing"]


def test_the_time_to_scale_up_is_read_from_the_samples(run_folder):
    start = 1_800_000_000.0
    write_autoscale_run(run_folder, "function", DEPLOYMENT_SCALING, HPA_SCALING, start)
    samples = autoscaling.read_samples(run_folder.run_dir("autoscale-function-c10") / autoscaling.AUTOSCALE_FILE)
    assert autoscaling.scale_up(samples, start) == {"ready_before": 1, "ready_max": 2, "decided_s": 35.0,
                                                    "ready_s": 60.0}


def test_the_report_has_an_autoscaling_section_only_when_there_are_samples(measured_folder, tmp_path):
    run_folder = measured_folder
    from analysis import figures, report, tables
    from analysis.load import load_results

    finalize(run_folder)
    results = load_results(run_folder.path)
    assert report._autoscale_section(results, {}, {}, "95 %", tables.Settings()) == []  # header only: no section

    start = 1_800_000_000.0
    write_autoscale_run(run_folder, "function", DEPLOYMENT_SCALING, HPA_SCALING, start)
    write_autoscale_run(run_folder, "container", DEPLOYMENT_STARTING, HPA_NO_METRICS, start + 400)
    finalize(run_folder)
    results = load_results(run_folder.path)
    samples = report._autoscale_samples(results)
    png = figures.autoscale_over_time(samples, results, tmp_path / "autoscale.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    blocks = report._autoscale_section(results, {}, {"autoscale": png}, "95 %", tables.Settings())
    assert blocks[0].text == "Autoscaling (HPA under load)"
    assert "c=10 for 120 s" in blocks[1].text and "every 5 s" in blocks[1].text
    table = blocks[2]
    # platform, ready before, most ready, HPA wants more after s, more ready after s, peak HPA CPU %, samples
    assert table.rows == [["function", "1", "2", "35", "60", "180", "29"],
                          ["container", "1", "2", "35", "60", "180", "29"]]
    assert blocks[3].path == png


def test_the_whole_report_carries_the_section(measured_folder, tmp_path):
    run_folder = measured_folder
    from analysis import report
    from analysis.load import load_results

    write_autoscale_run(run_folder, "function", DEPLOYMENT_SCALING, HPA_SCALING, 1_800_000_000.0)
    finalize(run_folder)
    built = report.build(load_results(run_folder.path), tmp_path / "report")
    text = built.md.read_text()
    assert "## Autoscaling (HPA under load)" in text and "figures/autoscale.png" in text
    assert built.figures["autoscale"].exists()


# --- The step on this machine: real kubectl and ab, no cluster behind them ----------------------------------------
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")


@needs_kubectl
def test_the_sampler_keeps_its_interval_and_records_each_failed_kubectl_call(run_folder, tmp_path):
    """The cluster of the kubeconfig is nowhere (127.0.0.1:9): every sample fails, is recorded, and the loop goes on
    at its interval until stopped."""
    kubectl = Kubectl.for_platform(run_folder.config.platforms["function"])
    path = tmp_path / "autoscale.jsonl"
    sampler = autoscaling.ReplicaSampler(kubectl, "kde-function", 0.2, path).start()
    assert sampler.count == 1  # the sample before the load, taken before start() returned
    sampler.phase = "load"
    time.sleep(1.1)
    info = sampler.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert 4 <= len(lines) <= 8 and info["samples"] == info["errors"] == len(lines)
    assert lines[0]["phase"] == "before" and {line["phase"] for line in lines[1:]} == {"load"}
    assert all("127.0.0.1:9" in line["error"] and "spec_replicas" not in line for line in lines)
    gaps = [b["epoch"] - a["epoch"] for a, b in itertools.pairwise(lines)]
    assert all(0.1 < gap < 0.6 for gap in gaps), gaps


@needs_kubectl
def test_without_an_hpa_the_step_does_not_run_and_stays_pending(run_folder, monkeypatch):
    from analysis.bench import runner

    monkeypatch.setattr(autoscaling, "HPA_WAIT_S", 0.0)
    result = runner.autoscale(run_folder, "function")
    assert result.skipped and "NOT RUN, no HorizontalPodAutoscaler kde-function" in result.line
    assert "playbooks/paper/autoscale.yml applies it" in result.line
    assert not run_folder.run_dir("autoscale-function-c10").exists()  # nothing written: it stays pending


def test_the_step_refuses_a_platform_without_its_kubeconfig(run_folder):
    Path(run_folder.config.platforms["container"].kubectl.kubeconfig).unlink()
    result = subprocess.run([sys.executable, "-m", "analysis.bench", "autoscale", str(run_folder.path),
                             "--platform", "container"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "kde-kubeless.yaml does not exist" in result.stderr
    result = subprocess.run([sys.executable, "-m", "analysis.bench", "autoscale", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "autoscale_sample_interval_s" in result.stdout


# --- roles/cluster_bench and playbooks/paper/autoscale.yml ---------------------------------------------------------
def ansible(*args: str, binary: str = "ansible-playbook", timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / binary), *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def test_the_role_has_no_sampler_and_calls_the_driver_for_autoscaling():
    assert not (ROLE / "tasks" / "sampler.yml").exists() and not (ROLE / "templates").exists()
    tasks = yaml.safe_load((ROLE / "tasks" / "autoscale.yml").read_text())
    assert tasks[0] == {"name": "Open the run folder", "ansible.builtin.include_tasks": "run.yml"}
    assert tasks[1]["ansible.builtin.command"]["argv"][3:6] == ["plan", "{{ cluster_bench_run.run_dir }}",
                                                                 "--pending"]
    block = tasks[2]
    steps = block["block"][0]
    assert steps["ansible.builtin.command"]["argv"] == "{{ [bench_python, '-m', 'analysis.bench'] + item.argv }}"
    assert block["always"][0]["ansible.builtin.command"]["argv"][3] == "finalize"
    text = (ROLE / "tasks" / "autoscale.yml").read_text()
    assert "selectattr('step', 'equalto', 'autoscale')" in text
    for path in ROLE.rglob("*.yml"):  # nothing in the role writes a result: the driver does
        body = path.read_text()
        assert "ansible.builtin.copy" not in body and "ansible.builtin.lineinfile" not in body, path
        assert "async:" not in body and "autoscale-sampler" not in body, path


def test_the_playbook_applies_the_hpas_on_the_vms_then_runs_the_driver_on_the_control_node():
    plays = yaml.safe_load((ROOT / "playbooks" / "paper" / "autoscale.yml").read_text())
    assert [p["hosts"] for p in plays] == ["kubeless", "kubernetes", "paper_control"]
    actions = [(p["tasks"][0]["vars"]["cluster_bench_action"], p["tasks"][0]["vars"].get("cluster_bench_platform"))
               for p in plays]
    assert actions == [("hpa", "function"), ("hpa", "container"), ("autoscale", None)]
    text = (ROOT / "playbooks" / "paper" / "autoscale.yml").read_text()
    assert "../../results" not in text and "-e bench_results_dir" in text


def test_the_paper_inventory_runs_autoscaling_on_both_platforms_with_the_budgets_max_replicas(tmp_path):
    """The app's HPA as cluster_bench_action hpa renders it (roles/app_kubernetes, not applied here): its
    maxReplicas is the VM budget's (paper_app_max_replicas), and so is app_kubernetes_hpa_max_replicas."""
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Render the app with its HPA", "hosts": "paper_control", "gather_facts": False,
        "tasks": [
            {"name": "Render", "ansible.builtin.include_role": {"name": "cluster_bench", "tasks_from": "hpa.yml"},
             "vars": {"cluster_bench_platform": "container", "app_kubernetes_apply": False,
                      "app_kubernetes_manifest_dir": str(tmp_path / "app")}},
            {"name": "Keep the values", "ansible.builtin.copy": {
                "dest": str(tmp_path / "values.json"), "mode": "0644",
                "content": "{{ {'budget': paper_app_max_replicas | int, 'app': app_kubernetes_hpa_max_replicas | int,"
                           " 'platforms': bench_autoscale_platforms} | to_json }}"}},
        ],
    }]))
    result = ansible("-i", str(INVENTORY), str(playbook), "-e", f"ansible_playbook_python={sys.executable}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    hpa = yaml.safe_load((tmp_path / "app" / "hpa.yml").read_text())
    shown = json.loads((tmp_path / "values.json").read_text())
    assert hpa["kind"] == "HorizontalPodAutoscaler" and hpa["metadata"]["name"] == "kde-app"
    assert hpa["spec"]["maxReplicas"] == shown["budget"] == shown["app"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["targetCPUUtilizationPercentage"]) == (1, 70)
    assert shown["platforms"] == ["function", "container"]


def test_the_autoscale_playbook_and_role_pass_the_syntax_check_and_ansible_lint():
    result = ansible("-i", str(INVENTORY), "--syntax-check", "playbooks/paper/autoscale.yml", "bench.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    result = ansible("--offline", "--nocolor", "roles/cluster_bench", "playbooks/paper/autoscale.yml",
                     binary="ansible-lint", timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "Profile 'production' was required, and it passed" in out
