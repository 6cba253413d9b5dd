"""Issue 15: what would fail or mislead on two real 2018 VMs, each finding pinned by a test.

The paper profile cannot run here (see tests/test_paper_profile.py), so each test checks the rendered manifests, the
rendered minikube command line, the roles' own task files or the inventory against a small model of the upstream
code that decides the outcome. Each model names the upstream file and function it encodes; the sources were read at
the tags the profile pins (kubeless v1.0.0-alpha.8, http-trigger/kafka-trigger v1.0.0-alpha.9, minikube v0.29.0).
The preflight tests talk to an HTTP registry and file server on 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import io
import ipaddress
import json
import re
import subprocess
import tarfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.test_paper_profile import (
    FIXTURES,
    INVENTORY,
    ROOT,
    ansible_playbook,
    inventory_value,
    load_docs,
)

DOCS = ROOT / "docs" / "paper-profile.md"


def function_container(function: dict) -> dict:
    return function["spec"]["deployment"]["spec"]["template"]["spec"]["containers"][0]


# --- 1. metrics-server and the kubelet's token authentication ------------------------------------------------------
# minikube @ v0.29.0 : pkg/minikube/bootstrapper/kubeadm/versions.go, versionSpecificOpts and ExtraConfigForComponent:
# the kubelet options minikube sets for Kubernetes 1.10, then every --extra-config=kubelet.<key>=<value> on top.
MINIKUBE_0_29_KUBELET_DEFAULTS = {
    "fail-swap-on": "false",
    "kubeconfig": "/etc/kubernetes/kubelet.conf",
    "bootstrap-kubeconfig": "/etc/kubernetes/bootstrap-kubelet.conf",
    "hostname-override": "minikube",
    "pod-manifest-path": "/etc/kubernetes/manifests",
    "allow-privileged": "true",
    "cluster-dns": "10.96.0.10",
    "cluster-domain": "cluster.local",
    "authorization-mode": "Webhook",
    "client-ca-file": "/var/lib/localkube/certs/ca.crt",
    "cadvisor-port": "0",
    "cgroup-driver": "cgroupfs",
}


def kubelet_flags(argv: list[str]) -> dict[str, str]:
    flags = dict(MINIKUBE_0_29_KUBELET_DEFAULTS)
    for arg in argv:
        if arg.startswith("--extra-config=kubelet."):
            key, _, value = arg.removeprefix("--extra-config=kubelet.").partition("=")
            flags[key] = value
    return flags


def metrics_server_is_anonymous(flags: dict[str, str]) -> bool:
    """A kubelet with Webhook authorization but no token webhook treats metrics-server's bearer token as anonymous,
    and system:anonymous may not get nodes/stats: 403 (metrics-server issue 288, on minikube)."""
    return flags.get("authorization-mode") == "Webhook" and flags.get("authentication-token-webhook") != "true"


def test_1_kubelet_authenticates_metrics_server_tokens(rendered):
    argv = json.loads((rendered / "minikube" / "start-argv.json").read_text())
    assert argv[:3] == ["/usr/local/bin/minikube", "start", "--vm-driver=none"]
    assert not metrics_server_is_anonymous(kubelet_flags(argv)), argv
    # the model can fail: minikube's own defaults leave metrics-server anonymous
    assert metrics_server_is_anonymous(kubelet_flags(["minikube", "start"]))
    # a user's minikube_extra_config cannot drop it: it is a separate list, passed first
    defaults = yaml.safe_load((ROOT / "roles/minikube/defaults/main.yml").read_text())
    assert defaults["minikube_extra_config"] == []
    assert "kubelet.authentication-token-webhook=true" in defaults["minikube_required_extra_config"]
    # with the token accepted, metrics-server's ClusterRole must allow what the kubelet's SubjectAccessReview asks
    roles = [d for d in load_docs(rendered / "metrics_server" / "metrics-server.yaml") if d["kind"] == "ClusterRole"]
    rules = [rule for role in roles if role["metadata"]["name"] == "system:metrics-server" for rule in role["rules"]]
    assert any("nodes/stats" in rule["resources"] and "get" in rule["verbs"] for rule in rules)


# --- 2. Kafka and ZooKeeper start on Docker 17.03 ------------------------------------------------------------------
# kafka-trigger @ v1.0.0-alpha.9 : kafka-zookeeper.jsonnet, kafkaInitContainer / zookeeperInitContainer: a plain
# `busybox` volume-permissions init container in both StatefulSets. Docker Hub serves official-library images as
# OCI indexes today; Docker 17.03 cannot pull those.
def is_unpinned_official_library_image(image: str) -> bool:
    name = image.split("@", maxsplit=1)[0]
    first = name.split("/")[0]
    on_docker_hub = "/" not in name or not ("." in first or ":" in first or first == "localhost")
    repository = name.split(":")[0] if on_docker_hub else ""
    return on_docker_hub and ("/" not in repository or repository.startswith("library/")) and "@sha256:" not in image


def test_2_kafka_and_zookeeper_pull_no_official_library_image(rendered):
    statefulsets = [
        doc
        for name in ("30-zookeeper.yaml", "40-kafka.yaml")
        for doc in load_docs(rendered / "kafka" / name)
        if doc["kind"] == "StatefulSet"
    ]
    assert {s["metadata"]["name"] for s in statefulsets} == {"zoo", "kafka"}
    for statefulset in statefulsets:
        pod = statefulset["spec"]["template"]["spec"]
        own = {c["image"] for c in pod["containers"]}
        for init in pod["initContainers"]:
            assert init["image"] in own, (statefulset["metadata"]["name"], init["image"])  # no extra image
            assert init["securityContext"]["runAsUser"] == 0  # chmod on a root-owned hostPath volume
            assert init["command"] == ["sh", "-c", "chmod -R g+rwX /bitnami"]
        for container in pod["containers"] + pod["initContainers"]:
            assert not is_unpinned_official_library_image(container["image"]), container["image"]
    # the check can fail: upstream's init image
    assert is_unpinned_official_library_image("busybox") and is_unpinned_official_library_image("busybox:1.36")
    assert not is_unpinned_official_library_image("bitnami/kafka:1.1.0-r0")
    # an explicitly set init image (the mirror render) is what the StatefulSets use
    mirrored = load_docs(rendered / "mirror" / "kafka" / "40-kafka.yaml")[0]["spec"]["template"]["spec"]
    assert mirrored["initContainers"][0]["image"].startswith("mirror.invalid/library/busybox@sha256:")


# --- 4. The Function keeps the controller's environment ------------------------------------------------------------
# kubeless @ v1.0.0-alpha.8 : pkg/utils/kubelessutil.go, EnsureFuncDeployment: FUNC_HANDLER, MOD_NAME, FUNC_TIMEOUT
# (default "180"), FUNC_RUNTIME and FUNC_MEMORY_LIMIT are appended only when spec.handler and spec.function are both
# non-empty; FUNC_PORT always; pkg/langruntime/langruntime.go, UpdateDeployment: PYTHONPATH for python runtimes.
def controller_env(function: dict) -> dict[str, str]:
    spec = function["spec"]
    container = function_container(function)
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    if spec.get("handler") and spec.get("function"):
        module, handler = spec["handler"].split(".")
        env |= {
            "FUNC_HANDLER": handler,
            "MOD_NAME": module,
            "FUNC_TIMEOUT": spec.get("timeout") or "180",
            "FUNC_RUNTIME": spec["runtime"],
            "FUNC_MEMORY_LIMIT": container.get("resources", {}).get("limits", {}).get("memory", "0"),
        }
    env["FUNC_PORT"] = str(spec["service"]["ports"][0]["targetPort"])
    version = spec["runtime"].removeprefix("python")
    env["PYTHONPATH"] = f"/kubeless/lib/python{version}/site-packages:/kubeless"
    return env


def test_4_controller_passes_handler_timeout_and_memory_limit(rendered):
    defaults = yaml.safe_load((ROOT / "roles/kubeless_function/defaults/main.yml").read_text())
    for folder, source in (("kubeless_function", "py36/handler.py"),
                           ("kubeless_function_hpa", "py36/handler.py"),
                           ("kubeless_function_py311", "handler.py")):
        function = load_docs(rendered / folder / "function.yaml")[0]
        spec = function["spec"]
        code = (ROOT / "function" / "kubeless" / source).read_text()
        assert spec["function"] == code and spec["function-content-type"] == "text"
        assert spec["checksum"] == "sha256:" + hashlib.sha256(code.encode()).hexdigest()
        env = controller_env(function)
        assert env["MOD_NAME"] == "handler" and env["FUNC_HANDLER"] == "predict"
        assert env["FUNC_TIMEOUT"] == str(defaults["kubeless_function_timeout"]) == spec["timeout"]
        assert env["FUNC_MEMORY_LIMIT"] == function_container(function)["resources"]["limits"]["memory"]
        # the image's runtime loads /kubeless/<MOD_NAME>.py: the controller's PYTHONPATH still reaches it
        assert "/kubeless" in env["PYTHONPATH"].split(":")
    # the model can fail: with empty code (as before) the variables never reach the pod
    empty = json.loads(json.dumps(function))
    empty["spec"]["function"] = ""
    assert "FUNC_TIMEOUT" not in controller_env(empty) and "MOD_NAME" not in controller_env(empty)


# --- 5. A controller image that cannot be pulled is named ----------------------------------------------------------
# kubeless @ v1.0.0-alpha.8 : kubeless-non-rbac.jsonnet, controllerDeployment: the function, HTTP-trigger and
# cron-job controllers are three containers of one pod, so any one image missing keeps the Deployment unavailable.
def test_5_controller_wait_names_the_image_variable_of_the_failing_container(rendered, tmp_path):
    image_vars = yaml.safe_load((ROOT / "roles/kubeless/vars/main.yml").read_text())["kubeless_controller_image_vars"]
    for folder in ("kubeless", "mirror/kubeless"):
        deployment = load_docs(rendered / folder / "40-controller.yaml")[0]
        names = {c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]}
        assert names <= set(image_vars), names - set(image_vars)
    defaults = yaml.safe_load((ROOT / "roles/kubeless/defaults/main.yml").read_text())
    assert set(image_vars.values()) <= set(defaults)
    pods = {
        "items": [
            {
                "metadata": {"name": "kubeless-controller-manager-5d7894f84f-x2x9q"},
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": "kubeless-function-controller",
                            "ready": True,
                            "image": "kubeless/function-controller:v1.0.0-alpha.8",
                            "state": {"running": {}},
                        },
                        {
                            "name": "http-trigger-controller",
                            "ready": False,
                            "image": "bitnami/http-trigger-controller:v1.0.0-alpha.9",
                            "state": {
                                "waiting": {
                                    "reason": "ImagePullBackOff",
                                    "message": "Back-off pulling image bitnami/http-trigger-controller",
                                }
                            },
                        },
                    ],
                },
            }
        ]
    }
    pods_file, report = tmp_path / "pods.json", tmp_path / "message.txt"
    pods_file.write_text(json.dumps(pods))
    result = ansible_playbook(
        str(FIXTURES / "diagnose.yml"), "-e", f"pods_json_file={pods_file}", "-e", f"report={report}"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    message = report.read_text()
    assert message.startswith("kubeless-controller-manager did not become ready: container http-trigger-controller")
    assert "ImagePullBackOff" in message and "set kubeless_http_trigger_image" in message
    assert "kubeless_function_controller_image" not in message  # the running container is not blamed


# --- 6. Loading the images: config digests, not image IDs ----------------------------------------------------------
# moby v17.03 : image/tarexport/load.go, tarexporter.Load: the loaded image's ID is the digest of the config blob that
# manifest.json's "Config" names. `docker save` names it "<hex>.json" (classic store) or "blobs/sha256/<hex>"
# (containerd store), whose `.Id` on the control node is the manifest digest instead.
def docker_save_archive(path: Path, config_name: str) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in (
            (config_name, b"{}"),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": config_name, "RepoTags": ["kubeless-dl-eval/function:paper"], "Layers": []}]
                ).encode(),
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_6_image_load_compares_the_config_digest_both_stores_write(tmp_path):
    config = hashlib.sha256(b"{}").hexdigest()
    classic, containerd, broken = tmp_path / "classic.tar", tmp_path / "containerd.tar", tmp_path / "broken.tar"
    docker_save_archive(classic, f"{config}.json")
    docker_save_archive(containerd, f"blobs/sha256/{config}")
    with tarfile.open(broken, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        payload = b'[{"Config": "config.json"}]'
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    extra = tmp_path / "vars.json"
    report = tmp_path / "digests.json"
    extra.write_text(json.dumps({"archives": [str(classic), str(containerd), str(broken)], "report": str(report)}))
    result = ansible_playbook(str(FIXTURES / "image_digest.yml"), "-e", f"@{extra}")
    assert result.returncode == 0, result.stdout[-3000:]
    digests = json.loads(report.read_text())
    assert digests[str(classic)] == digests[str(containerd)] == f"sha256:{config}"
    assert (
        digests[str(broken)].startswith("failed: ")
        and "not an archive written by `docker save`" in digests[str(broken)]
    )
    control = (ROOT / "roles/vm_image_build/tasks/control.yml").read_text()
    assert "vm_image_build_vm_id.stdout != vm_image_build_config_digest" in control
    assert "vm_image_build_loaded.stdout != vm_image_build_config_digest" in control


# --- 7. The liveness probe waits out TensorFlow's start and a busy server ------------------------------------------
# kubeless @ v1.0.0-alpha.8 : pkg/langruntime/langruntime.go, GetLivenessProbeInfo (GET /healthz, initial delay 3 s,
# period 30 s, Kubernetes' default 1 s timeout and 3 failures); pkg/utils/kubelessutil.go, EnsureFuncDeployment sets
# it only when the template's container has no liveness probe.
ALPHA8_PROBE = {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 3, "periodSeconds": 30}


def effective_liveness_probe(container: dict) -> dict:
    probe = container.get("livenessProbe") or ALPHA8_PROBE
    return {"timeoutSeconds": 1, "failureThreshold": 3, **probe}


def probe_tolerates(probe: dict, start_s: float, busy_reply_s: float, busy_for_s: float) -> bool:
    """True when neither a start of start_s seconds nor /healthz answering in busy_reply_s for busy_for_s seconds
    restarts the container."""
    survives_start = probe["initialDelaySeconds"] >= start_s
    if probe["timeoutSeconds"] > busy_reply_s:
        return survives_start
    return survives_start and probe["failureThreshold"] * probe["periodSeconds"] > busy_for_s


def test_7_function_liveness_probe_survives_a_slow_start_and_load(rendered):
    # function/kubeless/README.md: c=20 p99 up to 4.5 s on a 2-core machine (keras, faithful runtime); start on a
    # loaded 2018 vCPU: assume up to a minute for the TensorFlow import, the model load and the warm-up
    start_s, busy_reply_s, benchmark_run_s = 60, 4.5, 120
    for folder in ("kubeless_function", "kubeless_function_hpa", "mirror/kubeless_function"):
        container = function_container(load_docs(rendered / folder / "function.yaml")[0])
        probe = effective_liveness_probe(container)
        assert probe["httpGet"] == {"path": "/healthz", "port": 8080}
        assert probe_tolerates(probe, start_s, busy_reply_s, benchmark_run_s), probe
    # the model can fail: the probe alpha.8 injects does not tolerate either
    assert not probe_tolerates(effective_liveness_probe({}), start_s, busy_reply_s, benchmark_run_s)


# --- 8 and 9. Memory and CPU budget of each VM ---------------------------------------------------------------------
# minikube @ v0.29.0 : pkg/minikube/assets/addons.go (dashboard and coredns enabled by default) and
# pkg/minikube/bootstrapper/kubeadm/templates.go, kubeadmInitTemplate (`kubeadm alpha phase addon kube-dns` as well):
# the budget counts CoreDNS only and no dashboard, which holds only with the minikube role's defaults below.
def budget_fit(budget: dict, items: list[dict], workload: dict) -> int:
    """How many replicas of workload fit beside items: by CPU requests and by memory."""
    free_cpu = budget["vm_cpu_m"] - sum(item["cpu_m"] for item in items)
    free_memory = budget["vm_memory_mib"] - budget["eviction_mib"] - sum(item["memory_mib"] for item in items)
    return min(free_cpu // workload["cpu_m"], free_memory // workload["memory_mib"])


def quantity_m(value: str) -> int:
    return int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)


def quantity_mib(value: str) -> int:
    return int(value[:-2]) if value.endswith("Mi") else int(value[:-2]) * 1024


def test_8_9_budget_fits_each_vm_and_sets_max_replicas(rendered):
    budget = inventory_value("paper_budget")
    kubeless_items = budget["both"] + budget["kubeless"] + budget["kafka"]
    kubernetes_items = budget["both"]
    function_max = budget_fit(budget, kubeless_items, budget["function"])
    app_max = budget_fit(budget, kubernetes_items, budget["app"])
    assert function_max >= 1 and app_max >= 1
    assert inventory_value("[kubeless_function_hpa_max_replicas, app_kubernetes_hpa_max_replicas]") == [
        function_max,
        app_max,
    ]
    # without Kafka the kubeless VM has room for one more replica, and the derivation follows the switch
    assert budget_fit(budget, budget["both"] + budget["kubeless"], budget["function"]) > function_max
    # the rendered Function asks for what the budget allots it, and its HPA stops at what fits
    function = load_docs(rendered / "kubeless_function_hpa" / "function.yaml")[0]
    resources = function_container(function)["resources"]
    assert quantity_m(resources["requests"]["cpu"]) == budget["function"]["cpu_m"]
    assert quantity_mib(resources["limits"]["memory"]) == budget["function"]["memory_mib"]
    assert function["spec"]["horizontalPodAutoscaler"]["spec"]["maxReplicas"] == function_max
    # Kafka, ZooKeeper and the trigger controller are capped at their budget lines (heap included)
    by_name = {item["name"].split(" (")[0]: item for item in budget["kafka"]}
    containers = {
        c["name"]: c
        for name in ("30-zookeeper.yaml", "40-kafka.yaml", "50-controller.yaml")
        for doc in load_docs(rendered / "kafka" / name)
        if doc["kind"] in ("StatefulSet", "Deployment")
        for c in doc["spec"]["template"]["spec"]["containers"]
    }
    for container, line in (
        ("broker", "Kafka"),
        ("zookeeper", "ZooKeeper"),
        ("kafka-trigger-controller", "kafka-trigger-controller"),
    ):
        resources = containers[container]["resources"]
        assert quantity_mib(resources["limits"]["memory"]) == by_name[line]["memory_mib"], container
        assert quantity_m(resources["requests"]["cpu"]) == by_name[line]["cpu_m"], container
    env = {e["name"]: e["value"] for e in containers["broker"]["env"]}
    assert re.fullmatch(r"-Xmx(\d+)m -Xms\1m", env["KAFKA_HEAP_OPTS"])
    heap = int(re.match(r"-Xmx(\d+)m", env["KAFKA_HEAP_OPTS"]).group(1))
    assert f"heap {heap} MiB" in by_name_full(budget["kafka"], "Kafka")
    # the budget's system lines hold only with CoreDNS alone and no dashboard
    minikube = yaml.safe_load((ROOT / "roles/minikube/defaults/main.yml").read_text())
    assert minikube["minikube_remove_kubeadm_kube_dns"] is True and "dashboard" in minikube["minikube_addons_disabled"]
    # and the docs show the same numbers
    assert_docs_budget_tables(budget, function_max, app_max)


def by_name_full(items: list[dict], prefix: str) -> str:
    return next(item["name"] for item in items if item["name"].startswith(prefix))


def assert_docs_budget_tables(budget: dict, function_max: int, app_max: int) -> None:
    text = DOCS.read_text()
    section = text[text.index("## Memory and CPU budget") :]
    section = section[: section.index("\n## ", 4)]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[1].isdigit() and cells[2].isdigit():
            rows[cells[0]] = (int(cells[1]), int(cells[2]))
    for item in budget["both"] + budget["kubeless"] + budget["kafka"]:
        assert rows.get(item["name"]) == (item["cpu_m"], item["memory_mib"]), item["name"]
    assert f"maxReplicas {function_max}" in section and f"maxReplicas {app_max}" in section


# --- 10. VM addresses and host keys --------------------------------------------------------------------------------
# libvirt : src/network/default.xml.in, the "default" network's DHCP range 192.168.122.2-192.168.122.254: every
# address of its subnet can be leased, so static VM addresses there may collide.
def test_10_static_addresses_lie_outside_the_dhcp_range(rendered, tmp_path):
    network = ET.parse(rendered / "vm_libvirt" / "network.xml").getroot()
    ip = network.find("ip")
    subnet = ipaddress.ip_network(f"{ip.get('address')}/{ip.get('netmask')}", strict=False)
    dhcp = network.find("ip/dhcp/range")
    start, end = ipaddress.ip_address(dhcp.get("start")), ipaddress.ip_address(dhcp.get("end"))
    hosts = yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]["children"]["paper_vms"]["children"]
    for group in ("kubeless", "kubernetes"):
        ((name, host),) = hosts[group]["hosts"].items()
        address = ipaddress.ip_address(host["ansible_host"])
        assert address in subnet and not start <= address <= end and str(address) != ip.get("address"), address
        domain = ET.parse(rendered / "vm_libvirt" / name / "domain.xml").getroot()
        assert domain.find("devices/interface/source").get("network") == network.findtext("name")
        config = yaml.safe_load((rendered / "vm_libvirt" / name / "network-config").read_text())
        assert config["ethernets"]["primary"]["gateway4"] == ip.get("address")
    # the role's own check refuses an address inside the range
    result = ansible_playbook(str(FIXTURES / "check_network.yml"), "-e", "ansible_host=192.168.150.120")
    assert result.returncode != 0 and "must lie outside the DHCP range" in result.stdout


def test_10_reprovisioned_vms_do_not_fail_host_key_checking():
    args = inventory_value("ansible_ssh_common_args", "kde-kubeless")
    known_hosts = inventory_value("paper_known_hosts", "kde-kubeless")
    assert "StrictHostKeyChecking=accept-new" in args and f"UserKnownHostsFile={known_hosts}" in args
    # vm_libvirt forgets a VM's old keys in that file whenever it is about to create the VM's disk
    tasks = yaml.safe_load((ROOT / "roles/vm_libvirt/tasks/vm.yml").read_text())
    names = [task["name"] for task in tasks]
    look = next(i for i, t in enumerate(tasks) if t.get("register") == "vm_libvirt_disk")
    forget = tasks[look + 1]
    assert forget["ansible.builtin.known_hosts"]["state"] == "absent"
    assert forget["ansible.builtin.known_hosts"]["path"] == "{{ vm_libvirt_known_hosts }}"
    assert forget["when"] == "not vm_libvirt_disk.stat.exists"
    assert tasks[look]["ansible.builtin.stat"]["path"].endswith("{{ vm_libvirt_host }}.qcow2")
    assert names.index(forget["name"]) < next(i for i, n in enumerate(names) if n.startswith("Create the VM disk"))
    role_default = yaml.safe_load((ROOT / "roles/vm_libvirt/defaults/main.yml").read_text())["vm_libvirt_known_hosts"]
    assert role_default.startswith("{{ paper_known_hosts")
    # the local profile keeps ansible.cfg's strict default
    assert "host_key_checking = True" in (ROOT / "ansible.cfg").read_text()


# --- 11. The docs claim only what holds ----------------------------------------------------------------------------
# kubeless @ v1.0.0-alpha.8 : kubeless-non-rbac.jsonnet, `crd` (no description on the CRDs);
# kafka-trigger @ v1.0.0-alpha.9 : kafka-zookeeper.jsonnet (the KafkaTrigger CRD still has one).
def test_11_docs_and_comments_claim_only_what_holds(rendered):
    text = DOCS.read_text()
    for claim in (
        "official library image, available",
        "so the HPA has something to measure against",
        "omit the top-level `description` field upstream puts on them",
    ):
        assert claim not in text, claim
    assert "validated statically" in text and "never run on a cluster" in text
    crd_template = (ROOT / "roles/kubeless/templates/10-crds.yaml.j2").read_text()
    assert "Upstream also puts a top-level" not in crd_template
    for doc in load_docs(rendered / "kubeless" / "10-crds.yaml"):
        assert "description" not in doc
    kafka_crd = (ROOT / "roles/kafka/templates/10-crd.yaml.j2").read_text()
    assert "kafka-zookeeper.jsonnet" in kafka_crd


# --- Preflight on the control node ---------------------------------------------------------------------------------
SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
AMD64 = "sha256:" + "a" * 64


class FakeRegistry(http.server.BaseHTTPRequestHandler):
    """A registry on 127.0.0.1: repositories named oci* answer an OCI index, list* a manifest list (listoci*: whose
    amd64 entry is an OCI manifest), auth* want a bearer token, missing* do not exist; /files/* are downloads."""

    def log_message(self, format, *args):  # the base class names its parameter "format"
        pass

    def reply(self, code: int, body: bytes = b"", media: str = "application/json", headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path.startswith("/files/"):
            return self.reply(404 if "missing" in self.path else 200, b"x", "application/octet-stream")
        if self.path.startswith("/token"):
            return self.reply(200, json.dumps({"token": "good"}).encode())
        match = re.fullmatch(r"/v2/(.+)/manifests/(.+)", self.path)
        if not match:
            return self.reply(404)
        repository, reference = match.groups()
        top = repository.split("/")[0]
        if top.startswith("auth") and self.headers.get("Authorization") != "Bearer good":
            challenge = (
                f'Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:{repository}:pull"'
            )
            return self.reply(401, b"{}", headers={"WWW-Authenticate": challenge})
        if top.startswith("missing"):
            return self.reply(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')
        if top.startswith("oci"):
            return self.reply(200, b'{"schemaVersion": 2, "manifests": []}', OCI_INDEX)
        if top.startswith("list") and reference != AMD64:
            body = {
                "schemaVersion": 2,
                "mediaType": LIST,
                "manifests": [
                    {"digest": "sha256:" + "b" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
                    {"digest": AMD64, "platform": {"os": "linux", "architecture": "amd64"}},
                ],
            }
            return self.reply(200, json.dumps(body).encode(), LIST)
        if top.startswith("listoci"):
            return self.reply(200, b"{}", OCI_MANIFEST)
        return self.reply(200, b'{"schemaVersion": 2}', SCHEMA2)


@pytest.fixture()
def fake_registry() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def check_supplies_module():
    spec = importlib.util.spec_from_file_location("check_supplies", ROOT / "roles/supply_check/files/check_supplies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preflight_parses_image_references_as_docker_does():
    parse = check_supplies_module().parse_image
    assert parse("busybox") == ("registry-1.docker.io", "library/busybox", "latest")
    assert parse("bitnami/kafka:1.1.0-r0") == ("registry-1.docker.io", "bitnami/kafka", "1.1.0-r0")
    assert parse("k8s.gcr.io/pause-amd64:3.1") == ("k8s.gcr.io", "pause-amd64", "3.1")
    assert parse("127.0.0.1:5000/a/b@sha256:" + "0" * 64) == ("127.0.0.1:5000", "a/b", "sha256:" + "0" * 64)
    assert parse("localhost/x") == ("localhost", "x", "latest")


def run_preflight(tmp_path: Path, extra: dict) -> tuple[subprocess.CompletedProcess, list[dict]]:
    report = tmp_path / "supplies.json"
    variables = {"supply_check_allowed_hosts": ["127.0.0.1"], "supply_check_report": str(report), **extra}
    extra_file = tmp_path / "preflight-vars.json"
    extra_file.write_text(json.dumps(variables))
    result = ansible_playbook(str(ROOT / "playbooks/paper/preflight.yml"), "-e", f"@{extra_file}", timeout=300)
    return result, json.loads(report.read_text()) if report.exists() else []


def test_preflight_lists_every_image_the_profile_runs_and_contacts_no_other_host(rendered, tmp_path):
    result, report = run_preflight(tmp_path, {"supply_check_fail": False})
    assert result.returncode == 0, result.stdout[-3000:]
    images = {item["ref"] for item in report if item["kind"] == "image"}
    for folder in ("kubeless", "kafka", "metrics_server"):
        for path in sorted((rendered / folder).glob("*.yaml")):
            for doc in load_docs(path):
                pod = doc.get("spec", {}).get("template", {}).get("spec", {})
                for container in pod.get("containers", []) + pod.get("initContainers", []):
                    assert container["image"] in images, (path.name, container["image"])
    assert {
        "k8s.gcr.io/kube-apiserver-amd64:v1.10.0",
        "k8s.gcr.io/coredns:1.2.2",
        "k8s.gcr.io/defaultbackend:1.4",
        "quay.io/kubernetes-ingress-controller/nginx-ingress-controller:0.16.2",
    } <= images
    variables = {item["variable"] for item in report}
    assert {
        "minikube_url",
        "kubectl_url",
        "docker_pinned_static_url",
        "vm_libvirt_image_url",
        "minikube_k8s_binaries_base_url",
    } <= variables
    # nothing but 127.0.0.1 may be contacted here: every 2018 location is reported unchecked, none was asked
    assert report and all(not item["ok"] and item["problem"].startswith("not checked:") for item in report)


def test_preflight_stops_naming_the_variable_of_each_image_and_download_that_fails(fake_registry, tmp_path):
    registry = fake_registry
    files = f"http://{registry}/files"
    hardcoded = check_hardcoded_images()
    archive = tmp_path / "storage-provisioner.tar"
    archive.write_bytes(b"archive")
    extra = {
        "docker_pinned_image_aliases": [
            {"source": f"{registry}/k8s/{image.rsplit('/', 1)[1]}", "target": image}
            for image in hardcoded
            if "storage-provisioner" not in image
        ],
        "docker_pinned_image_archives": [
            {"src": str(archive), "images": ["gcr.io/k8s-minikube/storage-provisioner:v1.8.1"]}
        ],
        "minikube_url": f"{files}/missing-minikube-linux-amd64",
        "minikube_k8s_binaries_base_url": f"{files}/k8s",
        "kubectl_url": f"{files}/kubectl",
        "docker_pinned_static_url": f"{files}/docker-17.03.2-ce.tgz",
        "vm_libvirt_image_url": f"{files}/ubuntu-18.04-server-cloudimg-amd64.img",
        "vm_libvirt_image_checksum": f"sha256:{files}/SHA256SUMS",
        "metrics_server_image": f"{registry}/listoci/metrics-server-amd64:v0.3.1",
        "kubeless_function_controller_image": f"{registry}/kubeless/function-controller:v1.0.0-alpha.8",
        "kubeless_http_trigger_image": f"{registry}/missing/http-trigger-controller:v1.0.0-alpha.9",
        "kafka_image": f"{registry}/auth/kafka:1.1.0-r0",
        "kafka_zookeeper_image": f"{registry}/oci/zookeeper:3.4.10-r12",
        "kafka_trigger_controller_image": f"{registry}/list/kafka-trigger-controller:v1.0.0-alpha.9",
        # the python311-image function: the python3.6 runtime's images (kubeless_runtime_images, a nested list)
        # would otherwise be checked on Docker Hub, which this test never contacts
        "function_variant": "python311-image",
    }
    result, report = run_preflight(tmp_path, extra)
    assert result.returncode != 0
    failed = {item["variable"]: item for item in report if not item["ok"]}
    assert set(failed) == {
        "minikube_url",
        "metrics_server_image",
        "kubeless_http_trigger_image",
        "kafka_zookeeper_image",
    }, failed
    assert "OCI format Docker 17.03 cannot pull" in failed["kafka_zookeeper_image"]["problem"]
    assert "linux/amd64 entry" in failed["metrics_server_image"]["problem"]
    assert "404" in failed["kubeless_http_trigger_image"]["problem"] and "404" in failed["minikube_url"]["problem"]
    for variable in failed:
        assert f"set {variable}" in result.stdout, variable
    passed = {item["variable"] for item in report if item["ok"]}
    assert {
        "kafka_image",
        "kafka_trigger_controller_image",
        "kubectl_url",
        "kubectl_checksum",
        "docker_pinned_image_archives",
    } <= passed
    assert all(item["ok"] for item in report if item["variable"].startswith("docker_pinned_image_aliases"))


@functools.cache
def check_hardcoded_images() -> tuple[str, ...]:
    """minikube's and its ingress addon's hard-coded images, as the roles list them."""
    text = (ROOT / "roles/minikube/tasks/supplies.yml").read_text() + (
        ROOT / "roles/http_trigger/tasks/supplies.yml"
    ).read_text()
    fixed = re.findall(r"'((?:k8s\.gcr\.io|gcr\.io|quay\.io)/[^']+:[^']+)'", text)
    components = ("kube-proxy", "kube-scheduler", "kube-controller-manager", "kube-apiserver")
    return tuple(sorted(set(fixed) | {f"k8s.gcr.io/{c}-amd64:v1.10.0" for c in components}))
