"""Knative Serving (function/knative/): the activator, the queue-proxy and both user containers, as real processes
on 127.0.0.1.

First the breaker and the timeout handler against the cases of upstream's own unit tests (pkg/queue/breaker_test.go,
pkg/http/handler/timeout_test.go at knative-v1.23.0), ported as vectors. Then each rule through real HTTP with a
tiny probe user container (tests/fixtures_knative.py): the queue-proxy's breaker (cc in flight, 10 x cc queued,
then 503), its 504 at the revision timeout, its readiness probe; the activator's hold through a cold start from
zero, its readiness gating, its throttling to cc and its own 503 and 504, the scale to zero. Last, the model: the
func-python function through activator -> queue-proxy, cold from zero, its prediction equal to
model/inference.py's own and its predictions never overlapping (one event loop); and the kit's gunicorn server as
the second user container.

Not run here: the Docker image (no engine is used by this suite) and the Knative Services (validated only).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.fixtures_knative import (
    FUNC_ROOT,
    KNATIVE_DIR,
    REPO_ROOT,
    RUNTIME_DIR,
    running,
    start_activator,
    start_probe_user,
    start_queue_proxy,
)
from tests.http_client import request

sys.path.insert(0, str(RUNTIME_DIR))
from breaker import Breaker, InfiniteBreaker, QueueFull
from h1 import Response, with_timeout

JPEG = {"Content-Type": "image/jpeg"}


def burst(url: str, paths: list[str], gap_s: float = 0.03, timeout: float = 60, method: str = "GET") -> list:
    """Send one request per path, each from its own thread, `gap_s` apart (so they arrive in order); the replies
    in the order sent."""
    out: list = [None] * len(paths)

    def send(i: int, path: str) -> None:
        out[i] = request(url, method, path, body=b"x" if method == "POST" else None, timeout=timeout)

    threads = [threading.Thread(target=send, args=(i, p), daemon=True) for i, p in enumerate(paths)]
    for thread in threads:
        thread.start()
        time.sleep(gap_s)
    for thread in threads:
        thread.join(timeout + 5)
    return out


# ------------------------------------------------------------------- upstream's breaker cases, as vectors
class Requestor:
    """breaker_test.go's requestor: each request holds its slot until the test lets it finish."""

    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker
        self.results: asyncio.Queue = asyncio.Queue()
        self.gates: list[asyncio.Event] = []
        self.tasks: list[asyncio.Task] = []

    async def request(self) -> asyncio.Task:
        gate = asyncio.Event()
        self.gates.append(gate)

        async def thunk() -> None:
            await gate.wait()

        async def run() -> None:
            try:
                await self.breaker.maybe(thunk)
                await self.results.put("ok")
            except QueueFull:
                await self.results.put("full")
            except asyncio.CancelledError:
                await self.results.put("cancelled")

        task = asyncio.ensure_future(run())
        self.tasks.append(task)
        await asyncio.sleep(0.01)
        return task

    async def request_and_cancel(self) -> None:
        task = await self.request()
        self.gates.pop()
        task.cancel()

    async def expect(self, outcome: str) -> None:
        assert await asyncio.wait_for(self.results.get(), 2) == outcome

    async def process_successfully(self) -> None:
        """Let the oldest waiting request run to its end."""
        self.gates.pop(0).set()
        await self.expect("ok")


@pytest.mark.parametrize(("queue_depth", "max_concurrency", "initial_capacity"),
                         [(0, 1, 1), (1, -1, 1), (1, 1, -1), (1, 5, 6)],
                         ids=["QueueDepth = 0", "MaxConcurrency negative", "InitialCapacity negative",
                              "InitialCapacity out-of-bounds"])
def test_breaker_rejects_invalid_parameters(queue_depth, max_concurrency, initial_capacity):
    with pytest.raises(ValueError, match="must be"):
        Breaker(queue_depth, max_concurrency, initial_capacity)


def test_breaker_reserve_overload():
    b = Breaker(1, 1, 1)
    release = b.reserve()
    assert release is not None
    assert b.reserve() is None
    release()
    again = b.reserve()
    assert again is not None
    again()


def test_breaker_overload_queue_full_then_both_served():
    async def case() -> None:
        b = Breaker(1, 1, 1)  # capacity 2: one running, one queued
        reqs = Requestor(b)
        await reqs.request()
        await reqs.request()
        await reqs.request()
        await reqs.expect("full")
        await reqs.process_successfully()
        await reqs.process_successfully()

    asyncio.run(case())


def test_breaker_queueing_waits_for_capacity():
    async def case() -> None:
        b = Breaker(1, 1, 0)
        reqs = Requestor(b)
        await reqs.request()
        await reqs.request()
        assert reqs.results.empty()
        b.update_concurrency(1)
        await reqs.process_successfully()
        await reqs.process_successfully()

    asyncio.run(case())


def test_breaker_no_overload_when_requests_finish():
    async def case() -> None:
        reqs = Requestor(Breaker(1, 1, 1))
        await reqs.request()
        await reqs.request()
        for _ in range(2):
            await reqs.process_successfully()
            await reqs.request()
        await reqs.process_successfully()
        await reqs.process_successfully()

    asyncio.run(case())


def test_breaker_cancel_gives_the_queue_place_back():
    async def case() -> None:
        b = Breaker(1, 1, 0)
        reqs = Requestor(b)
        for _ in range(2):
            await reqs.request_and_cancel()
            await reqs.expect("cancelled")
        b.update_concurrency(1)
        await reqs.request()
        await reqs.request()
        await reqs.request()
        await reqs.expect("full")
        await reqs.process_successfully()
        await reqs.process_successfully()
        assert b.in_flight() == 0

    asyncio.run(case())


def test_breaker_update_concurrency():
    b = Breaker(1, 1, 0)
    b.update_concurrency(1)
    assert b.capacity == 1
    b.update_concurrency(0)
    assert b.capacity == 0


def test_infinite_breaker_holds_until_capacity_then_lets_all_through():
    async def case() -> None:
        b = InfiniteBreaker()
        gate = asyncio.Event()

        async def thunk() -> str:
            await gate.wait()
            return "done"

        held = [asyncio.ensure_future(b.maybe(thunk)) for _ in range(50)]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in held) and b.in_flight() == 50
        b.update_concurrency(1)
        gate.set()
        assert await asyncio.gather(*held) == ["done"] * 50

    asyncio.run(case())


# ------------------------------------------------------------- upstream's timeout handler cases, as vectors
@pytest.mark.parametrize(("work_s", "status", "body"), [(0.0, 200, b"hi"), (0.5, 504, b"request timeout")],
                         ids=["all good", "custom timeout message"])
def test_timeout_handler(work_s, status, body):
    async def case() -> tuple[Response, bool]:
        finished = asyncio.Event()

        async def handler() -> Response:
            await asyncio.sleep(work_s)
            finished.set()
            return Response(200, [], b"hi")

        resp = await with_timeout(handler(), 0.2, "request timeout", "queue-proxy")
        await asyncio.sleep(0.5)
        return resp, finished.is_set()

    resp, finished = asyncio.run(case())
    assert (resp.status, resp.body) == (status, body)
    assert finished == (status == 200)  # a timed-out handler is cancelled: it never writes


# ------------------------------------------------------------------------------------- the queue-proxy
@pytest.fixture(scope="module")
def probe_user(tmp_path_factory):
    proc = start_probe_user(tmp_path_factory.mktemp("user")).wait_listening()
    with running(proc):
        yield proc


def test_queue_proxy_cc1_admits_one_queues_ten_then_503(tmp_path, probe_user):
    qp = start_queue_proxy(tmp_path, probe_user.port, cc=1)
    with running(qp):
        replies = burst(qp.url, ["/?sleep=0.3"] * 13, gap_s=0.01)
    statuses = [r.status for r in replies]
    assert (statuses.count(200), statuses.count(503)) == (11, 2)
    assert {r.body for r in replies if r.status == 503} == {b"pending request queue full\n"}
    assert max(r.json()["max_inflight"] for r in replies[:11]) == 1
    errors = qp.events("front_error")
    assert [(e["layer"], e["status"]) for e in errors] == [("queue-proxy", 503)] * 2


def test_queue_proxy_cc0_admits_everything(tmp_path, probe_user):
    qp = start_queue_proxy(tmp_path, probe_user.port, cc=0)
    with running(qp):
        replies = burst(qp.url, ["/?sleep=0.4"] * 15, gap_s=0.005)
    assert [r.status for r in replies] == [200] * 15
    assert max(r.json()["max_inflight"] for r in replies) >= 10


def test_queue_proxy_answers_504_at_the_revision_timeout(tmp_path, probe_user):
    qp = start_queue_proxy(tmp_path, probe_user.port, cc=1, timeout_s=0.7)
    with running(qp):
        start = time.monotonic()
        slow = request(qp.url, "GET", "/?sleep=2")
        elapsed = time.monotonic() - start
        passes = request(qp.url, "GET", "/?sleep=0.1")
    assert (slow.status, slow.body) == (504, b"request timeout")
    assert 0.6 < elapsed < 1.6
    assert passes.status == 200
    assert [(e["layer"], e["status"]) for e in qp.events("front_error")] == [("queue-proxy", 504)]


def test_queue_proxy_answers_probes_with_the_user_containers_readiness(tmp_path, probe_user):
    qp = start_queue_proxy(tmp_path, probe_user.port)
    dead = start_queue_proxy(tmp_path, 1, QUEUE_PROBE_POLL_TIMEOUT_S="0.6")  # nothing listens on port 1
    with running(qp, dead):
        ok = request(qp.url, "GET", "/", headers={"K-Network-Probe": "queue"})
        by_agent = request(qp.url, "GET", "/healthz", headers={"User-Agent": "kube-probe/1.33",
                                                               "K-Network-Probe": "queue"})
        wrong = request(qp.url, "GET", "/", headers={"K-Network-Probe": "activator"})
        start = time.monotonic()
        not_ready = request(dead.url, "GET", "/", headers={"K-Network-Probe": "queue"})
        polled = time.monotonic() - start
    assert (ok.status, ok.body) == (200, b"queue")
    assert by_agent.status == 200
    assert (wrong.status, wrong.body) == (400, b"unexpected probe header value: activator\n")
    assert not_ready.status == 503
    assert polled >= 0.5  # retried every 50 ms for the poll timeout, not failed at the first try


# ---------------------------------------------------------------------------------------- the activator
def test_activator_holds_a_request_through_a_cold_start_from_zero_then_scales_to_zero(tmp_path):
    activator = start_activator(tmp_path, cc=0, PROBE_START_DELAY_S="1.0", KNATIVE_SCALE_TO_ZERO_AFTER_S="1")
    with running(activator):
        time.sleep(0.3)
        assert activator.events("scale") == []  # initial scale 0: no pod until a request comes
        start = time.monotonic()
        first = request(activator.url, "POST", "/a?x=1", body=b"hello")
        held_s = time.monotonic() - start
        start = time.monotonic()
        warm = request(activator.url, "GET", "/")
        warm_s = time.monotonic() - start
        pid = warm.json()["pid"]
        deadline = time.monotonic() + 10
        while len(activator.events("scale")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        again = request(activator.url, "GET", "/")
    assert first.status == 200 and first.json()["proxy"] == "activator" and first.json()["len"] == 5
    assert held_s > 1.0  # the user container's slow start, all of it inside the held request
    assert warm.status == 200 and warm_s < 0.5
    scales = [(e["to"], e["reason"]) for e in activator.events("scale")]
    assert scales[:3] == [(1, "request"), (0, "no request for 1 s"), (1, "request")]
    assert again.status == 200 and again.json()["pid"] != pid  # a new pod
    colds = activator.events("cold_start")
    assert len(colds) == 2 and colds[0]["first_request_held_s"] > 1.0
    assert activator.events("front_error") == []


def test_activator_gates_traffic_on_readiness(tmp_path):
    """A pod whose user container is not ready yet gets no traffic: requests wait, none fails with a 502."""
    activator = start_activator(tmp_path, cc=0, initial_scale=1, PROBE_START_DELAY_S="1.5")
    with running(activator):
        replies = burst(activator.url, ["/"] * 5, gap_s=0.1)
        qp_probe = request(f"http://127.0.0.1:{activator.queue_port}", "GET", "/",
                           headers={"K-Network-Probe": "queue"})
    assert [r.status for r in replies] == [200] * 5
    assert qp_probe.status == 200
    assert activator.events("reply") == []
    assert activator.events("cold_start")[0]["pod_ready_s"] > 1.5


def test_activator_throttles_to_cc_and_answers_503_when_its_queue_is_full(tmp_path):
    # upstream's revision breaker has 10000 + 2^31-1 slots; shrunk here to 1 + 2 so that its 503 can be seen
    activator = start_activator(tmp_path, cc=1, initial_scale=1, ACTIVATOR_QUEUE_DEPTH="2",
                                ACTIVATOR_MAX_CONCURRENCY="1")
    with running(activator):
        request(activator.url, "GET", "/")  # the pod is up
        replies = burst(activator.url, ["/?sleep=0.4"] * 5, gap_s=0.01)
    statuses = [r.status for r in replies]
    assert (statuses.count(200), statuses.count(503)) == (3, 2)
    assert {r.body for r in replies if r.status == 503} == {b"pending request queue full\n"}
    assert max(r.json()["max_inflight"] for r in replies if r.status == 200) == 1  # cc=1: one at a time in the pod
    assert {(e["origin"], e["status"]) for e in activator.events("reply")} == {("activator", 503)}
    assert all("k-kde-layer" not in r.headers for r in replies)  # the layer mark stays inside the front


def test_activator_answers_504_when_the_pod_is_not_ready_by_the_revision_timeout(tmp_path):
    activator = start_activator(tmp_path, cc=0, timeout_s=0.8, PROBE_START_DELAY_S="3")
    with running(activator):
        start = time.monotonic()
        held = request(activator.url, "GET", "/")
        elapsed = time.monotonic() - start
    assert (held.status, held.body) == (504, b"activator request timeout")
    assert 0.7 < elapsed < 2
    assert [(e["origin"], e["status"]) for e in activator.events("reply")] == [("activator", 504)]


def test_the_kinds_log_reader_names_the_layer_of_each_failed_reply(tmp_path):
    """errors by layer (Kind.error_origins) against what each client got: the function's own 418, the
    activator's 503 (its queue, shrunk), the queue-proxy's 502 when the user container dies mid-call."""
    from collections import Counter

    from analysis.bench.kinds.knative import error_origins

    activator = start_activator(tmp_path, cc=1, initial_scale=1, ACTIVATOR_QUEUE_DEPTH="1",
                                ACTIVATOR_MAX_CONCURRENCY="1")
    with running(activator):
        own = request(activator.url, "POST", "/?status=418", body=b"x")
        queued = burst(activator.url, ["/?sleep=0.4"] * 3, gap_s=0.01, method="POST")
        died = request(activator.url, "POST", "/?exit=1", body=b"x")
        logs = activator.stdout_path.read_text()
    assert own.status == 418 and own.json()["proxy"] == "activator"
    assert sorted(r.status for r in queued) == [200, 200, 503]
    assert died.status == 502 and b"127.0.0.1:" in died.body  # the queue-proxy's error text
    expected = Counter(function=1, activator=1)
    expected["queue-proxy"] = 1
    assert error_origins(logs) == expected


# --------------------------------------------------------------------------------------- with the model
def predictions(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith('{"event": "prediction"')]


def test_func_python_prediction_through_the_front_equals_the_inference_core_and_is_serial(
    tmp_path, trained_model_dir, sample_jpegs
):
    photo = sample_jpegs["food"]
    activator = start_activator(tmp_path, cc=0, user="func", MODEL_DIR=str(trained_model_dir), MODEL_BACKEND="keras",
                                MAX_BODY_BYTES="400000", PLATFORM_NAME="knative_func")
    with running(activator):
        start = time.monotonic()
        cold = request(activator.url, "POST", "/", body=photo, headers=JPEG, timeout=180)
        cold_s = time.monotonic() - start
        ready = request(activator.url, "GET", "/health/readiness")
        alive = request(activator.url, "GET", "/health/liveness")
        info = request(activator.url, "GET", "/")
        bad = request(activator.url, "POST", "/", body=b"not an image", headers=JPEG)
        big = request(activator.url, "POST", "/", body=b"\xff" * 400_001, headers=JPEG)
        out: list = []
        threads = [threading.Thread(target=lambda: out.append(request(activator.url, "POST", "/", body=photo,
                                                                      headers=JPEG))) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert cold.status == 200 and len(cold.body) == 256
    assert cold.headers["content-type"] == "application/json"
    (event,) = activator.events("cold_start")
    assert event["first_request_held_s"] <= cold_s
    assert (ready.status, ready.body, alive.status, alive.body) == (200, b"ready", 200, b"alive")
    assert (info.status, info.json()["backend"]) == (200, "keras")
    assert (bad.status, bad.json()["error"]) == (400, "not_an_image")
    assert (big.status, big.json()["error"]) == (413, "body_too_large")
    assert [r.status for r in out] == [200] * 6

    # one event loop: each prediction (decode + model) ends before the next one starts
    lines = predictions(activator.stdout_path.read_text())
    assert len(lines) == 7 and {line["platform"] for line in lines} == {"knative_func"}
    spans = sorted((line["ts"] - line["prediction_ms"] / 1000, line["ts"]) for line in lines)
    assert all(later[0] >= earlier[1] - 0.002 for earlier, later in itertools.pairwise(spans))

    from model.inference import Predictor

    result = cold.json()
    direct = Predictor(trained_model_dir, backend="keras").predict_bytes(photo)
    assert result["label"] == direct["label"] and result["model_sha256"] == direct["model_sha256"]
    np.testing.assert_allclose([result["scores"][k] for k in sorted(direct["scores"])],
                               [direct["scores"][k] for k in sorted(direct["scores"])], atol=1e-5)


def test_the_container_server_as_the_user_container(tmp_path, trained_model_dir, sample_jpegs):
    photo = sample_jpegs["drink"]
    activator = start_activator(tmp_path, cc=1, user="app", MODEL_DIR=str(trained_model_dir), MODEL_BACKEND="litert",
                                WORKERS="1")
    with running(activator):
        served = request(activator.url, "POST", "/predict", body=photo, headers=JPEG, timeout=120)
        readyz = request(activator.url, "GET", "/readyz")
    assert served.status == 200 and readyz.status == 200
    from model.inference import Predictor

    direct = Predictor(trained_model_dir, backend="litert").predict_bytes(photo)
    assert served.json()["scores"] == direct["scores"]
    assert activator.events("cold_start")[0]["pod_ready_s"] > 0


# ----------------------------------------------------------------------------------------- static checks
def test_the_image_shares_the_dependency_stage_and_copies_what_exists():
    def first_stage(path: Path) -> list[str]:
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
        end = next(i for i, line in enumerate(lines) if line.startswith("FROM ${BASE_IMAGE}") and " AS " not in line)
        return lines[: end + 3]

    ours = first_stage(KNATIVE_DIR / "Dockerfile")
    assert ours == first_stage(REPO_ROOT / "image" / "Dockerfile")
    text = (KNATIVE_DIR / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python3", "/opt/knative/runtime/activator.py"]' in text
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                if "$" not in source and not source.startswith("build/"):  # build/: made by the build scripts
                    assert (REPO_ROOT / source).exists(), source
    # the app user container is image/'s server, copied file for file as image/Dockerfile copies it
    image_copy = next(line for line in (REPO_ROOT / "image" / "Dockerfile").read_text().splitlines()
                      if line.startswith("COPY image/"))
    assert image_copy in text


REVISION_FIELDS = {"containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds",
                   "containers", "volumes", "serviceAccountName", "imagePullSecrets", "enableServiceLinks"}


def services() -> list[dict]:
    docs = []
    for path in sorted((KNATIVE_DIR / "k8s").glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def test_the_knative_services_match_the_caps_and_the_inventory():
    docs = services()
    inventory = yaml.safe_load((REPO_ROOT / "inventory" / "local" / "group_vars" / "all.yml").read_text())
    entries = {e["name"]: e for e in inventory["platforms"] if e["kind"].startswith("knative")}
    assert {d["metadata"]["name"] for d in docs} == {name.replace("_", "-") for name in entries}
    for doc in docs:
        assert (doc["apiVersion"], doc["kind"]) == ("serving.knative.dev/v1", "Service")
        entry = entries[doc["metadata"]["name"].replace("-", "_")]
        template = doc["spec"]["template"]
        spec = template["spec"]
        assert set(spec) <= REVISION_FIELDS
        assert spec["containerConcurrency"] == entry["deploy"]["cc"]
        assert spec["timeoutSeconds"] == 300  # config-defaults revision-timeout-seconds, within the 600 maximum
        annotations = template["metadata"]["annotations"]
        assert annotations["autoscaling.knative.dev/max-scale"] == "1"  # one pod: one capped machine
        assert annotations["autoscaling.knative.dev/min-scale"] == "0"
        (container,) = spec["containers"]
        caps = {"cpu": "2", "memory": "2Gi"}  # serving_cpus / serving_memory (Knative's defaults: 1 CPU, 200M)
        assert container["resources"] == {"requests": caps, "limits": caps}
        probe = container["readinessProbe"]["httpGet"]["path"]
        assert probe == ("/health/readiness" if entry["kind"] == "knative-func" else "/readyz")


def test_the_services_pod_templates_are_valid_kubernetes(tmp_path):
    """Knative's CRD cannot be validated offline; its pod template (a PodSpec subset) can, as a Pod."""
    files = []
    for i, doc in enumerate(services()):
        spec = {k: v for k, v in doc["spec"]["template"]["spec"].items()
                if k not in ("containerConcurrency", "timeoutSeconds")}
        for container in spec["containers"]:  # Knative's defaulting: a probe without a port gets the container's
            for probe in ("readinessProbe", "livenessProbe"):
                container[probe]["httpGet"].setdefault("port", container["ports"][0]["containerPort"])
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": doc["metadata"]["name"]}, "spec": spec}
        path = tmp_path / f"pod-{i}.yaml"
        path.write_text(yaml.safe_dump(pod))
        files.append(str(path))
    done = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "-k", "1.24.0", "--strict",
                           *files], capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "WARN" not in output and "ERROR" not in output, output
    assert output.count("INFO") == len(files) == 4, output


def test_the_function_is_laid_out_as_func_create_lays_it_out():
    assert (FUNC_ROOT / "function" / "__init__.py").is_file() and (FUNC_ROOT / "pyproject.toml").is_file()
    pins = (REPO_ROOT / "requirements" / "serving.txt").read_text()
    assert "func-python==0.8.1" in pins and "hypercorn==0.17.3" in pins
    assert '"func-python==0.8.1"' in (FUNC_ROOT / "pyproject.toml").read_text()


def test_both_kinds_are_registered_as_functions():
    from analysis.bench import platforms

    kinds = platforms.known()
    assert kinds["knative-func"].role == kinds["knative-app"].role == "function"
    assert kinds["knative-app"].server_time_metric == "http_request_duration_seconds"
    assert "knative-v1.23.0" in kinds["knative-func"].upstream


def test_the_overhead_script_explains_itself():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "knative-overhead.py"), "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert "--concurrency" in done.stdout and "activator" in done.stdout
