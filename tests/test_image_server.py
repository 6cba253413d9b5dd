"""The model server (image/) under real gunicorn with the real trained model, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from analysis.bench.ab import AbCommand, run_ab
from image import settings
from model import LABELS
from model.inference import RESULT_JSON_LENGTH
from tests.fixtures_image import (
    gunicorn_server,
    png_of,
    predict,
    prediction_lines,
    request,
    wait_for,
    wait_for_response,
)
from tests.http_client import metric, metric_samples

pytest_plugins = ["tests.fixtures_image"]  # the image_server, payload_jpeg and app_image fixtures


# ------------------------------------------------------------------------------------------------ statuses
def test_predicts_every_accepted_body_with_fixed_length_json(image_server, sample_jpegs):
    jpeg = sample_jpegs["food"]
    bodies = [
        (jpeg, "image/jpeg"),
        (png_of(jpeg), "image/png"),
        (jpeg, "application/octet-stream"),
        (jpeg, "image/jpeg; charset=binary"),
        (json.dumps({"image": base64.b64encode(jpeg).decode()}).encode(), "application/json"),
    ]
    for body, content_type in bodies:
        resp = predict(image_server.url, body, content_type)
        assert resp.status == 200, (content_type, resp.body)
        assert len(resp.body) == RESULT_JSON_LENGTH
        assert resp.headers["content-type"] == "application/json"
        result = resp.json()
        assert result["label"] in LABELS and set(result["scores"]) == set(LABELS)
        assert result["backend"] == "keras" and result["prediction_ms"] > 0


def test_every_sample_photo_gets_a_label(image_server, sample_jpegs):
    for label, data in sample_jpegs.items():
        resp = predict(image_server.url, data)
        assert resp.status == 200, (label, resp.body)
        assert resp.json()["label"] in LABELS


def test_client_errors_have_their_status_and_a_reason(image_server, payload_jpeg):
    cases = [
        (b"this is not an image", "image/jpeg", 400, "not_an_image"),
        (payload_jpeg[: len(payload_jpeg) // 3], "image/jpeg", 400, "truncated_image"),
        (b"", "image/jpeg", 400, "empty_body"),
        (b"{not json", "application/json", 400, "bad_json"),
        (b'{"image": "###"}', "application/json", 400, "bad_json"),
        (payload_jpeg, "text/plain", 415, "unsupported_content_type"),
        (b"x" * 1_000_001, "image/jpeg", 413, "body_too_large"),
        (b"x" * (1_000_000 * 4 // 3 + 1025), "application/json", 413, "body_too_large"),
    ]
    for body, content_type, status, code in cases:
        resp = predict(image_server.url, body, content_type)
        assert resp.status == status, (code, resp.status, resp.body[:300])
        error = resp.json()
        assert error["error"] == code and error["status"] == status and error["message"], error


def test_too_large_chunked_body_gets_413(image_server):
    """No Content-Length: the server reads at most the limit + 1 bytes before refusing."""
    chunks = (b"x" * 65536 for _ in range(20))  # 1.3 MB > the fixture's 1 MB limit
    host, port = image_server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/predict", body=chunks, headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413
        assert json.loads(resp.read())["error"] == "body_too_large"
    finally:
        conn.close()


def test_wrong_method_and_unknown_path(image_server):
    resp = request(image_server.url, "GET", "/predict")
    assert resp.status == 405 and resp.headers["allow"] == "POST"
    resp = request(image_server.url, "POST", "/healthz", b"x")
    assert resp.status == 405
    resp = request(image_server.url, "GET", "/nope")
    assert resp.status == 404 and "/predict" in resp.json()["message"]


def test_health_and_readiness_once_loaded(image_server):
    health = image_server.get("/healthz")
    assert health.status == 200 and health.json()["status"] == "ok"
    ready = image_server.get("/readyz").json()
    assert ready == {"ready": True, "workers_ready": 2, "workers": 2, "worker_model": "ready"}


# ------------------------------------------------------------------------------------------------ metrics and logs
def test_metrics_count_every_predict_request_across_workers(image_server, payload_jpeg):
    before = metric_samples(image_server.url)
    n = 8
    for _ in range(n):
        assert predict(image_server.url, payload_jpeg).status == 200
    assert predict(image_server.url, b"garbage").status == 400
    image_server.get("/healthz")  # probes are not counted
    after = metric_samples(image_server.url)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("http_requests_total", status="200") == n
    assert delta("http_requests_total", status="400") == 1
    assert delta("http_request_duration_seconds_count", status="200") == n
    assert delta("http_request_duration_seconds_count", status="400") == 1
    assert delta("model_prediction_duration_seconds_count", backend="keras") == n
    assert delta("http_request_duration_seconds_sum", status="200") >= delta(
        "model_prediction_duration_seconds_sum", backend="keras"
    )
    assert metric(after, "http_requests_in_flight") == 0
    assert metric(after, "model_ready_workers") == 2
    # One load-time series per live worker: the scrape sees both processes, whichever answers it.
    assert len([key for key in after if key[0] == "model_load_seconds"]) == 2


def test_one_json_log_line_per_prediction_on_stdout(image_server, payload_jpeg):
    before = len(prediction_lines(image_server.stdout()))
    results = [predict(image_server.url, payload_jpeg).json() for _ in range(3)]
    predict(image_server.url, b"garbage")

    def logged() -> bool:
        return len(prediction_lines(image_server.stdout())) == before + 3

    wait_for(logged, 10, "three prediction log lines")
    lines = prediction_lines(image_server.stdout())[before:]
    assert [line["prediction_ms"] for line in lines] == [r["prediction_ms"] for r in results]
    assert all(line["platform"] == "container" and line["backend"] == "keras" for line in lines)
    # stdout holds nothing but prediction lines: gunicorn and TensorFlow log to stderr.
    assert all(line.startswith('{"event": "prediction"') for line in image_server.stdout().splitlines())


# ------------------------------------------------------------------------------------------------ load
def test_ab_at_concurrency_20_gets_no_errors(image_server, payload_jpeg, tmp_path):
    payload = tmp_path / "photo.jpg"
    payload.write_bytes(payload_jpeg)
    result = run_ab(AbCommand(f"{image_server.url}/predict", 200, 20, payload), tmp_path / "ab")
    summary = result.summary
    assert summary.completed == 200
    assert summary.non_2xx == 0
    assert summary.failures.total == 0, summary.failures  # Length included: the JSON is fixed-length
    assert summary.document_length == RESULT_JSON_LENGTH


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the listen backlog")
def test_listen_backlog_is_deep(image_server):
    """The Kubeless runtime's backlog of 5 resets connections at c = 20; this server's is 2048 (or somaxconn)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{image_server.port}"], capture_output=True, text=True, check=True)
    backlog = int(out.stdout.split()[2])  # Send-Q of a listening socket is its backlog
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert backlog == min(2048, somaxconn) and backlog >= 128


# ------------------------------------------------------------------------------------------------ lifecycle
def test_not_ready_until_the_model_is_loaded(tmp_path, trained_model_dir, payload_jpeg):
    """/healthz answers at once; /readyz and /predict say 503 until the worker has loaded and warmed up."""
    with gunicorn_server(tmp_path, trained_model_dir, ready=False, WORKERS="1", WARMUP_CALLS="20") as server:
        server.wait_listening()
        early_ready = server.get("/readyz")
        early_health = server.get("/healthz")
        early_predict = predict(server.url, payload_jpeg)
        server.wait_ready()
        late_predict = predict(server.url, payload_jpeg)
    assert early_health.status == 200 and early_health.json()["model"] in ("loading", "ready")
    if early_health.json()["model"] == "loading":  # the normal case: TF import alone takes seconds
        assert early_ready.status == 503 and early_ready.json()["ready"] is False
        assert early_predict.status == 503 and early_predict.headers["retry-after"] == "1"
        assert early_predict.json()["error"] == "model_not_ready"
    assert late_predict.status == 200


def _answers(server, path: str, count: int) -> set[tuple[int, bytes]]:
    """Status and body of `count` requests to `path`, each on a new connection (so the kernel hands them to
    whichever worker accepts first)."""
    return {(resp.status, resp.body) for resp in (server.get(path) for _ in range(count))}


def _booted(server) -> int:
    return sum("Booting worker with pid" in line for line in server.stderr().splitlines())


def test_a_missing_model_gets_one_answer_from_every_worker(tmp_path):
    """The master checks the model files before it forks: from the first request on, every worker says the same."""
    missing = tmp_path / "no-model"
    missing.mkdir()
    # keras: a worker left to find out by itself would first spend seconds importing TensorFlow, answering "loading"
    with gunicorn_server(tmp_path, missing, ready=False, WORKERS="4", MODEL_BACKEND="keras") as server:
        server.wait_listening()
        wait_for(lambda: _booted(server) == 4, 60, "4 workers booted")  # so that 20 requests can meet all of them
        health = _answers(server, "/healthz", 20)
        ready = _answers(server, "/readyz", 20)
        resp = predict(server.url, b"\xff\xd8")
    ((health_status, health_body),) = health  # one answer, not one per worker
    assert len(ready) == 1, ready
    ((ready_status, ready_body),) = ready
    expected = f"{missing}/labels.json is missing"
    assert health_status == 500 and expected in json.loads(health_body)["error"]
    assert ready_status == 503 and expected in json.loads(ready_body)["error"]
    assert json.loads(ready_body)["ready"] is False
    assert resp.status == 503 and "failed to load" in resp.json()["message"]


def test_a_model_that_fails_to_load_in_a_worker_is_reported_by_all(tmp_path, trained_model_dir):
    """Files present but unreadable: the master's check passes, the first worker whose load fails tells the others."""
    broken = tmp_path / "broken-model"
    shutil.copytree(trained_model_dir, broken)
    (broken / "model.keras").write_bytes(b"not a keras archive")
    with gunicorn_server(tmp_path, broken, ready=False, WORKERS="3", MODEL_BACKEND="keras") as server:
        server.wait_listening()
        first = wait_for_response(lambda: server.get("/healthz"), lambda r: r.status == 500, 60, "/healthz 500")
        health = _answers(server, "/healthz", 20)
        ready = _answers(server, "/readyz", 20)
    assert health == {(first.status, first.body)}, health
    assert len(ready) == 1, ready
    ((ready_status, ready_body),) = ready
    assert ready_status == 503 and json.loads(ready_body)["error"] == first.json()["error"]


def test_sigterm_lets_the_in_flight_request_finish(tmp_path, trained_model_dir, payload_jpeg):
    with gunicorn_server(tmp_path, trained_model_dir, WORKERS="1") as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        head = (
            f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(payload_jpeg)}\r\nConnection: close\r\n\r\n"
        ).encode()
        half = len(payload_jpeg) // 2
        sock.sendall(head + payload_jpeg[:half])
        time.sleep(0.5)  # the worker has accepted the connection and is reading the body
        server.terminate()
        time.sleep(1.0)  # gunicorn is shutting down; the worker keeps reading the request it has
        sock.sendall(payload_jpeg[half:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
        sock.close()
        exit_code = server.process.wait(30)
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", response[:500]
    body = rest.split(b"\r\n\r\n", 1)[1]
    assert len(body) == RESULT_JSON_LENGTH and json.loads(body)["label"] in LABELS
    assert exit_code == 0
    assert "Handling signal: term" in server.stderr()


# ------------------------------------------------------------------------------------------------ settings
def test_cpu_quota_is_read_from_cgroup_v1_and_v2(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert settings._cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert settings._cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu,cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert settings._cgroup_cpu_quota(tmp_path / "v1") == 2.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert settings._cgroup_cpu_quota(tmp_path / "v1") is None


def test_worker_count_comes_from_workers_then_web_concurrency_then_cpus(monkeypatch):
    monkeypatch.delenv("WORKERS", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert settings.workers() == settings.cpu_limit()
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    assert settings.workers() == 5
    monkeypatch.setenv("WORKERS", "3")
    assert settings.workers() == 3
    monkeypatch.setenv("WORKERS", "two")
    with pytest.raises(settings.SettingError, match="WORKERS='two' is not an integer"):
        settings.workers()
