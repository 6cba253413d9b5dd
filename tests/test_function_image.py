"""function/kubeless/Dockerfile builds on the real Docker engine and the container serves the function like Kubeless.

Built FROM the local debootstrap base (no registry is reachable), dependencies from the wheelhouse, with the
session's trained model baked in; run the local profile's way (--cpus 2 --memory 2g, port on 127.0.0.1).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid

import pytest

from model.inference import RESULT_JSON_LENGTH
from tests.fixtures_function import burst, post_image, request
from tests.http_client import metric, metric_samples, wait_for

pytestmark = pytest.mark.docker

PREFIX = "kde-test-"
READY_TIMEOUT_S = 180


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def container(function_image):
    name = f"{PREFIX}function-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--cpus", "2", "--memory", "2g", "-p", "127.0.0.1::8080", function_image)
    try:
        port = docker("port", name, "8080/tcp").stdout.splitlines()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if request(url, "GET", "/healthz", timeout=2).body == b"OK":
                    break
            except OSError:
                pass
            if docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
                pytest.fail(f"the container exited:\n{docker('logs', name, check=False).stderr[-3000:]}")
            time.sleep(0.5)
        else:
            pytest.fail(f"the container did not answer /healthz in {READY_TIMEOUT_S} s")
        yield name, url
    finally:
        docker("rm", "-f", name, check=False)


def test_the_image_is_a_kubeless_runtime_for_the_function(function_image):
    config = json.loads(docker("inspect", function_image).stdout)[0]["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["User"] == "1000"
    assert "8080/tcp" in config["ExposedPorts"]
    assert env["MOD_NAME"] == "handler"
    assert env["FUNC_HANDLER"] == "predict"
    assert env["FUNC_TIMEOUT"] == "180"
    assert env["FUNC_PORT"] == "8080"
    assert env["KUBELESS_RUNTIME_MODE"] == "faithful"
    listing = docker("run", "--rm", "--entrypoint", "ls", function_image, "/kubeless", "/kubeless/model").stdout
    assert "handler.py" in listing
    assert "model.keras" in listing
    assert "model.tflite" in listing


def test_the_container_serves_predictions_as_uid_1000(container, sample_jpegs):
    name, url = container
    assert docker("exec", name, "id", "-u").stdout.strip() == "1000"
    resp = post_image(url, sample_jpegs["drink"])
    assert resp.status == 200, resp.body[:300]
    assert len(resp.body) == RESULT_JSON_LENGTH
    assert resp.json()["backend"] == "keras"
    assert post_image(url, sample_jpegs["drink"], "text/plain").status == 415
    assert request(url, "GET", "/predict").status == 404  # alpha.8: the function lives at / only


def test_the_container_logs_predictions_and_requests_on_stdout(container, sample_jpegs):
    name, url = container
    expected = post_image(url, sample_jpegs["menu"]).json()
    wait_for(lambda: '"POST / HTTP/1.1" 200' in docker("logs", name).stdout, 10, "the access line in docker logs")
    stdout = docker("logs", name).stdout
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert any(r["platform"] == "function" and r["prediction_ms"] == expected["prediction_ms"] for r in records)
    assert re.search(r'^\S+ - - \[[^]]+\] "POST / HTTP/1\.1" 200 256 "" "kde-test" \d+/\d+$', stdout, re.MULTILINE)


def test_the_container_holds_up_at_concurrency_20(container, sample_jpegs):
    _, url = container
    before = metric(metric_samples(url), "function_calls_total", method="POST")
    load = burst(url, sample_jpegs["inside"], total=60, concurrency=20)
    print(f"\ncontainer keras c=20: {load.count(200)} x 200, {load.count(408)} x 408 in {load.elapsed_s:.1f} s")
    assert None not in load.statuses
    assert set(load.statuses) <= {200, 408}  # 408: the faithful runtime's spurious ones
    calls = metric(metric_samples(url), "function_calls_total", method="POST") - before
    assert calls == pytest.approx(60 + load.connection_errors, abs=load.connection_errors)


def test_the_model_can_be_switched_to_litert(function_image, sample_jpegs):
    name = f"{PREFIX}function-litert-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "-d", "--name", name, "--cpus", "2", "--memory", "2g", "-p", "127.0.0.1::8080",
        "-e", "MODEL_BACKEND=litert", "-e", "KUBELESS_RUNTIME_MODE=repaired", function_image,
    )  # fmt: skip
    try:
        port = docker("port", name, "8080/tcp").stdout.splitlines()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT_S
        resp = None
        while resp is None and time.monotonic() < deadline:
            try:
                resp = post_image(url, sample_jpegs["outside"], timeout=10)
            except OSError:
                time.sleep(0.5)
        assert resp is not None, docker("logs", name, check=False).stderr[-3000:]
        assert resp.status == 200
        assert resp.json()["backend"] == "litert"
        assert "mode=repaired" in docker("logs", name).stderr
    finally:
        docker("rm", "-f", name, check=False)
