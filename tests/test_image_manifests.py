"""roles/app_kubernetes: the manifests rendered by real Ansible, validated against Kubernetes 1.10 and 1.24 schemas.

Nothing here needs a cluster (none runs on these machines): the role renders only (`app_kubernetes_apply: false`),
and `kubernetes-validate --strict` checks every field against the OpenAPI schemas of both versions. 1.10.0 is the
paper's; 1.24.0 is the newest that kubernetes-validate 1.24.1 (the last release shipping 1.10) carries, and every
API used (apps/v1, v1, autoscaling/v1) is still served unchanged by current releases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures_image import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
KUBERNETES_VERSIONS = ("1.10.0", "1.24.0")


def render(tmp_path: Path, **overrides) -> subprocess.CompletedProcess:
    """Run the role on localhost with the paper profile's variables (playbooks/paper/deploy.yml), rendering only."""
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        "- name: Render the app manifests\n"
        "  hosts: localhost\n"
        "  connection: local\n"
        "  gather_facts: false\n"
        "  roles:\n"
        "    - role: app_kubernetes\n"
    )
    extravars = {
        "ansible_python_interpreter": sys.executable,
        "app_kubernetes_profile": "paper",
        "app_kubernetes_name": "kde-app",
        "app_kubernetes_namespace": "default",
        "app_kubernetes_image": "kubeless-dl-eval/app:paper",
        "app_kubernetes_image_pull_policy": "IfNotPresent",
        "app_kubernetes_node_port": 30081,
        "app_kubernetes_manifest_dir": str(tmp_path / "manifests"),
        "app_kubernetes_apply": False,
        **overrides,
    }
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
    }
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e", json.dumps(extravars)]
    return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)


def rendered(tmp_path: Path, **overrides) -> dict[str, dict]:
    result = render(tmp_path, **overrides)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    folder = tmp_path / "manifests"
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yml"))}


def validate(folder: Path, version: str) -> str:
    files = sorted(str(p) for p in folder.glob("*.yml"))
    done = subprocess.run(
        [str(VENV_BIN / "kubernetes-validate"), "-k", version, "--strict", *files],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    # A missing schema (wrong apiVersion for that release) only warns and exits 0: read the text.
    short = version.rsplit(".", 1)[0]
    passed = [line for line in output.splitlines() if line.startswith("INFO") and f"against version {short}" in line]
    assert done.returncode == 0 and "WARN" not in output and "ERROR" not in output, output
    assert len(passed) == len(files), output
    return output


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """Everything on: HPA, a mounted model, extra environment."""
    tmp_path = tmp_path_factory.mktemp("manifests-full")
    docs = rendered(
        tmp_path,
        app_kubernetes_hpa_enabled=True,
        app_kubernetes_model_host_path="/opt/kubeless-dl-eval/model",
        app_kubernetes_env={"MAX_BODY_BYTES": 5242880, "LOG_LEVEL": "warning"},
        app_kubernetes_workers="2",
    )
    return tmp_path / "manifests", docs


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """The role's defaults as playbooks/paper/deploy.yml uses them."""
    tmp_path = tmp_path_factory.mktemp("manifests-plain")
    return tmp_path / "manifests", rendered(tmp_path)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_manifests_are_valid_kubernetes(plain, full, version):
    for folder, docs in (plain, full):
        output = validate(folder, version)
        for doc in docs.values():
            assert f"{doc['kind'].lower()}/{doc['metadata']['name']}" in output


def test_defaults_match_the_paper_vm_and_the_bench(plain):
    _, docs = plain
    assert set(docs) == {"deployment.yml", "service.yml"}
    deployment, service = docs["deployment.yml"], docs["service.yml"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert {e["name"]: e["value"] for e in container["env"]} == {"PORT": "8080", "MODEL_BACKEND": "keras"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001}
    # preStop sleep + gunicorn's graceful timeout (GRACEFUL_TIMEOUT_S, 8 s) fit in the grace period.
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] >= 5 + 8
    assert deployment["spec"]["replicas"] == 1
    # What bench (inventory/paper) relies on: pods labelled app=<name>, container named <name>, port name http.
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "kde-app"}
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "kde-app"
    assert container["name"] == "kde-app"
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["selector"] == {"app": "kde-app"}
    assert service["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8080, "targetPort": "http", "nodePort": 30081}
    ]


def test_options_reach_the_manifests(full):
    _, docs = full
    deployment, hpa = docs["deployment.yml"], docs["hpa.yml"]
    assert "replicas" not in deployment["spec"]  # the HPA owns the replica count
    assert hpa["apiVersion"] == "autoscaling/v1"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kde-app"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert hpa["spec"]["targetCPUUtilizationPercentage"] == 70
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "PORT": "8080", "MODEL_BACKEND": "keras", "WORKERS": "2", "MAX_BODY_BYTES": "5242880", "LOG_LEVEL": "warning"
    }  # fmt: skip
    assert {"name": "model", "mountPath": "/model", "readOnly": True} in container["volumeMounts"]
    assert {"name": "model", "hostPath": {"path": "/opt/kubeless-dl-eval/model", "type": "Directory"}} in pod["volumes"]


def test_disabling_the_hpa_removes_its_manifest_and_rerunning_changes_nothing(tmp_path):
    assert "hpa.yml" in rendered(tmp_path, app_kubernetes_hpa_enabled=True)
    assert "hpa.yml" not in rendered(tmp_path, app_kubernetes_hpa_enabled=False)
    again = render(tmp_path, app_kubernetes_hpa_enabled=False)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]


def test_a_wrong_value_is_refused_by_the_argument_spec(tmp_path):
    result = render(tmp_path, app_kubernetes_backend="pytorch")
    assert result.returncode != 0
    assert "app_kubernetes_backend" in result.stdout and "keras, litert" in result.stdout
