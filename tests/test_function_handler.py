"""The prediction function (function/kubeless/handler.py) behind the real runtime, with the real model, over real HTTP.

Covers every status a client can get (200/400/408/413/415/500), the JSON log line, the metrics, and the
fork-safety regression: the model is loaded with TensorFlow in the runtime's parent process and each call
predicts in a forked child, which hangs with the wrong TensorFlow set-up.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from model.inference import RESULT_JSON_LENGTH
from tests.fixtures_function import (
    burst,
    function_server,
    json_image_body,
    photo,
    post_image,
    request,
)
from tests.http_client import metric, metric_samples, wait_for

BODY_LIMIT = 150_000  # MAX_BODY_BYTES for the keras server, so the function's own 413 is cheap to reach
REGRESSION_REQUESTS = 200
REGRESSION_CONCURRENCY = 20


@pytest.fixture(scope="module")
def keras_faithful(tmp_path_factory, trained_model_dir):
    log_dir = tmp_path_factory.mktemp("handler-keras")
    with function_server(log_dir, trained_model_dir, MODEL_BACKEND="keras", MAX_BODY_BYTES=str(BODY_LIMIT)) as server:
        yield server


@pytest.fixture(scope="module")
def jpeg(sample_jpegs) -> bytes:
    """A 500x375 photo-like JPEG, under BODY_LIMIT."""
    data = sample_jpegs["food"]
    assert len(data) < BODY_LIMIT
    return data


def assert_prediction(resp, labels, backend="keras"):
    assert resp.status == 200, resp.body[:300]
    assert resp.headers["content-type"] == "application/json"
    assert len(resp.body) == RESULT_JSON_LENGTH  # fixed length: ab never counts a Length failure
    result = resp.json()
    assert result["label"] in labels
    assert list(result["scores"]) == labels
    assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["backend"] == backend
    assert result["prediction_ms"] > 0
    return result


def labels_of(model_dir) -> list[str]:
    return json.loads((model_dir / "labels.json").read_text())["labels"]


# -------------------------------------------------------------------------------------------- 200
@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream", None])
def test_raw_jpeg_is_classified(keras_faithful, jpeg, trained_model_dir, content_type):
    assert_prediction(post_image(keras_faithful.url, jpeg, content_type), labels_of(trained_model_dir))


def test_png_is_classified(keras_faithful, trained_model_dir):
    png = photo(160, 120, fmt="PNG")
    assert len(png) < BODY_LIMIT
    assert_prediction(post_image(keras_faithful.url, png, "image/png"), labels_of(trained_model_dir))


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_base64_json_under_100_kib_is_classified(keras_faithful, trained_model_dir, content_type):
    small = photo(200, 150)
    body = json_image_body(small)
    assert len(body) < 100 * 1024
    assert_prediction(post_image(keras_faithful.url, body, content_type), labels_of(trained_model_dir))


def test_the_same_image_gets_the_same_answer_every_call(keras_faithful, jpeg):
    first, second = (post_image(keras_faithful.url, jpeg).json() for _ in range(2))
    assert first["scores"] == second["scores"]


# -------------------------------------------------------------------------------------------- 4xx
def error_of(resp, status: int, code: str) -> dict:
    assert resp.status == status, resp.body[:300]
    assert resp.headers["content-type"] == "application/json"
    error = resp.json()
    assert error["error"] == code
    assert error["status"] == status
    assert error["message"]
    return error


def test_empty_body_is_400(keras_faithful):
    error_of(post_image(keras_faithful.url, b""), 400, "empty_body")


def test_bytes_that_are_not_an_image_are_400(keras_faithful):
    error_of(post_image(keras_faithful.url, b"this is not a jpeg" * 10), 400, "not_an_image")


def test_a_truncated_jpeg_is_400(keras_faithful, jpeg):
    error_of(post_image(keras_faithful.url, jpeg[: len(jpeg) // 3]), 400, "truncated_image")


def test_json_without_an_image_is_400(keras_faithful):
    for body in (b'{"picture": "x"}', b"[1, 2, 3]", b'{"image": "not base64!"}'):
        error_of(post_image(keras_faithful.url, body, "application/json"), 400, "bad_json")


def test_an_image_over_max_body_bytes_is_413(keras_faithful):
    big = photo(1600, 1200, seed=5)
    assert len(big) > BODY_LIMIT
    error_of(post_image(keras_faithful.url, big, "image/jpeg"), 413, "body_too_large")


def test_json_over_100_kib_is_rejected_by_the_runtime_with_413(keras_faithful):
    # Kubeless's JSON limit (bottle MEMFILE_MAX): send images raw, not base64 in JSON
    image = photo(500, 375)
    assert len(image) < BODY_LIMIT
    body = json_image_body(image)
    assert len(body) > 100 * 1024
    resp = post_image(keras_faithful.url, body, "application/json")
    assert resp.status == 413
    assert resp.headers["content-type"].startswith("text/html")
    # the same body with a parameter on the content type skips the runtime's parsing and is classified
    assert post_image(keras_faithful.url, body, "application/json; charset=utf-8").status == 200


def test_an_unsupported_content_type_is_415(keras_faithful, jpeg):
    error_of(post_image(keras_faithful.url, jpeg, "text/plain"), 415, "unsupported_content_type")


def test_invalid_json_with_exactly_application_json_is_the_runtimes_500(keras_faithful):
    # the runtime parses application/json itself, before the function runs, and bottle turns the error into a 500
    resp = post_image(keras_faithful.url, b'{"image": ', "application/json")
    assert resp.status == 500
    assert resp.headers["content-type"].startswith("text/html")


# ------------------------------------------------------------------------------------- log, metrics
def test_each_prediction_prints_one_json_line(keras_faithful, jpeg):
    resp = post_image(keras_faithful.url, jpeg)
    expected = resp.json()
    deadline = time.monotonic() + 5
    found = None
    while found is None and time.monotonic() < deadline:
        for line in keras_faithful.stdout().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("prediction_ms") == expected["prediction_ms"]:
                    found = record
        time.sleep(0.1)
    assert found is not None, keras_faithful.stdout()[-2000:]
    assert found["event"] == "prediction"
    assert found["platform"] == "function"
    assert found["label"] == expected["label"]
    assert found["backend"] == "keras"


def test_metrics_after_n_calls(keras_faithful, jpeg):
    before = metric_samples(keras_faithful.url)
    for _ in range(4):
        assert post_image(keras_faithful.url, jpeg).status == 200
    assert post_image(keras_faithful.url, b"").status == 400  # raised HTTPResponse: a failure for alpha.8
    after = metric_samples(keras_faithful.url)
    assert (
        metric(after, "function_calls_total", method="POST") - metric(before, "function_calls_total", method="POST")
        == 5
    )
    failures = metric(after, "function_failures_total", method="POST")
    assert failures - metric(before, "function_failures_total", method="POST") == 1
    count = metric(after, "function_duration_seconds_count", method="POST")
    assert count - metric(before, "function_duration_seconds_count", method="POST") == 5


def test_the_benchmark_reads_statuses_and_prediction_times_from_the_runtime_log(keras_faithful, jpeg):
    """What `python -m analysis.bench micro-function` reads from the runtime's stdout: the access lines by status
    with their server time, and the handler's prediction lines."""
    from analysis.bench.micro_function import access_stats

    start = len(keras_faithful.stdout().splitlines())
    predictions = [post_image(keras_faithful.url, jpeg).json()["prediction_ms"] for _ in range(2)]
    assert post_image(keras_faithful.url, jpeg, "text/plain").status == 415

    def new_lines() -> list[str]:
        return keras_faithful.stdout().splitlines()[start:]

    wait_for(lambda: len(access_stats(new_lines())[1]) >= 3, 10, "the three access lines on the runtime's stdout")
    lines = new_lines()
    statuses, server_ms = access_stats(lines)
    assert statuses == {"200": 2, "415": 1}
    assert len(server_ms) == 3 and all(ms > 0 for ms in server_ms)
    logged = [json.loads(line)["prediction_ms"] for line in lines if line.startswith('{"event": "prediction"')]
    assert sorted(logged) == sorted(predictions)


def test_healthz(keras_faithful):
    resp = request(keras_faithful.url, "GET", "/healthz")
    assert (resp.status, resp.body) == (200, b"OK")


# ------------------------------------------------------------------------------------------------ 408
def test_a_prediction_past_func_timeout_is_a_408(tmp_path_factory, trained_model_dir, jpeg):
    log_dir = tmp_path_factory.mktemp("handler-408")
    with function_server(log_dir, trained_model_dir, MODEL_BACKEND="litert", FUNC_TIMEOUT="0.001") as server:
        resp = post_image(server.url, jpeg)
        assert resp.status == 408
        assert b"Timeout while processing the function" in resp.body
        samples = metric_samples(server.url)
        assert metric(samples, "function_calls_total", method="POST") == 1
        assert metric(samples, "function_failures_total", method="POST") == 0  # returned, not raised


# ---------------------------------------------------------------------------------- fork-safety regression
def test_fork_safety_sequential_then_concurrent(keras_faithful, jpeg):
    """TensorFlow loaded in the parent, predictions in forked children: nothing may hang.

    The only non-2xx allowed is the faithful runtime's own spurious 408 (a multiprocessing race when request
    threads fork at once); a hang would show as a request with no response at all.
    """
    sequential = burst(keras_faithful.url, jpeg, REGRESSION_REQUESTS, 1)
    assert sequential.statuses == [200] * REGRESSION_REQUESTS
    concurrent = burst(keras_faithful.url, jpeg, REGRESSION_REQUESTS, REGRESSION_CONCURRENCY)
    spurious_408 = concurrent.count(408)
    print(
        f"\nfaithful keras: {REGRESSION_REQUESTS} sequential in {sequential.elapsed_s:.1f} s; "
        f"{REGRESSION_REQUESTS} at c={REGRESSION_CONCURRENCY} in {concurrent.elapsed_s:.1f} s, "
        f"{spurious_408} spurious 408, {concurrent.connection_errors} connection resets retried"
    )
    assert None not in concurrent.statuses, "a request got no response"
    assert set(concurrent.statuses) <= {200, 408}
    assert all(
        len(body) == RESULT_JSON_LENGTH
        for status, body in zip(concurrent.statuses, concurrent.bodies, strict=True)
        if status == 200
    )


def test_fork_safety_repaired_has_no_408(tmp_path_factory, trained_model_dir, jpeg):
    log_dir = tmp_path_factory.mktemp("handler-repaired")
    with function_server(log_dir, trained_model_dir, MODEL_BACKEND="keras", KUBELESS_RUNTIME_MODE="repaired") as server:
        concurrent = burst(server.url, jpeg, REGRESSION_REQUESTS, REGRESSION_CONCURRENCY)
        print(
            f"\nrepaired keras: {REGRESSION_REQUESTS} at c={REGRESSION_CONCURRENCY} in {concurrent.elapsed_s:.1f} s, "
            f"{concurrent.count(408)} 408, {concurrent.connection_errors} connection resets retried"
        )
        assert concurrent.statuses == [200] * REGRESSION_REQUESTS
        # a bad request is answered by the function's HTTPResponse, which repaired does not count as a failure
        resp = post_image(server.url, b"")
        assert resp.status == 400
        assert resp.json()["error"] == "empty_body"
        assert metric(metric_samples(server.url), "function_failures_total", method="POST") == 0


def test_json_body_is_decoded_from_base64(keras_faithful, trained_model_dir):
    small = photo(160, 120, seed=9)
    body = json.dumps({"image": base64.b64encode(small).decode()}).encode()
    via_json = post_image(keras_faithful.url, body, "application/json").json()
    via_raw = post_image(keras_faithful.url, small, "image/jpeg").json()
    assert via_json["scores"] == via_raw["scores"]
