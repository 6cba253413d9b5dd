"""Issue 25 (paper profile, third review): each finding pinned by a test that fails on the code before the fix.

As in tests/test_paper_findings.py, each test checks what Ansible renders or does against a small model of the
upstream code that decides the outcome, and names the upstream file and tag it encodes: kubeless v1.0.0-alpha.8,
kubeless/http-trigger v1.0.0-alpha.9, apache/kafka 1.1.0, bitnami/bitnami-docker-kafka 1.1.0-r0, keras 2.2.4. The
Ansible runs here talk to stubs (a stub bench driver, a stub kubectl, an HTTP server on 127.0.0.1), never to a
cluster.
"""

from __future__ import annotations

import ast
import http.server
import importlib.util
import json
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.test_paper_findings import budget_fit, function_container, quantity_mib
from tests.test_paper_profile import INVENTORY, ROOT, ansible_env, inventory_value, load_docs

VENV_BIN = Path(sys.executable).parent
PY36 = ROOT / "function" / "kubeless" / "py36"
MIB = 1024 * 1024


def playbook(path: Path, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), str(path), *args], cwd=ROOT,
                          env={**ansible_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout)


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


# --- 1. The autoscale action runs the plan's autoscale steps --------------------------------------------------------
# analysis/bench/cli.py cmd_plan (this project): `plan RUN --pending --compact` prints the pending steps, each with
# step, platform, run_key, index and argv; roles/cluster_bench/tasks/coldstart.yml loops over its coldstart steps.
STUB_DRIVER = """#!/usr/bin/env python3
import json, os, sys
state = os.environ["STUB_STATE"]
args = sys.argv[3:]  # after -m analysis.bench
if args[0] == "example-config":  # roles/bench renders its configuration from the real driver's example
    os.execv(os.environ["STUB_REAL_PYTHON"], [os.environ["STUB_REAL_PYTHON"], *sys.argv[1:]])
with open(state + ".log", "a") as log:
    log.write(json.dumps(args) + "\\n")
done = open(state).read().split() if os.path.exists(state) else []
run_dir = os.environ["STUB_RUN_DIR"]
steps = [{"step": "coldstart", "platform": "function", "run_key": "coldstart-function-scale-r1",
          "argv": ["coldstart", run_dir, "--platform", "function"]}]
steps += [{"step": "autoscale", "platform": p, "run_key": "autoscale-%s-c20" % p,
           "argv": ["autoscale", run_dir, "--platform", p]} for p in ("function", "container")]
for i, step in enumerate(steps, 1):
    step["index"] = i
if args[0] == "init":
    print(json.dumps({"run_id": "stub", "run_dir": run_dir, "resumed": False, "done": 0, "planned": len(steps)}))
elif args[0] == "plan":
    print(json.dumps([s for s in steps if s["run_key"] not in done]))
elif args[0] == "autoscale":
    with open(state, "a") as fh:
        fh.write("autoscale-%s-c20\\n" % args[3])
    print("autoscale %s: done" % args[3])
elif args[0] == "finalize":
    print("finalized")
else:
    sys.exit("unexpected " + " ".join(args))
"""


def test_1_the_autoscale_action_runs_each_planned_autoscale_step(tmp_path):
    driver = executable(tmp_path / "driver.py", STUB_DRIVER)
    play = tmp_path / "autoscale.yml"
    play.write_text(yaml.safe_dump([{
        "name": "The autoscale action against a stub driver", "hosts": "paper_control", "gather_facts": False,
        "vars": {"project_dir": str(ROOT)},
        "tasks": [{"name": "Autoscale", "ansible.builtin.include_role": {"name": "cluster_bench"},
                   "vars": {"cluster_bench_action": "autoscale"}}],
    }]))
    state = tmp_path / "state"
    result = playbook(play, "-e", f"bench_python={driver}", "-e", f"bench_results_dir={tmp_path / 'results'}",
                      "-e", "run_id=stub", env={"STUB_STATE": str(state), "STUB_RUN_DIR": str(tmp_path / "run"),
                           "STUB_REAL_PYTHON": sys.executable})
    logged = [json.loads(line) for line in (tmp_path / "state.log").read_text().splitlines()] if (
        tmp_path / "state.log").exists() else []
    calls = [args[:1] + (args[3:4] if args[0] == "autoscale" else []) for args in logged]
    assert result.returncode == 0, result.stdout[-3000:]
    # init, plan, both autoscale steps (never the coldstart one), finalize, and the final check of the plan
    assert calls == [["init"], ["plan"], ["autoscale", "function"], ["autoscale", "container"], ["finalize"],
                     ["plan"]]


def test_1_the_autoscale_play_reaches_the_driver_with_the_real_plan(tmp_path):
    """playbooks/paper/autoscale.yml's control-node play with the real driver (as test_cluster_driver does for the
    cold starts): it gets as far as the driver's autoscale step, which stops at the missing kubeconfig."""
    for name in ("kde-kubeless.yaml", "kde-kubernetes.yaml"):
        if (ROOT / "build" / "kubeconfig" / name).exists():
            pytest.skip("a real kubeconfig of the paper profile is present: this test would touch that cluster")
    result = playbook(ROOT / "playbooks" / "paper" / "autoscale.yml", "--limit", "paper_control",
                      "-e", f"bench_results_dir={tmp_path}", "-e", f"bench_python={sys.executable}")
    assert result.returncode != 0
    assert "cluster_bench_autoscale_steps" not in result.stdout
    assert '"analysis.bench", "autoscale"' in result.stdout and "kde-kubeless.yaml does not exist" in result.stdout


# --- 2. Kafka's heap holds the log cleaner's buffer ----------------------------------------------------------------
# apache/kafka @ 1.1.0 : core/src/main/scala/kafka/server/KafkaConfig.scala, Defaults: LogCleanerThreads = 1,
# LogCleanerDedupeBufferSize = 128 MiB, LogCleanerIoBufferSize = 512 KiB, and the check "at least 1MB per cleaner
# thread"; core/src/main/scala/kafka/log/LogCleaner.scala: each cleaner thread allocates a SkimpyOffsetMap of
# dedupeBufferSize / threads (OffsetMap.scala, ByteBuffer.allocate: on the heap) and two I/O buffers of
# ioBufferSize / threads / 2, when the broker starts. bin/kafka-server-start.sh sets -Xmx1G: upstream gives the
# cleaner 1/8 of the heap.
KAFKA_1_1_DEFAULTS = {"log.cleaner.threads": 1, "log.cleaner.dedupe.buffer.size": 128 * MIB,
                      "log.cleaner.io.buffer.size": 512 * 1024}
UPSTREAM_CLEANER_SHARE = (128 * MIB) / (1024 * MIB)


def broker_settings(command: list[str]) -> dict[str, int]:
    """Kafka.scala @ 1.1.0 getPropsFromArgs: server.properties, then each --override name=value on top."""
    settings = dict(KAFKA_1_1_DEFAULTS)
    text = " ".join(command)
    for name, value in re.findall(r"--override ([\w.]+)=(\S+)", text):
        settings[name] = int(value)
    return settings


def cleaner_heap_bytes(settings: dict[str, int]) -> int:
    threads = settings["log.cleaner.threads"]
    assert settings["log.cleaner.dedupe.buffer.size"] / threads > MIB, "Kafka refuses less than 1 MiB per thread"
    return threads * (settings["log.cleaner.dedupe.buffer.size"] // threads
                      + 2 * (settings["log.cleaner.io.buffer.size"] // threads // 2))


def heap_mib(opts: str) -> int:
    return int(re.search(r"-Xmx(\d+)m", opts).group(1))


def test_2_kafka_heap_holds_the_log_cleaner_buffer_and_the_broker_runs_in_the_foreground(rendered):
    statefulset = next(d for d in load_docs(rendered / "kafka" / "40-kafka.yaml") if d["kind"] == "StatefulSet")
    broker = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in broker["env"]}
    heap = heap_mib(env["KAFKA_HEAP_OPTS"]) * MIB
    command = broker.get("command", []) + broker.get("args", [])
    cleaner = cleaner_heap_bytes(broker_settings(command))
    assert cleaner <= heap * UPSTREAM_CLEANER_SHARE + 1 * MIB, (cleaner / MIB, heap / MIB)
    # the model can fail: Kafka's defaults in a 128 MiB heap (what the profile had)
    assert cleaner_heap_bytes(broker_settings([])) > 128 * MIB * UPSTREAM_CLEANER_SHARE + MIB
    # bitnami-docker-kafka @ 1.1.0-r0 : rootfs/run.sh starts `kafka-server-start.sh -daemon` and tails a log, so a
    # dead broker left the container Running; the broker now runs in the foreground after Bitnami's own init
    script = command[-1]
    assert "-daemon" not in script and "tail -f" not in script
    assert "nami_initialize kafka" in script and "exec tini -- /opt/bitnami/kafka/bin/kafka-server-start.sh" in script
    # ready only when the broker listens (the topic creation and the role's wait follow readiness)
    assert broker["readinessProbe"]["tcpSocket"]["port"] == 9092
    # the topic tool runs in the broker's container with a heap of its own, far below the broker's
    tasks = yaml.safe_load((ROOT / "roles/kafka/tasks/main.yml").read_text())
    topics = next(t for t in tasks if t["name"] == "Create the Kafka topics")["ansible.builtin.command"]["argv"]
    tool = topics[topics.index("--") + 1:]
    assert tool[0] == "env" and tool[1] == "KAFKA_HEAP_OPTS={{ kafka_topics_heap_opts }}"
    defaults = yaml.safe_load((ROOT / "roles/kafka/defaults/main.yml").read_text())
    assert heap_mib(defaults["kafka_topics_heap_opts"]) * 4 <= heap_mib(env["KAFKA_HEAP_OPTS"])
    # scaled to zero for the autoscaling run, each one comes back when the platform phase applies it again
    for name in ("30-zookeeper.yaml", "40-kafka.yaml", "50-controller.yaml"):
        for doc in load_docs(rendered / "kafka" / name):
            if doc["kind"] in ("StatefulSet", "Deployment"):
                assert doc["spec"]["replicas"] == 1, name


# --- 3. The budget against the memory a 2-GB guest reports; autoscaling without Kafka -------------------------------
# A 2048-MiB KVM guest's kernel reports about 1,990 MiB MemTotal (issue 25); the kubelet's capacity is MemTotal.
GUEST_MEMTOTAL_OF_2_GIB_MIB = 1990


def test_3_budget_uses_the_guests_memtotal_and_the_autoscaling_run_can_scale(rendered):
    budget = inventory_value("paper_budget")
    assert budget["vm_memory_mib"] <= GUEST_MEMTOTAL_OF_2_GIB_MIB
    assert int(inventory_value("preflight_min_memory_mb")) == budget["vm_memory_mib"]
    with_kafka = budget["both"] + budget["kubeless"] + budget["kafka"]
    without_kafka = budget["both"] + budget["kubeless"]
    # the function fits beside Kafka once, and cannot scale there
    assert budget_fit(budget, with_kafka, budget["function"]) == 1
    # the autoscaling run drops Kafka and gets an HPA that can scale
    assert inventory_value("paper_autoscale_kafka_enabled") is False
    autoscale_max = budget_fit(budget, without_kafka, budget["function"])
    assert autoscale_max >= 2
    assert int(inventory_value("paper_function_autoscale_max_replicas")) == autoscale_max
    assert budget_fit(budget, budget["both"], budget["app"]) >= 2
    hpa = yaml.safe_load((ROOT / "roles/cluster_bench/tasks/hpa.yml").read_text())
    scale = next(t for t in hpa if t["name"].startswith("Scale Kafka"))
    assert scale["loop"] == ["statefulset/kafka", "statefulset/zoo", "deployment/kafka-trigger-controller"]
    assert "--replicas=0" in scale["ansible.builtin.command"]["argv"]
    apply = next(t for t in hpa if t["name"].startswith("Apply the Function"))
    assert apply["vars"]["kubeless_function_hpa_max_replicas"] == "{{ cluster_bench_function_max_replicas }}"
    assert hpa.index(scale) < hpa.index(apply)
    function = load_docs(rendered / "kubeless_function" / "function.yaml")[0]
    assert quantity_mib(function_container(function)["resources"]["limits"]["memory"]) == budget["function"][
        "memory_mib"]


# --- 4. HPA updates, and the Service before the HTTPTrigger ---------------------------------------------------------
# kubeless @ v1.0.0-alpha.8 : pkg/controller/function_controller.go ensureK8sResources calls
# pkg/utils/k8sutil.go CreateAutoscale, a plain Create: a changed HPA spec fails with AlreadyExists, so it must be
# deleted before the Function is applied. http-trigger @ v1.0.0-alpha.9 : pkg/utils/k8sutil.go CreateIngress reads
# the function's Service first and the controller does not retry: the Service must exist before the HTTPTrigger.
STUB_KUBECTL = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
while args and args[0] in ("--kubeconfig", "--namespace"):
    args = args[2:]
with open(os.environ["STUB_KUBECTL_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
hpa = os.environ.get("STUB_HPA", "")
if args[:2] == ["get", "horizontalpodautoscaler"]:
    if not hpa:
        sys.exit("Error from server (NotFound): horizontalpodautoscalers.autoscaling not found")
    print(hpa)
elif args[0] == "apply":
    print("configured " + os.path.basename(args[-1]))
elif args[:2] == ["get", "deployment"]:
    print("1")
"""


class ReadyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(400)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def ready_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ReadyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run_function_role(tmp_path: Path, address: str, hpa: dict | None, **extra: object) -> list[list[str]]:
    kubectl = executable(tmp_path / "kubectl", STUB_KUBECTL)
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "model.h5").write_bytes(b"h5")
    (model / "labels.json").write_text("{}")
    log = tmp_path / "kubectl.log"
    log.unlink(missing_ok=True)
    play = tmp_path / "deploy.yml"
    play.write_text(yaml.safe_dump([{
        "name": "The kubeless_function role against a stub kubectl", "hosts": "paper_control",
        "gather_facts": False,
        "tasks": [{"name": "Deploy", "ansible.builtin.include_role": {"name": "kubeless_function"}}],
    }]))
    variables = {
        "kubeless_function_kubectl_bin": str(kubectl), "kubeless_function_manifest_dir": str(tmp_path / "manifests"),
        "kubeless_function_probe_address": address, "kubeless_function_model_src_dir": str(model),
        "kubeless_function_model_host_dir": str(tmp_path / "vm-model"),
        "kubeless_function_py36_source": str(PY36 / "handler.py"),
        "kubeless_function_py36_deps": str(PY36 / "requirements.txt"),
        "kubeless_function_source": str(ROOT / "function" / "kubeless" / "handler.py"),
        "kubeless_function_object_delay": 0, "kubeless_function_ready_delay": 0, **extra,
    }
    result = playbook(play, "-e", json.dumps(variables),
                      env={"STUB_KUBECTL_LOG": str(log), "STUB_HPA": json.dumps(hpa) if hpa else ""})
    assert result.returncode == 0, result.stdout[-3000:]
    return [json.loads(line) for line in log.read_text().splitlines()]


def verbs(calls: list[list[str]]) -> list[str]:
    return [" ".join(c[:2]) if c[0] != "apply" else "apply " + Path(c[-1]).name for c in calls]


def test_4_changed_hpa_is_deleted_first_and_the_trigger_waits_for_the_service(tmp_path, ready_server):
    hpa = {"spec": {"minReplicas": 1, "maxReplicas": 1, "targetCPUUtilizationPercentage": 70}}
    calls = run_function_role(tmp_path, ready_server, hpa, kubeless_function_hpa_enabled=True,
                              kubeless_function_hpa_max_replicas=2)
    assert verbs(calls) == [
        "get horizontalpodautoscaler", "delete horizontalpodautoscaler", "apply function.yaml", "get service",
        "apply http-trigger.yaml", "get ingress", "apply kafka-trigger.yaml", "get deployment"]
    # an HPA that already has the wanted spec stays; so does a Function without an HPA
    same = run_function_role(tmp_path, ready_server, hpa, kubeless_function_hpa_enabled=True,
                             kubeless_function_hpa_max_replicas=1)
    assert "delete horizontalpodautoscaler" not in verbs(same)
    none = run_function_role(tmp_path, ready_server, None)
    assert verbs(none)[:2] == ["get horizontalpodautoscaler", "apply function.yaml"]
    # the python3.6 function's model was put where its hostPath volume points
    assert (tmp_path / "vm-model" / "model.h5").read_bytes() == b"h5"


# --- 5. The drivers' kubectl within the 1.10 servers' skew ---------------------------------------------------------
# kubernetes/kubernetes version skew policy: kubectl is supported within one minor version of the API server;
# `kubectl logs --all-containers` appeared in 1.11 (kubernetes @ v1.11.0 : pkg/kubectl/cmd/logs.go).
def test_5_the_drivers_use_a_pinned_kubectl_within_the_servers_skew():
    values = inventory_value(
        "[paper_driver_kubectl_version, paper_driver_kubectl_checksum, bench_function_platform.kubectl.bin,"
        " bench_container_platform.kubectl.bin, paper_driver_kubectl_dir]")
    version, checksum, function_bin, container_bin, folder = values
    server = yaml.safe_load((ROOT / "roles/minikube/defaults/main.yml").read_text())["minikube_kubernetes_version"]
    minor = int(version.split(".")[1])
    assert minor == 11 and abs(minor - int(server.split(".")[1])) <= 1
    assert re.fullmatch(r"sha1:[0-9a-f]{40}|sha256:[0-9a-f]{64}", checksum)  # a digest, not a URL
    assert function_bin == container_bin == f"{folder}/kubectl"
    plays = yaml.safe_load((ROOT / "playbooks/paper/deploy.yml").read_text())
    control = plays[0]["roles"]
    kubectl = next(r for r in control if r["role"] == "kubectl")
    assert kubectl["vars"]["kubectl_version"] == "{{ paper_driver_kubectl_version }}"
    assert kubectl["vars"]["kubectl_checksum"] == "{{ paper_driver_kubectl_checksum }}"


# --- 6. The 2018 python3.6 function ---------------------------------------------------------------------------------
# kubeless @ v1.0.0-alpha.8 : pkg/utils/kubelessutil.go EnsureFuncDeployment: only a Function whose template has no
# image gets the runtime image of kubeless-config's runtime-images and the prepare/install init containers that
# pip-install spec.deps; kubeless-non-rbac.jsonnet: python36 = kubeless/python@sha256:0c9f8f72... (Python 3.6.3).
def test_6_the_py36_handler_parses_with_the_python_3_6_grammar():
    source = (PY36 / "handler.py").read_text()
    tree = ast.parse(source, feature_version=(3, 6))
    future = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    assert not future  # `from __future__ import annotations` is 3.7+
    # nothing the 3.6 standard library lacks, nor anything outside requirements.txt
    pinned = {line.split("==")[0].lower() for line in (PY36 / "requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    imported = {alias.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    stdlib_36 = {"hashlib", "io", "json", "os", "sys", "time"}
    runtime = {"bottle"}  # the runtime image's own (bottle 0.12.13)
    third_party = {"numpy": "numpy", "PIL": "pillow", "h5py": "h5py", "keras": "keras"}  # import -> project name
    assert imported <= stdlib_36 | runtime | set(third_party), imported - stdlib_36 - runtime - set(third_party)
    assert {third_party[name] for name in imported if name in third_party} <= pinned
    # the 3.7+ features the Python 3.11 handler uses are absent from the code (3.6 parses `dict[str, int]` in an
    # annotation but fails on it at run time): no annotations at all, no dataclasses
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.arg | ast.AnnAssign) and n.annotation is not None]
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.returns is not None]
    assert "dataclasses" not in imported
    # and the check can fail: today's handler does not parse as 3.6 or imports 3.7+ features
    today = (ROOT / "function" / "kubeless" / "handler.py").read_text()
    assert "from __future__ import annotations" in today


def test_6_the_2018_wheels_are_pinned_for_cp36():
    pins = dict(line.split("==") for line in (PY36 / "requirements.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    major = {name.lower(): tuple(int(p) for p in version.split(".")[:2]) for name, version in pins.items()}
    assert major["tensorflow"][0] == 1 and major["tensorflow"] <= (1, 12)  # TF 2 and >=1.13 are not 2018 releases
    assert major["keras"] == (2, 2)
    assert major["numpy"] < (1, 16) and major["pillow"] < (6, 0) and major["h5py"] < (2, 9)


def test_6_the_paper_function_is_the_stock_python36_runtime_with_deps(rendered):
    function = load_docs(rendered / "kubeless_function" / "function.yaml")[0]
    container = function_container(function)
    assert "image" not in container  # the controller takes runtime-images' python36 and adds the init containers
    assert function["spec"]["runtime"] == "python3.6"
    assert function["spec"]["function"] == (PY36 / "handler.py").read_text()
    assert function["spec"]["deps"] == (PY36 / "requirements.txt").read_text()
    env = {e["name"]: e["value"] for e in container["env"]}
    volumes = function["spec"]["deployment"]["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["hostPath"]["path"] == "/opt/kubeless-dl-eval/model"
    assert container["volumeMounts"][0]["mountPath"] == env["MODEL_DIR"]
    config = next(d for d in load_docs(rendered / "kubeless" / "30-config.yaml") if d["kind"] == "ConfigMap")
    runtimes = json.loads(config["data"]["runtime-images"])
    python36 = [v for r in runtimes for v in r["versions"] if v["name"] == "python36"]
    assert python36 and python36[0]["runtimeImage"].startswith("kubeless/python@sha256:0c9f8f72")
    # the named variant keeps today's image, and says what it is
    py311 = load_docs(rendered / "kubeless_function_py311" / "function.yaml")[0]
    assert function_container(py311)["image"] == "kubeless-dl-eval/function:paper"
    assert py311["spec"]["deps"] == ""
    text = (ROOT / "docs" / "paper-profile.md").read_text()
    first_table = text[: text.index("> **Nothing in this profile")]
    assert "python36-2018" in first_table and "python311-image" in first_table


# --- 7. The HDF5 export ----------------------------------------------------------------------------------------------
# keras @ 2.2.4 : keras/engine/saving.py load_weights_from_hdf5_group: root attributes layer_names, keras_version and
# backend; per layer a group whose weight_names attribute lists its datasets; weights matched by position.
@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    import keras

    from model.cnn import build_cnn

    out = tmp_path_factory.mktemp("h5")
    keras.utils.set_random_seed(7)
    model = build_cnn(image_size=32, num_classes=5, dense_units=16)
    model.save(out / "model.keras")
    (out / "labels.json").write_text(json.dumps({"labels": ["a", "b", "c", "d", "e"], "image_size": 32}))
    result = subprocess.run([sys.executable, "-m", "model", "export", "--format", "h5", "--model",
                             str(out / "model.keras")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


def test_7_the_h5_export_holds_the_same_weights_in_keras_2_2s_layout(small_model):
    import h5py
    import keras

    original = keras.models.load_model(small_model / "model.keras", compile=False)
    expected = [w for layer in original.layers for w in layer.get_weights()]
    with h5py.File(small_model / "model.h5", "r") as f:
        # fixed-length bytes (h5py reads them back as bytes, which Keras 2.2 decodes), not variable-length strings
        assert f.attrs["keras_version"] == b"2.2.4" and f.attrs["backend"] == b"tensorflow"
        assert f.attrs["layer_names"].dtype.kind == "S"
        names = [n.decode() for n in f.attrs["layer_names"]]
        stored = [np.asarray(f[name][w.decode()]) for name in names for w in f[name].attrs["weight_names"]]
        assert all(f[name].attrs["weight_names"].dtype.kind == "S" for name in names
                   if len(f[name].attrs["weight_names"]))
    assert names[0] == "conv2d_1" and names[-1] == "dense_2" and "rescaling" not in " ".join(names)
    assert len(stored) == len(expected) == 10
    for got, want in zip(stored, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    # a second export changes nothing
    again = subprocess.run([sys.executable, "-m", "model", "export", "--format", "h5", "--model",
                            str(small_model / "model.keras")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "unchanged" in again.stdout


def test_7_the_py36_function_loads_the_export_and_predicts_as_the_inference_core(small_model, sample_jpegs,
                                                                                  monkeypatch):
    from model.inference import Predictor

    monkeypatch.setenv("MODEL_DIR", str(small_model))
    spec = importlib.util.spec_from_file_location("kubeless_py36_handler", PY36 / "handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    core = Predictor(small_model, backend="keras")
    for data in sample_jpegs.values():
        got = handler.predict({"data": data, "extensions": {}}, {})
        want = core.predict_bytes(data)
        assert len(json.dumps(got)) == len(json.dumps(want)) == 256
        assert got["label"] == want["label"]
        for label in want["scores"]:
            assert got["scores"][label] == pytest.approx(want["scores"][label], abs=1e-5)
    import bottle

    with pytest.raises(bottle.HTTPResponse) as raised:
        handler.predict({"data": b"not an image", "extensions": {}}, {})
    assert raised.value.status_code == 400 and json.loads(raised.value.body)["error"] == "not_an_image"
