"""The paper profile's cluster cold starts through the bench driver (analysis/bench/cluster.py, the kubectl
platform), and roles/cluster_bench, which renders the driver's configuration and calls it.

No cluster runs here, and nothing below pretends to be one: the tests check what the driver would send to a
cluster (the kubectl argv, the order of its actions), how its configuration is validated, and the playbook run up
to the cluster's edge (the run folder, the plan, the refusal without a kubeconfig).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from analysis.bench.cluster import Action, Kubectl, clean_object, saved_path, start_actions, stop_actions
from analysis.bench.config import ConfigError, KubectlTarget, _platform, config_from_dict, example_config, make_plan
from tests.conftest import ROOT

VENV_BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventory" / "paper"
ROLE = ROOT / "roles" / "cluster_bench"
ENV = {
    **os.environ,
    "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_FORCE_COLOR": "0",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def ansible(*args: str, binary: str = "ansible-playbook", timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / binary), *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def paper_platforms() -> dict[str, dict]:
    """bench_function_platform / bench_container_platform as the paper inventory renders them."""
    result = ansible("-i", str(INVENTORY), "localhost", "-m", "ansible.builtin.debug", "-a",
                     "msg={{ {'function': bench_function_platform, 'container': bench_container_platform} | to_json }}",
                     binary="ansible", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(result.stdout[result.stdout.index("{"):])["msg"]
    return json.loads(payload) if isinstance(payload, str) else payload


KUBECTL = {
    "target": "--selector function=f", "namespace": "default", "context": "kde-kubeless",
    "kubeconfig": "/tmp/kde-kubeless.yaml", "deployment": "f", "selector": "function=f",
    "redeploy": ["function/f", "httptrigger/f"],
}


def kubectl_platform(kubectl: dict | None = None, **overrides):
    """The function platform on its cluster; `kubectl` overrides keys of its kubectl group (... leaves one out)."""
    group = {k: v for k, v in {**KUBECTL, **(kubectl or {})}.items() if v is not ...}
    settings = {"url": "http://192.168.122.10/predict", "log_source": "kubectl",
                "restart": ["kubectl-scale", "kubectl-redeploy"], "kubectl": group, **overrides}
    return _platform("function", {"kind": "kubeless", **{k: v for k, v in settings.items() if v is not ...}})


# --- The paper inventory's platforms -----------------------------------------------------------------------------
def test_paper_platforms_restart_through_kubectl_with_their_own_kubeconfig(paper_platforms):
    function = _platform("function", paper_platforms["function"])
    container = _platform("container", paper_platforms["container"])
    assert function.restart_kinds == ("kubectl-scale", "kubectl-redeploy")
    assert container.restart_kinds == ("kubectl-scale", "kubectl-redeploy")
    # each cluster by its own kubeconfig and context, the ones the deploy phase writes (build/kubeconfig/<vm>.yaml)
    assert function.kubectl.kubeconfig.endswith("build/kubeconfig/kde-kubeless.yaml")
    assert function.kubectl.context == "kde-kubeless"
    assert container.kubectl.kubeconfig.endswith("build/kubeconfig/kde-kubernetes.yaml")
    assert container.kubectl.context == "kde-kubernetes"
    # the Function and its HTTPTrigger (both named after the function, roles/kubeless_function), in apply order
    assert function.kubectl.redeploy == ("function/kde-function", "httptrigger/kde-function")
    assert function.kubectl.deployment == "kde-function" and function.kubectl.selector == "function=kde-function"
    assert container.kubectl.redeploy == ("deployment/kde-app",)
    assert container.kubectl.selector == "app=kde-app"
    # issue 19: the inventory gives the kubectl settings as one group, no flat kubectl_* key
    for settings in paper_platforms.values():
        assert not [k for k in settings if k.startswith("kubectl_") or k == "kubeconfig"]


def test_the_http_trigger_the_redeploy_applies_is_the_one_the_deploy_phase_renders(paper_platforms):
    template = (ROOT / "roles/kubeless_function/templates/http-trigger.yaml.j2").read_text()
    assert "kind: HTTPTrigger" in template and "  name: {{ kubeless_function_name }}" in template
    assert "function-name: {{ kubeless_function_name }}" in template
    defaults = yaml.safe_load((ROOT / "roles/kubeless_function/defaults/main.yml").read_text())
    assert defaults["kubeless_function_name"] == "{{ function_name | default('kde-function') }}"
    assert "httptrigger/kde-function" in paper_platforms["function"]["kubectl"]["redeploy"]


# --- kubectl argv ------------------------------------------------------------------------------------------------
def test_kubectl_always_names_kubeconfig_context_and_namespace():
    kubectl = Kubectl.for_platform(kubectl_platform())
    assert kubectl.argv("scale", "deployment/f", "--replicas=0") == [
        "kubectl", "--kubeconfig", "/tmp/kde-kubeless.yaml", "--context", "kde-kubeless", "--namespace", "default",
        "scale", "deployment/f", "--replicas=0",
    ]
    kubectl = Kubectl.for_platform(kubectl_platform({"namespace": None, "bin": "/usr/local/bin/kubectl"}))
    assert kubectl.argv("get", "pods") == ["/usr/local/bin/kubectl", "--kubeconfig", "/tmp/kde-kubeless.yaml",
                                           "--context", "kde-kubeless", "get", "pods"]


def test_kubectl_logs_use_the_platforms_kubeconfig(tmp_path):
    from analysis.bench.logs import KubectlLogs, log_source

    source = log_source(kubectl_platform(), "unix:///var/run/docker.sock")
    assert isinstance(source, KubectlLogs)
    assert source.kubeconfig == "/tmp/kde-kubeless.yaml" and source.context == "kde-kubeless"


# --- The order of a cold start -----------------------------------------------------------------------------------
def verbs(actions: list[Action]) -> list[str]:
    return [a.describe() for a in actions]


def test_replicas_0_to_1_scales_to_zero_waits_for_no_pod_then_scales_to_one():
    platform = kubectl_platform()
    assert verbs(stop_actions(platform, "kubectl-scale")) == ["scale deployment/f to 0", "wait-no-pods function=f"]
    assert verbs(start_actions(platform, "kubectl-scale")) == ["scale deployment/f to 1"]


def test_redeploy_deletes_the_trigger_and_the_function_and_waits_until_they_and_the_pods_are_gone():
    assert verbs(stop_actions(kubectl_platform(), "kubectl-redeploy")) == [
        "delete httptrigger/f", "delete function/f",
        "wait-gone httptrigger/f", "wait-gone function/f",
        "wait-gone deployment/f",  # made by the Kubeless controller, removed with the Function
        "wait-no-pods function=f",
    ]


def test_redeploy_reapplies_the_function_then_its_http_trigger_once_the_service_exists():
    """Issue 15 finding 3. kubeless/http-trigger v1.0.0-alpha.9, pkg/controller/http_trigger_controller.go:
    functionAddedDeletedUpdated(deleted=true) deletes every HTTPTrigger of a deleted Function, and syncHTTPTrigger
    deletes the Ingress of a deleted trigger; so the redeploy must apply the trigger again. pkg/utils/k8sutil.go
    CreateIngress reads the function's Service first and syncHTTPTrigger does not retry when it is missing; so the
    trigger goes in only once the Service exists, and the cold start waits for the Ingress (the route)."""
    actions = verbs(start_actions(kubectl_platform(), "kubectl-redeploy"))
    assert actions == ["apply function/f", "wait-exists service/f", "apply httptrigger/f", "wait-exists ingress/f"]


def test_the_trigger_waits_for_the_service_of_the_function_it_points_at():
    saved = {"httptrigger/route": {"kind": "HTTPTrigger", "spec": {"function-name": "f"}}}
    actions = start_actions(kubectl_platform({"redeploy": ["function/f", "httptriggers.kubeless.io/route"]}),
                            "kubectl-redeploy", {"httptriggers.kubeless.io/route": saved["httptrigger/route"]})
    assert verbs(actions) == ["apply function/f", "wait-exists service/f", "apply httptriggers.kubeless.io/route",
                              "wait-exists ingress/route"]


def test_the_apps_redeploy_applies_its_deployment_only():
    platform = _platform("container", {
        "kind": "container",
        "url": "http://192.168.122.11:30081/predict", "restart": "kubectl-redeploy",
        "kubectl": {"context": "kde-kubernetes", "kubeconfig": "/tmp/k.yaml", "deployment": "kde-app",
                    "selector": "app=kde-app", "redeploy": ["deployment/kde-app"]}})
    assert verbs(stop_actions(platform, "kubectl-redeploy")) == [
        "delete deployment/kde-app", "wait-gone deployment/kde-app", "wait-no-pods app=kde-app"]
    assert verbs(start_actions(platform, "kubectl-redeploy")) == ["apply deployment/kde-app"]


def test_saved_objects_can_be_created_again(tmp_path):
    live = {
        "apiVersion": "kubeless.io/v1beta1", "kind": "HTTPTrigger",
        "metadata": {"name": "f", "namespace": "default", "uid": "1", "resourceVersion": "7",
                     "creationTimestamp": "2018-10-01T00:00:00Z", "selfLink": "/apis/x", "generation": 2,
                     "finalizers": ["kubeless.io/httptrigger"], "labels": {"created-by": "kubeless"}},
        "spec": {"function-name": "f", "path": "predict", "gateway": "nginx"},
        "status": {},
    }
    clean = clean_object(live)
    assert clean == {"apiVersion": "kubeless.io/v1beta1", "kind": "HTTPTrigger",
                     "metadata": {"name": "f", "namespace": "default", "labels": {"created-by": "kubeless"}},
                     "spec": {"function-name": "f", "path": "predict", "gateway": "nginx"}}
    assert live["metadata"]["uid"] == "1"  # the live copy is left as it was
    assert saved_path(tmp_path, "httptriggers.kubeless.io/f") == tmp_path / "redeploy" / "httptrigger-f.json"


# --- Configuration -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "message"), [
    ({"kubectl": {"kubeconfig": ...}}, "restart 'kubectl-scale' needs 'kubectl.kubeconfig'"),
    ({"kubectl": {"context": ...}}, "needs 'kubectl.context'"),
    ({"restart": "kubectl-redeploy", "kubectl": {"redeploy": ...}},
     "restart 'kubectl-redeploy' needs 'kubectl.redeploy'"),
    ({"restart": "kubectl-scale", "kubectl": {"selector": ...}}, "needs 'kubectl.selector'"),
    ({"kubectl": {"target": ...}}, "platforms.function: log_source 'kubectl' needs 'kubectl.target'"),
    ({"restart": ["docker", "kubectl-scale"]}, "a list holds only kubectl-scale, kubectl-redeploy, got 'docker'"),
    ({"restart": ["kubectl-scale", "kubectl-scale"]}, "lists a kind twice"),
    ({"restart": "kubectl-restart"}, "restart must be one of docker, kubectl-scale, kubectl-redeploy, none"),
    ({"restart": []}, "restart must be one of"),
    ({"kubectl": {"redeploy": ["function"]}},
     "platforms.function.kubectl.redeploy must be a list of 'kind/name' objects"),
    ({"kubectl": {"redeploy": "function/f"}}, "platforms.function.kubectl.redeploy must be a list"),
    ({"kubectl": {"kubeconfig": ""}}, "platforms.function.kubectl.kubeconfig must be a non-empty string"),
    ({"kubectl": {"bin": 7}}, "platforms.function.kubectl.bin must be a non-empty string or null, got 7"),
])
def test_a_wrong_kubectl_platform_is_refused_with_the_key_named(overrides, message):
    with pytest.raises(ConfigError) as excinfo:
        kubectl_platform(**overrides)
    assert message in str(excinfo.value)


def test_one_restart_in_a_list_is_that_restart_and_the_config_survives_the_manifest():
    assert kubectl_platform(restart=["kubectl-scale"]).restart == "kubectl-scale"
    platform = kubectl_platform()
    again = _platform("function", json.loads(json.dumps(platform.to_dict())))
    assert again == platform and again.to_dict()["restart"] == ["kubectl-scale", "kubectl-redeploy"]


# --- The kubectl group (issue 19) ----------------------------------------------------------------------------------
# The function platform on its cluster as the paper inventory renders it, in the nested form, and the same platform
# as a manifest.json written before the group carries it: every flat key, the container's at null or default.
PAPER_FUNCTION = {
    "kind": "kubeless", "url": "http://192.168.150.10/predict", "log_source": "kubectl", "resource_source": "none",
    "restart": ["kubectl-scale", "kubectl-redeploy"],
}
NESTED = {
    "kubeconfig": "/p/build/kubeconfig/kde-kubeless.yaml", "context": "kde-kubeless", "namespace": "default",
    "bin": "/p/build/bin/kubectl", "target": "--selector function=kde-function", "deployment": "kde-function",
    "selector": "function=kde-function", "redeploy": ["function/kde-function", "httptrigger/kde-function"],
}
FLAT = {
    "kubectl_target": "--selector function=kde-function", "kubectl_namespace": "default",
    "kubectl_context": "kde-kubeless", "kubeconfig": "/p/build/kubeconfig/kde-kubeless.yaml",
    "kubectl_bin": "/p/build/bin/kubectl", "kubectl_deployment": "kde-function",
    "kubectl_selector": "function=kde-function",
    "kubectl_redeploy": ["function/kde-function", "httptrigger/kde-function"],
}
FLAT_UNUSED = {  # what an old manifest holds for a platform that did not use kubectl
    "kubectl_target": None, "kubectl_namespace": None, "kubectl_context": None, "kubeconfig": None,
    "kubectl_bin": "kubectl", "kubectl_deployment": None, "kubectl_selector": None, "kubectl_redeploy": [],
}
LOCAL_CONTAINER = {"kind": "container", "url": "http://127.0.0.1:30081/predict", "container": "kde-app"}
EXPECTED_GROUP = KubectlTarget(
    target="--selector function=kde-function", namespace="default", context="kde-kubeless",
    kubeconfig="/p/build/kubeconfig/kde-kubeless.yaml", bin="/p/build/bin/kubectl", deployment="kde-function",
    selector="function=kde-function", redeploy=("function/kde-function", "httptrigger/kde-function"),
)


def two_platforms(function: dict, container: dict, **knobs) -> dict:
    return {"profile": "paper", "config": {"coldstart_repetitions": 0, **knobs},
            "platforms": {"function": function, "container": container}}


def test_the_nested_kubectl_group_loads_and_is_what_the_manifest_writes():
    config = config_from_dict(two_platforms({**PAPER_FUNCTION, "kubectl": NESTED}, LOCAL_CONTAINER))
    assert config.platforms["function"].kubectl == EXPECTED_GROUP
    assert config.platforms["container"].kubectl is None
    written = config.platforms["function"].to_dict()
    assert written["kubectl"] == {
        "target": "--selector function=kde-function", "namespace": "default", "context": "kde-kubeless",
        "kubeconfig": "/p/build/kubeconfig/kde-kubeless.yaml", "bin": "/p/build/bin/kubectl",
        "deployment": "kde-function", "selector": "function=kde-function",
        "redeploy": ["function/kde-function", "httptrigger/kde-function"],
    }
    assert not [k for k in written if k.startswith("kubectl_") or k == "kubeconfig"]
    assert "kubectl" not in config.platforms["container"].to_dict()  # a local platform has no kubectl keys at all
    # a group that gives only some keys keeps the others' defaults
    only = config_from_dict(two_platforms({**PAPER_FUNCTION, "restart": "none", "kubectl": {"target": "-l f=g"}},
                                          LOCAL_CONTAINER))
    assert only.platforms["function"].kubectl == KubectlTarget(target="-l f=g", bin="kubectl", redeploy=())


def test_an_old_manifests_flat_kubectl_keys_load_into_the_same_group():
    old = two_platforms({**PAPER_FUNCTION, **FLAT}, {**LOCAL_CONTAINER, **FLAT_UNUSED})
    config = config_from_dict(old)
    assert config.platforms["function"].kubectl == EXPECTED_GROUP
    assert config.platforms["container"].kubectl is None  # its keys were all null or default: no group
    assert config.platforms["container"].restart == "docker"
    nested = config_from_dict(two_platforms({**PAPER_FUNCTION, "kubectl": NESTED}, LOCAL_CONTAINER))
    assert config.platforms == nested.platforms
    # a wrong old value is named by its old key
    with pytest.raises(ConfigError, match=r"platforms\.function\.kubectl_context must be a non-empty string"):
        config_from_dict(two_platforms({**PAPER_FUNCTION, **FLAT, "kubectl_context": ""}, LOCAL_CONTAINER))


@pytest.mark.parametrize(("function", "container", "knobs", "message"), [
    # both forms at once
    ({**PAPER_FUNCTION, "kubectl": NESTED, "kubectl_context": "kde-kubeless"}, LOCAL_CONTAINER, {},
     "platforms.function: 'kubectl' and the flat key(s) kubectl_context are both given"),
    ({**PAPER_FUNCTION, "kubectl": NESTED, "kubeconfig": "/p/k.yaml"}, LOCAL_CONTAINER, {},
     "platforms.function: 'kubectl' and the flat key(s) kubeconfig are both given"),
    # an unknown key in the group, the old prefixed names included
    ({**PAPER_FUNCTION, "kubectl": {**NESTED, "namespaces": "default"}}, LOCAL_CONTAINER, {},
     "platforms.function.kubectl: unknown keys ['namespaces']"),
    ({**PAPER_FUNCTION, "kubectl": {**NESTED, "kubectl_context": "kde-kubeless"}}, LOCAL_CONTAINER, {},
     "platforms.function.kubectl: unknown keys ['kubectl_context']; known: target, namespace, context, kubeconfig, "
     "bin, deployment, selector, redeploy (inside the group the keys have no kubectl_ prefix)"),
    ({**PAPER_FUNCTION, "kubectl": "kde-kubeless"}, LOCAL_CONTAINER, {},
     "platforms.function.kubectl must be an object"),
    # a group on a platform where nothing uses kubectl: docker logs, docker restart, no autoscaling
    ({**PAPER_FUNCTION, "kubectl": NESTED}, {**LOCAL_CONTAINER, "kubectl": {"context": "kde-kubernetes"}}, {},
     "platforms.container.kubectl: nothing of platform 'container' uses kubectl"),
    ({**PAPER_FUNCTION, "kubectl": NESTED}, {**LOCAL_CONTAINER, "kubectl_context": "kde-kubernetes"}, {},
     "platforms.container.kubectl: nothing of platform 'container' uses kubectl"),
    ({**PAPER_FUNCTION, "kubectl": NESTED}, {**LOCAL_CONTAINER, "kubectl": {}}, {"autoscale_platforms": ["function"]},
     "platforms.container.kubectl: nothing of platform 'container' uses kubectl"),
])
def test_a_wrong_kubectl_group_is_refused_with_the_platform_named(function, container, knobs, message):
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(two_platforms(function, container, **knobs))
    assert message in str(excinfo.value)


def test_the_autoscaling_run_alone_is_a_use_of_the_group():
    container = {**LOCAL_CONTAINER, "kubectl": {"kubeconfig": "/p/k.yaml", "context": "kde-kubernetes",
                                                "deployment": "kde-app"}}
    config = config_from_dict(two_platforms({**PAPER_FUNCTION, "kubectl": NESTED}, container,
                                            autoscale_platforms=["container"]))
    assert config.platforms["container"].kubectl == KubectlTarget(kubeconfig="/p/k.yaml", context="kde-kubernetes",
                                                                  deployment="kde-app")


def test_the_plan_runs_each_kubectl_restart_as_its_own_series_and_leaves_docker_as_it_was():
    data = example_config()
    data["config"]["coldstart_repetitions"] = 2
    docker_plan = [i for i in make_plan(config_from_dict(data), "/r") if i.step == "coldstart"]
    assert [i.run_key for i in docker_plan] == ["coldstart-function-r1", "coldstart-container-r1",
                                               "coldstart-function-r2", "coldstart-container-r2"]
    assert docker_plan[0].argv == ["coldstart", "/r", "--platform", "function", "--repetition", "1"]

    data["platforms"] = {"function": kubectl_platform().to_dict()}
    data["platforms"]["function"]["url"] = "http://192.168.122.10/predict"
    plan = [i for i in make_plan(config_from_dict(data), "/r") if i.step == "coldstart"]
    assert [i.run_key for i in plan] == [
        "coldstart-function-replicas_0_to_1-r1", "coldstart-function-deploy_to_first_200-r1",
        "coldstart-function-replicas_0_to_1-r2", "coldstart-function-deploy_to_first_200-r2"]
    assert plan[1].argv == ["coldstart", "/r", "--platform", "function", "--repetition", "1",
                            "--restart", "kubectl-redeploy"]
    # the dispatcher reads the restart from the item's own field, never back from argv
    assert [i.restart for i in plan] == ["kubectl-scale", "kubectl-redeploy"] * 2


# --- roles/cluster_bench -----------------------------------------------------------------------------------------
def test_the_role_has_no_bash_runner_and_one_entry_point():
    assert not (ROLE / "templates" / "coldstart.sh.j2").exists()
    assert not (ROLE / "templates" / "autoscale-sampler.sh.j2").exists()
    assert sorted(p.name for p in (ROLE / "tasks").glob("*.yml")) == [
        "autoscale.yml", "coldstart.yml", "hpa.yml", "main.yml", "run.yml"]
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert list(specs) == ["main"]
    assert specs["main"]["options"]["cluster_bench_action"]["choices"] == ["run", "coldstart", "hpa", "autoscale"]
    # nothing in the role writes a results table: the driver does (coldstart.csv and autoscale.csv by `finalize`)
    for path in ROLE.rglob("*.yml"):
        text = path.read_text()
        assert "ansible.builtin.lineinfile" not in text and "ansible.builtin.copy" not in text, path


def test_the_role_calls_the_driver_init_then_the_planned_cold_starts_then_finalize():
    run = yaml.safe_load((ROLE / "tasks" / "run.yml").read_text())
    coldstart = yaml.safe_load((ROLE / "tasks" / "coldstart.yml").read_text())
    assert run[0]["ansible.builtin.include_role"] == {"name": "bench", "tasks_from": "config.yml", "public": True}
    init = next(t for t in run if "ansible.builtin.command" in t)["ansible.builtin.command"]["argv"]
    assert init[1:4] == ["-m", "analysis.bench", "init"] and "{{ bench_results_dir }}" in init
    assert coldstart[0] == {"name": "Open the run folder", "ansible.builtin.include_tasks": "run.yml"}
    plan = coldstart[1]["ansible.builtin.command"]["argv"]
    assert plan[3:6] == ["plan", "{{ cluster_bench_run.run_dir }}", "--pending"]
    block = coldstart[2]
    steps = block["block"][0]
    assert steps["ansible.builtin.command"]["argv"] == "{{ [bench_python, '-m', 'analysis.bench'] + item.argv }}"
    assert "selectattr('step', 'equalto', 'coldstart')" in steps["loop"]
    assert block["always"][0]["ansible.builtin.command"]["argv"][3] == "finalize"


@pytest.mark.parametrize("playbook", ["coldstart.yml", "autoscale.yml"])
def test_the_paper_playbooks_take_the_results_root_from_bench_results_dir(playbook):
    text = (ROOT / "playbooks" / "paper" / playbook).read_text()
    assert "../../results" not in text and "-e bench_results_dir" in text
    defaults = yaml.safe_load((ROOT / "roles/bench/defaults/main.yml").read_text())
    assert defaults["bench_results_dir"] == "{{ project_dir }}/results"


def test_the_changed_playbooks_pass_the_syntax_check_and_ansible_lint():
    result = ansible("-i", str(INVENTORY), "--syntax-check", "playbooks/paper/coldstart.yml",
                     "playbooks/paper/autoscale.yml", "bench.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    result = ansible("--offline", "--nocolor", "roles/cluster_bench", "roles/bench", "playbooks/paper/coldstart.yml",
                     "playbooks/paper/autoscale.yml", binary="ansible-lint", timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "Profile 'production' was required, and it passed" in out


# --- The playbook run, up to the cluster's edge ------------------------------------------------------------------
@pytest.fixture(scope="module")
def coldstart_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """playbooks/paper/coldstart.yml twice into a temporary results root, on a machine without the clusters'
    kubeconfigs (build/kubeconfig/ is only written by the deploy phase on real VMs)."""
    for name in ("kde-kubeless.yaml", "kde-kubernetes.yaml"):
        if (ROOT / "build" / "kubeconfig" / name).exists():
            pytest.skip("a real kubeconfig of the paper profile is present: this test would touch that cluster")
    results = tmp_path_factory.mktemp("results")
    first = ansible("-i", str(INVENTORY), "playbooks/paper/coldstart.yml", "-e", f"bench_results_dir={results}",
                    "-e", f"bench_python={sys.executable}")
    second = ansible("-i", str(INVENTORY), "playbooks/paper/coldstart.yml", "-e", f"bench_results_dir={results}",
                     "-e", f"bench_python={sys.executable}")
    return results, first, second


def test_coldstart_playbook_opens_one_run_under_bench_results_dir_and_stops_at_the_missing_kubeconfig(coldstart_run):
    results, first, second = coldstart_run
    runs = sorted(p for p in results.iterdir() if p.is_dir())
    assert len(runs) == 1  # the second run reopened the newest paper run
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    assert manifest["profile"] == "paper"
    assert manifest["platforms"]["function"]["restart"] == ["kubectl-scale", "kubectl-redeploy"]
    for result in (first, second):
        assert result.returncode != 0
        assert "kubeconfig " in result.stdout and "build/kubeconfig/kde-kubeless.yaml does not exist" in result.stdout
        assert '"analysis.bench", "coldstart"' in result.stdout
    # it failed before touching anything: no cold-start folder, and finalize still ran (always) and wrote the table
    assert not list((runs[0] / "raw").glob("coldstart-*"))
    assert (runs[0] / "coldstart.csv").read_text().startswith("platform,repetition,kind,")
    assert "results: " + str(runs[0]) in second.stdout
    # -e bench_results_dir is honoured: the driver's steps ran on the run folder under it, never under results/
    for result in (first, second):
        assert f'"coldstart", "{runs[0]}", "--platform"' in result.stdout
        assert f'"{ROOT}/results' not in result.stdout and "../../results" not in result.stdout


def test_the_driver_refuses_an_ambiguous_or_unconfigured_restart(coldstart_run):
    results, _, _ = coldstart_run
    run = next(p for p in results.iterdir() if p.is_dir())

    def coldstart(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "analysis.bench", "coldstart", str(run), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    result = coldstart("--platform", "function", "--repetition", "1")
    assert result.returncode == 1
    assert "several restarts (kubectl-scale, kubectl-redeploy): choose one with --restart" in result.stderr
    result = coldstart("--platform", "function", "--repetition", "1", "--restart", "docker")
    assert result.returncode == 1 and "configured with restart kubectl-scale, kubectl-redeploy, not 'docker'" in (
        result.stderr)
    result = coldstart("--platform", "container", "--repetition", "1", "--restart", "kubectl-redeploy")
    assert result.returncode == 1 and "kde-kubernetes.yaml does not exist" in result.stderr
