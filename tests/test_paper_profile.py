"""The paper profile (inventory/paper, playbooks/paper and the roles they use), validated statically.

Nothing of the paper profile can run on these machines: Minikube, Kubernetes 1.10, the Kubeless controllers, Kafka
and the two VMs need hosts and images we cannot reach, and nothing here pretends to be a cluster. What is checked:

- every paper playbook passes `ansible-playbook --syntax-check` against inventory/paper;
- ansible-lint's production profile passes over the paper roles, playbooks, inventory and these fixtures;
- every template of the paper roles is rendered by real Ansible through the roles' own render entry points
  (tests/paper/render.yml) and every Kubernetes object is validated with `kubernetes-validate -k 1.10.0 --strict`,
  asserting that each one was actually validated (a missing schema only warns). The Kubeless custom resources have
  no schema there: they are checked against the alpha.8 field lists below, and the Deployment, Service and HPA
  embedded in the Function are validated against the 1.10 schemas on their own;
- rendering twice changes nothing, and every image can be moved to another registry by a variable;
- the download steps of the minikube, kubectl and docker_pinned roles install a file whose checksum matches and
  refuse one that does not, with a message that says what to do. The files come from an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from hashlib import sha1, sha256
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventory" / "paper"
PAPER_PLAYBOOKS = sorted((ROOT / "playbooks" / "paper").glob("*.yml"))
FIXTURES = ROOT / "tests" / "paper"
PAPER_ROLES = (
    "vm_libvirt",
    "preflight",
    "docker_pinned",
    "kubectl",
    "minikube",
    "metrics_server",
    "kubeless",
    "http_trigger",
    "kafka",
    "vm_image_build",
    "kubeless_function",
    "cluster_bench",
    "supply_check",
    "pod_diagnosis",
)

# --- The Kubeless custom resources as alpha.8 knows them (see ../shared/reference, section 2) -----------------------
# kubeless @ v1.0.0-alpha.8 : pkg/apis/kubeless/v1beta1/function.go, JSON names of FunctionSpec.
FUNCTION_SPEC_FIELDS = {
    "handler",
    "function",
    "function-content-type",
    "checksum",
    "runtime",
    "timeout",
    "deps",
    "deployment",
    "service",
    "horizontalPodAutoscaler",
}
FUNCTION_CONTENT_TYPES = {"text", "base64", "base64+zip", "url", "url+zip"}
# http-trigger @ v1.0.0-alpha.9 : pkg/apis/kubeless/v1beta1/http_trigger.go (cors-enable only arrived in v1.0.0).
HTTP_TRIGGER_SPEC_FIELDS = {"function-name", "host-name", "tls", "tls-secret", "path", "basic-auth-secret", "gateway"}
HTTP_TRIGGER_GATEWAYS = {"nginx", "traefik", "kong"}
# kafka-trigger : pkg/apis/kubeless/v1beta1/kafka_trigger.go.
KAFKA_TRIGGER_SPEC_FIELDS = {"topic", "functionSelector"}
# kubeless @ v1.0.0-alpha.8 : kubeless-non-rbac.jsonnet, the keys of kubeless-config.
KUBELESS_CONFIG_KEYS = {
    "ingress-enabled",
    "service-type",
    "deployment",
    "runtime-images",
    "enable-build-step",
    "function-registry-tls-verify",
    "provision-image",
    "provision-image-secret",
    "builder-image",
    "builder-image-secret",
}
RUNTIME_ENTRY_FIELDS = {"ID", "compiled", "versions", "depName", "fileNameSuffix"}
RUNTIME_VERSION_FIELDS = {"name", "version", "runtimeImage", "initImage"}
# The kinds these roles use, and the kinds the alpha.8 CRDs define.
KUBELESS_KINDS = {"Function", "HTTPTrigger", "KafkaTrigger"}


def check_function(doc: dict, runtimes: list[dict]) -> list[str]:
    """Problems of a Function against the alpha.8 FunctionSpec and what its controller relies on."""
    problems = []
    spec = doc.get("spec", {})
    name = doc["metadata"]["name"]
    labels = doc["metadata"].get("labels", {})
    problems += [f"Function spec field {key!r} does not exist at alpha.8" for key in set(spec) - FUNCTION_SPEC_FIELDS]
    if not isinstance(spec.get("handler"), str) or spec["handler"].count(".") != 1:
        problems.append(f"handler {spec.get('handler')!r} is not '<module>.<function>' with exactly one dot")
    if spec.get("function-content-type") not in FUNCTION_CONTENT_TYPES:
        problems.append(f"function-content-type {spec.get('function-content-type')!r} is not one of the alpha.8 types")
    if spec.get("checksum") and not re.fullmatch(r"sha256:[0-9a-f]{64}", spec["checksum"]):
        problems.append(f"checksum {spec['checksum']!r} is not sha256:<hex>")
    if not isinstance(spec.get("timeout"), str) or not spec["timeout"].isdigit():
        problems.append(f"timeout {spec.get('timeout')!r} must be a string of seconds")
    known = {f"{entry['ID']}{version['version']}" for entry in runtimes for version in entry["versions"]}
    if spec.get("runtime") not in known:
        problems.append(f"runtime {spec.get('runtime')!r} is not in kubeless-config's runtime-images {sorted(known)}")
    if labels.get("function") != name or labels.get("created-by") != "kubeless":
        problems.append("metadata.labels must carry function=<name> and created-by=kubeless (the CLI sets both)")
    template = spec.get("deployment", {}).get("spec", {}).get("template", {})
    containers = template.get("spec", {}).get("containers", [])
    if len(containers) != 1:
        problems.append("the deployment template must have exactly one container (the runtime)")
    else:
        container = containers[0]
        if not container.get("image") and not spec.get("function"):
            # without an image the controller runs the code on the runtime-images' runtime (the python36-2018 variant)
            problems.append("the runtime container has no image and the Function no code: nothing would run")
        if container.get("imagePullPolicy") != "IfNotPresent":
            problems.append("imagePullPolicy must be IfNotPresent: the image exists only in the node's Docker")
        if not container.get("resources", {}).get("requests", {}).get("cpu"):
            problems.append("no CPU request: the HPA has nothing to measure utilization against")
    pod_labels = template.get("metadata", {}).get("labels", {})
    selector = spec.get("service", {}).get("selector", {})
    if not selector or any(pod_labels.get(key) != value for key, value in selector.items()):
        problems.append(f"service selector {selector} does not select the pod labels {pod_labels}")
    ports = spec.get("service", {}).get("ports", [])
    if [port.get("name") for port in ports] != ["http-function-port"]:
        problems.append("the Service needs one port named http-function-port (bench reads /metrics through it)")
    hpa = spec.get("horizontalPodAutoscaler")
    if hpa and (
        hpa.get("spec", {}).get("scaleTargetRef", {}).get("name") != name or "replicas" in spec["deployment"]["spec"]
    ):
        problems.append("the HPA must target the function's Deployment, and the template must leave replicas to it")
    return problems


def check_http_trigger(doc: dict, function_names: set[str]) -> list[str]:
    spec = doc.get("spec", {})
    problems = [
        f"HTTPTrigger spec field {key!r} does not exist at alpha.9" for key in set(spec) - HTTP_TRIGGER_SPEC_FIELDS
    ]
    if spec.get("function-name") not in function_names:
        problems.append(f"function-name {spec.get('function-name')!r} names no rendered Function")
    if not isinstance(spec.get("path"), str) or spec["path"].startswith("/"):
        problems.append("path must be given without a leading slash (the controller prepends one)")
    if spec.get("gateway") not in HTTP_TRIGGER_GATEWAYS:
        problems.append(f"gateway {spec.get('gateway')!r} is not nginx, traefik or kong")
    if not isinstance(spec.get("tls", False), bool):
        problems.append("tls is a boolean")
    return problems


def check_kafka_trigger(doc: dict, function_labels: list[dict], topics: set[str]) -> list[str]:
    spec = doc.get("spec", {})
    problems = [f"KafkaTrigger spec field {key!r} does not exist" for key in set(spec) - KAFKA_TRIGGER_SPEC_FIELDS]
    if spec.get("topic") not in topics:
        problems.append(f"topic {spec.get('topic')!r} is not one the kafka role creates ({sorted(topics)})")
    match = spec.get("functionSelector", {}).get("matchLabels", {})
    if not match or not any(all(labels.get(k) == v for k, v in match.items()) for labels in function_labels):
        problems.append(f"functionSelector {match} selects no rendered Function")
    return problems


# --- Running Ansible --------------------------------------------------------------------------------------------
def ansible_env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        # only ever 127.0.0.1 in these tests, never through a proxy
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def inventory_value(expression: str, host: str = "localhost") -> object:
    """A variable of the paper inventory as Ansible resolves it for host."""
    result = subprocess.run(
        [
            str(VENV_BIN / "ansible"),
            "-i",
            str(INVENTORY),
            host,
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={{{{ {expression} | to_json }}}}",
        ],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(result.stdout[result.stdout.index("{") :])["msg"]
    return json.loads(payload) if isinstance(payload, str) else payload


def ansible_playbook(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), *args],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def recap(output: str) -> dict[str, int]:
    match = re.search(r"^localhost\s*:\s*(.*)$", output, re.MULTILINE)
    assert match, f"no PLAY RECAP line for localhost in:\n{output[-3000:]}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def load_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def group_vars() -> dict:
    merged: dict = {}
    for name in ("all", "paper_vms"):
        merged.update(yaml.safe_load((INVENTORY / "group_vars" / f"{name}.yml").read_text()))
    return merged


# --- Syntax and lint ----------------------------------------------------------------------------------------------
def test_every_paper_playbook_passes_the_syntax_check():
    playbooks = [*PAPER_PLAYBOOKS, *sorted(FIXTURES.glob("*.yml"))]
    assert {p.name for p in PAPER_PLAYBOOKS} >= {
        "site.yml",
        "provision.yml",
        "platform.yml",
        "deploy.yml",
        "coldstart.yml",
        "autoscale.yml",
    }
    result = ansible_playbook("--syntax-check", *map(str, playbooks))
    assert result.returncode == 0, result.stdout + result.stderr
    for playbook in playbooks:
        assert f"playbook: {playbook}" in result.stdout


def test_ansible_lint_production_profile_passes():
    paths = [f"roles/{role}" for role in PAPER_ROLES] + ["playbooks/paper", "inventory/paper", "tests/paper"]
    result = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "--offline", *paths],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert re.search(r"Passed: 0 failure\(s\), 0 warning\(s\)", output), output[-3000:]
    assert "Profile 'production' was required, and it passed" in output


def test_every_noqa_says_why():
    """A `# noqa` silences one rule on one task; the comment line above it must explain the reason."""
    for path in [*(ROOT / "roles" / role for role in PAPER_ROLES), ROOT / "playbooks" / "paper"]:
        for file in path.rglob("*.yml"):
            lines = file.read_text().splitlines()
            for number, line in enumerate(lines):
                if "# noqa" in line:
                    above = lines[number - 1].strip()
                    assert above.startswith("#") and len(above) > 20, f"{file}:{number + 1}: noqa without a reason"


def test_every_role_knob_is_prefixed_and_documented():
    for role in PAPER_ROLES:
        defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
        specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        for key in defaults:
            assert key.startswith(f"{role}_"), f"{role}: {key} is not prefixed with the role name"
        for entry, spec in specs.items():
            undocumented = set(defaults) - set(spec["options"])
            assert not undocumented, f"{role} argument_specs.{entry} lacks {sorted(undocumented)}"
            for key, option in spec["options"].items():
                assert option.get("description"), f"{role}: {key} has no description"


def run_argument_spec_check(roles: list[str], *extra: str) -> subprocess.CompletedProcess:
    return ansible_playbook(
        str(FIXTURES / "argument_specs.yml"), "-e", json.dumps({"check_roles": roles}), *extra, timeout=300
    )


def test_role_defaults_satisfy_their_argument_specs():
    """What Ansible checks when each role starts on a VM, checked here for every entry point of every role."""
    result = run_argument_spec_check(list(PAPER_ROLES))
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap(result.stdout)["failed"] == 0


def test_argument_specs_reject_a_wrong_type():
    result = run_argument_spec_check(["kubectl"], "-e", "kubectl_download_timeout=soon")
    assert result.returncode != 0
    assert "kubectl_download_timeout' is of type str and we were unable to convert to int" in result.stdout


def test_bench_platforms_of_the_paper_inventory_are_valid_bench_config():
    """bench.yml hands these dicts to `python -m analysis.bench init`; its own validation must accept them."""
    from analysis.bench.config import _platform

    platforms = inventory_value("{'function': bench_function_platform, 'container': bench_container_platform}")
    for name, settings in platforms.items():
        platform = _platform(name, settings)
        assert platform.log_source == "kubectl" and platform.kubectl.context in {"kde-kubeless", "kde-kubernetes"}
    assert platforms["function"]["url"] == "http://192.168.150.10/predict"
    assert platforms["container"]["url"] == "http://192.168.150.11:30081/predict"


# --- Rendered manifests ---------------------------------------------------------------------------------------
def embedded_objects(function: dict) -> Iterator[dict]:
    """The Deployment, Service and HPA a Function carries, as the objects the controller makes of them."""
    name, spec = function["metadata"]["name"], function["spec"]
    labels = function["metadata"]["labels"]
    yield {
        "apiVersion": "extensions/v1beta1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": spec["deployment"]["spec"],
    }
    yield {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels}, "spec": spec["service"]}
    if "horizontalPodAutoscaler" in spec:
        yield spec["horizontalPodAutoscaler"]


def test_every_rendered_manifest_validates_against_kubernetes_1_10(rendered, tmp_path):
    manifests = sorted(rendered.rglob("*.yaml"))
    assert len(manifests) >= 20, manifests
    expected: list[tuple[Path, str]] = []
    embedded_dir = tmp_path / "embedded"
    embedded_dir.mkdir()
    for path in manifests:
        for doc in load_docs(path):
            if doc["apiVersion"].startswith("kubeless.io/"):
                assert doc["kind"] in KUBELESS_KINDS
                if doc["kind"] == "Function":
                    for n, obj in enumerate(embedded_objects(doc)):
                        target = embedded_dir / f"{path.parent.name}-{obj['kind'].lower()}-{n}.yaml"
                        target.write_text(yaml.safe_dump(obj))
                        expected.append((target, f"{obj['kind'].lower()}/{obj['metadata']['name']}"))
                continue
            expected.append((path, f"{doc['kind'].lower()}/{doc['metadata']['name']}"))
    files = sorted({str(path) for path, _ in expected} | {str(p) for p in manifests})
    result = subprocess.run(
        [str(VENV_BIN / "kubernetes-validate"), "-k", "1.10.0", "--strict", *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ERROR" not in output, output
    for path, resource in expected:
        assert f"INFO {path} passed for resource {resource} against version 1.10" in output, (path, resource, output)
    # the only warnings allowed: the Kubeless custom resources, which have no schema in 1.10
    warnings = [line for line in output.splitlines() if line.startswith("WARN")]
    assert warnings and all(
        re.search(r"kind (Function|HTTPTrigger|KafkaTrigger) with api version kubeless.io", w) for w in warnings
    ), warnings
    # every kind the paper roles deploy was really checked
    kinds = {resource.split("/")[0] for _, resource in expected}
    assert kinds >= {
        "namespace",
        "customresourcedefinition",
        "serviceaccount",
        "clusterrole",
        "clusterrolebinding",
        "rolebinding",
        "configmap",
        "deployment",
        "statefulset",
        "service",
        "apiservice",
        "horizontalpodautoscaler",
    }, kinds


def test_kubeless_resources_match_the_alpha8_fields(rendered):
    config = load_docs(rendered / "kubeless" / "30-config.yaml")[0]
    assert set(config["data"]) == KUBELESS_CONFIG_KEYS
    runtimes = json.loads(config["data"]["runtime-images"])
    for entry in runtimes:
        assert set(entry) == RUNTIME_ENTRY_FIELDS
        for version in entry["versions"]:
            assert set(version) == RUNTIME_VERSION_FIELDS
    assert json.loads(config["data"]["deployment"]) == {}
    topics = {t["name"] for t in yaml.safe_load((ROOT / "roles/kafka/defaults/main.yml").read_text())["kafka_topics"]}
    body_size = load_docs(rendered / "http_trigger" / "ingress-config.yaml")[0]["data"]["proxy-body-size"]
    for folder in ("kubeless_function", "kubeless_function_hpa", "kubeless_function_py311", "mirror/kubeless_function"):
        docs = [doc for path in sorted((rendered / folder).glob("*.yaml")) for doc in load_docs(path)]
        by_kind = {kind: [d for d in docs if d["kind"] == kind] for kind in KUBELESS_KINDS}
        assert all(len(found) == 1 for found in by_kind.values()), folder
        function = by_kind["Function"][0]
        assert check_function(function, runtimes) == [], folder
        assert check_http_trigger(by_kind["HTTPTrigger"][0], {function["metadata"]["name"]}) == [], folder
        labels = [
            function["metadata"]["labels"],
            function["spec"]["deployment"]["spec"]["template"]["metadata"]["labels"],
        ]
        assert check_kafka_trigger(by_kind["KafkaTrigger"][0], labels, topics) == [], folder
        annotations = by_kind["HTTPTrigger"][0]["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == body_size
    hpa_function = load_docs(rendered / "kubeless_function_hpa" / "function.yaml")[0]
    env = hpa_function["spec"]["deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "WORKERS", "value": "2"} in env  # numbers become the strings Kubernetes requires


def test_the_field_checks_catch_what_alpha8_does_not_know(rendered):
    """The checks above can fail: fields from later Kubeless releases and broken wiring are reported."""
    runtimes = json.loads(load_docs(rendered / "kubeless" / "30-config.yaml")[0]["data"]["runtime-images"])
    function = load_docs(rendered / "kubeless_function" / "function.yaml")[0]
    broken = json.loads(json.dumps(function))
    broken["spec"]["runtime"] = "python3.7"  # added to kubeless/runtimes in Nov 2018, after alpha.8
    broken["spec"]["handler"] = "handler"
    broken["spec"]["deployment"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    del broken["spec"]["deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    assert len(check_function(broken, runtimes)) == 4
    trigger = load_docs(rendered / "kubeless_function" / "http-trigger.yaml")[0]
    trigger["spec"]["cors-enable"] = True  # http-trigger v1.0.0 (2019), not alpha.9
    trigger["spec"]["path"] = "/predict"
    assert len(check_http_trigger(trigger, {"kde-function"})) == 2
    kafka = load_docs(rendered / "kubeless_function" / "kafka-trigger.yaml")[0]
    kafka["spec"]["functionSelector"]["matchLabels"]["function"] = "other"
    assert len(check_kafka_trigger(kafka, [function["metadata"]["labels"]], {kafka["spec"]["topic"]})) == 1


def test_every_image_can_be_moved_to_another_registry(rendered):
    """With every *_image variable pointed at a mirror, no rendered object still names a 2018 registry path."""
    render_fixture = (FIXTURES / "render.yml").read_text()
    for role in ("kubeless", "kafka", "metrics_server", "kubeless_function"):
        defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
        for key in [k for k in defaults if k.endswith(("_image", "_runtime_images"))]:
            assert f"{key}:" in render_fixture, f"tests/paper/render.yml does not move {key}"
    images = []
    for path in sorted((rendered / "mirror").rglob("*.yaml")):
        text = path.read_text()
        images += re.findall(r'"?image"?: "?([^",}\s]+)', text)
        images += re.findall(r'(?:runtimeImage|initImage)\\": \\"([^\\"]+)', text)
        images += re.findall(r"(?:provision|builder)-image: \"([^\"]+)\"", text)
    assert len(images) >= 12, images
    assert all(image.startswith("mirror.invalid/") for image in images), images


def test_rendering_twice_changes_nothing(rendered):
    result = ansible_playbook(str(FIXTURES / "render.yml"), "-e", f"render_dir={rendered}", "--tags", "idempotence")
    assert result.returncode == 0, result.stdout[-3000:]
    counts = recap(result.stdout)
    assert counts["ok"] >= 5 and counts["changed"] == 0, counts


def test_vm_files_match_the_inventory(rendered, group_vars):
    hosts = yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]["children"]["paper_vms"]["children"]
    for group in ("kubeless", "kubernetes"):
        ((name, host),) = hosts[group]["hosts"].items()
        folder = rendered / "vm_libvirt" / name
        domain = ET.parse(folder / "domain.xml").getroot()
        assert domain.findtext("name") == name
        assert int(domain.findtext("vcpu")) == group_vars["vm_vcpus"] == 2
        assert int(domain.findtext("memory")) == group_vars["vm_memory_mb"] == 2048
        assert domain.find("cpu").get("mode") == "host-passthrough"  # AVX for the TensorFlow wheels
        user_data = (folder / "user-data").read_text()
        assert user_data.startswith("#cloud-config\n")
        cloud = yaml.safe_load(user_data)
        assert cloud["users"][0]["name"] == group_vars["ansible_user"]
        assert cloud["users"][0]["ssh_authorized_keys"][0].startswith("ssh-ed25519 ")
        assert Path(group_vars["ansible_python_interpreter"]).name in cloud["packages"]
        network = yaml.safe_load((folder / "network-config").read_text())
        assert network["ethernets"]["primary"]["addresses"] == [f"{host['ansible_host']}/24"]


def test_docker_config_and_probe_scripts(rendered):
    daemon = json.loads((rendered / "docker_static" / "etc" / "daemon.json").read_text())
    assert "native.cgroupdriver=cgroupfs" in daemon["exec-opts"]  # minikube 0.29 starts kubelet with cgroupfs
    assert daemon["registry-mirrors"] == ["http://127.0.0.1:5000"]
    unit = (rendered / "docker_static" / "systemd" / "docker.service").read_text()
    assert "ExecStart=/usr/local/bin/dockerd -H fd://" in unit
    assert "SocketGroup=docker" in (rendered / "docker_static" / "systemd" / "docker.socket").read_text()


# --- Downloads: pinned checksums against a local server -----------------------------------------------------------
@pytest.fixture()
def file_server(tmp_path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on 127.0.0.1 serving fake release files at the upstream paths."""
    root = tmp_path / "srv"
    files = {
        "minikube/releases/v0.29.0/minikube-linux-amd64": os.urandom(200_000),
        "kubernetes-release/release/v1.10.0/bin/linux/amd64/kubectl": os.urandom(100_000),
        "linux/static/stable/x86_64/docker-17.03.2-ce.tgz": os.urandom(50_000),
    }
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    kubectl = root / "kubernetes-release/release/v1.10.0/bin/linux/amd64/kubectl"
    (kubectl.parent / "kubectl.sha1").write_text(sha1(kubectl.read_bytes()).hexdigest() + "\n")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the base class names its parameter "format"
        pass


def run_downloads(tmp_path: Path, base_url: str, checksums: dict[str, str], name: str) -> dict:
    dest, report = tmp_path / name, tmp_path / f"{name}.json"
    extra = {"base_url": base_url, "dest": str(dest), "report": str(report), "checksums": checksums}
    extra_file = tmp_path / f"{name}-vars.json"
    extra_file.write_text(json.dumps(extra))
    result = ansible_playbook(str(FIXTURES / "download.yml"), "-e", f"@{extra_file}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return json.loads(report.read_text())


def test_downloads_with_matching_checksums_install_once(tmp_path, file_server):
    base_url, root = file_server
    minikube = root / "minikube/releases/v0.29.0/minikube-linux-amd64"
    docker = root / "linux/static/stable/x86_64/docker-17.03.2-ce.tgz"
    checksums = {
        "minikube": f"sha256:{sha256(minikube.read_bytes()).hexdigest()}",
        "docker": f"sha256:{sha256(docker.read_bytes()).hexdigest()}",
        "kubectl": "",  # the role's default: the .sha1 file published next to the binary
    }
    report = run_downloads(tmp_path, base_url, checksums, "good")
    # each step ran twice: the second run found the verified file in place and changed nothing
    assert report == {name: {"result": "ok", "changed_last": False} for name in ("minikube", "kubectl", "docker")}
    installed = tmp_path / "good"
    assert (installed / "minikube" / "minikube").read_bytes() == minikube.read_bytes()
    assert (installed / "kubectl" / "kubectl").stat().st_mode & 0o777 == 0o755
    assert (installed / "docker" / "docker-17.03.2-ce.tgz").read_bytes() == docker.read_bytes()


def test_downloads_with_wrong_checksums_fail_clearly(tmp_path, file_server):
    base_url, _ = file_server
    checksums = {
        # the real 2018 digests: the fake files served here are not those releases
        "minikube": "sha256:0f8890d4a0869e6e80a62e63ad08336caf75e38111307e8fe57773d706c4142d",
        "docker": "sha256:183b31b001e7480f3c691080486401aa519101a5cfe6e05ad01b9f5521c4112d",
        "kubectl": "sha1:" + "0" * 40,
    }
    report = run_downloads(tmp_path, base_url, checksums, "bad")
    hints = {
        "minikube": ("minikube v0.29.0 could not be installed", "set minikube_url"),
        "kubectl": ("kubectl v1.10.0 could not be installed", "set kubectl_url and kubectl_checksum"),
        "docker": (
            "The Docker engine could not be fetched",
            "docker_pinned_static_url and docker_pinned_static_checksum",
        ),
    }
    for name, (opening, advice) in hints.items():
        outcome = report[name]
        assert outcome["result"] == "failed", outcome
        assert outcome["msg"].startswith(opening) and advice in outcome["msg"], outcome["msg"]
        assert "did not match" in outcome["msg"] and checksums[name].split(":")[1] in outcome["msg"]
        assert ".." not in outcome["msg"].replace("...", "")
    # nothing unverified was left where the binaries go
    assert not any(path.is_file() for path in (tmp_path / "bad").rglob("*"))
