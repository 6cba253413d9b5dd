"""image/Dockerfile on the real Docker engine: it builds from the local base image and the wheelhouse, and the
container serves real predictions capped like the paper's VMs (--cpus 2 --memory 2g), as a non-root user with a
read-only root filesystem (as the Kubernetes manifest runs it), and stops gracefully."""

from __future__ import annotations

import json

import pytest

from model import LABELS
from model.inference import RESULT_JSON_LENGTH
from tests.fixtures_image import (
    build_image,
    docker,
    predict,
    prediction_lines,
    remove_image,
    request,
    run_container,
    wait_for,
    wait_for_response,
)

pytest_plugins = ["tests.fixtures_image"]  # app_image, payload_jpeg
pytestmark = [pytest.mark.docker, pytest.mark.slow]

READY_TIMEOUT_S = 180


def readyz(url: str) -> int:
    return request(url, "GET", "/readyz", timeout=3).status


def test_image_serves_a_prediction_in_a_capped_container(app_image, payload_jpeg):
    with run_container(app_image, "--read-only", "--tmpfs", "/tmp") as container:
        ready = wait_for_response(
            lambda: request(container.url, "GET", "/readyz", timeout=3), lambda r: r.status == 200, READY_TIMEOUT_S,
            "the container's /readyz"
        ).json()
        resp = predict(container.url, payload_jpeg)
        metrics = request(container.url, "GET", "/metrics").body.decode()
        wait_for(lambda: container.inspect()["State"]["Health"]["Status"] == "healthy", 60, "HEALTHCHECK healthy")
        info = container.inspect()
        docker("stop", "--time", "20", container.name, timeout=60)
        stopped = container.inspect()
        logs = container.logs()
    # One worker per CPU of --cpus 2, each with the model loaded.
    assert ready["workers"] == 2 and ready["workers_ready"] == 2
    assert resp.status == 200 and len(resp.body) == RESULT_JSON_LENGTH
    assert resp.json()["label"] in LABELS
    assert 'http_requests_total{status="200"} 1.0' in metrics
    assert info["Config"]["User"] == "10001:10001"
    assert info["HostConfig"]["NanoCpus"] == 2_000_000_000 and info["HostConfig"]["Memory"] == 2 * 1024**3
    # The JSON log line the benchmark collects, on the container's stdout.
    (line,) = prediction_lines(logs)
    assert line["platform"] == "container" and line["prediction_ms"] == resp.json()["prediction_ms"]
    # SIGTERM from `docker stop`: gunicorn shut down by itself, well before the 20 s SIGKILL.
    assert stopped["State"]["ExitCode"] == 0, logs[-3000:]
    assert "Shutting down: Master" in logs


def test_image_without_a_model_serves_a_mounted_one(app_image, base_image, trained_model_dir, payload_jpeg):
    """MODEL_DIR=image/model-mount builds the image with no model; one mounted at /model is served."""
    tag = f"{app_image}-mounted"
    build_image(tag, base_image, "image/model-mount")  # every layer but the last comes from the cache
    try:
        with run_container(tag) as bare:
            health = wait_for_response(
                lambda: request(bare.url, "GET", "/healthz"), lambda r: r.status == 500, READY_TIMEOUT_S, "/healthz 500"
            ).json()
            ready = [readyz(bare.url) for _ in range(10)]  # every worker: the master checked the files before forking
        assert "/model/labels.json is missing" in health["error"]
        assert ready == [503] * 10
        with run_container(tag, "-v", f"{trained_model_dir}:/model:ro") as mounted:
            wait_for(lambda: readyz(mounted.url) == 200, READY_TIMEOUT_S, "the container's /readyz")
            resp = predict(mounted.url, payload_jpeg)
        assert resp.status == 200 and json.loads(resp.body)["label"] in LABELS
    finally:
        remove_image(tag)
