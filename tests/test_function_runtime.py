"""The runtime (function/kubeless/runtime/kubeless.py) keeps the Kubeless alpha.8 Python contract.

Real runtime process, real HTTP, serving tests/function_probe/probe.py (a function that does what the query
asks), in the faithful mode (the default) and in the repaired mode.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.fixtures_function import probe_server, request
from tests.http_client import metric, metric_samples

PROBE_TIMEOUT_S = 2  # FUNC_TIMEOUT for the probe servers: short, so the 408 paths are quick to test
JSON_LIMIT = 102400  # bottle's MEMFILE_MAX, which Kubeless does not raise


@pytest.fixture(scope="module")
def faithful(tmp_path_factory):
    with probe_server(tmp_path_factory.mktemp("faithful"), FUNC_TIMEOUT=str(PROBE_TIMEOUT_S)) as server:
        yield server


@pytest.fixture(scope="module")
def repaired(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("repaired")
    with probe_server(log_dir, FUNC_TIMEOUT=str(PROBE_TIMEOUT_S), KUBELESS_RUNTIME_MODE="repaired") as server:
        yield server


def call(server, action: str, method: str = "POST", body: bytes | None = b"", headers=None, timeout=30, **query):
    path = "/?" + "&".join(f"{k}={v}" for k, v in {"action": action, **query}.items())
    return request(server.url, method, path, body=body, headers=headers, timeout=timeout)


# ----------------------------------------------------------------------------------------- the event
def test_event_and_context_have_the_alpha8_keys(faithful):
    resp = call(faithful, "echo", body=b"raw bytes", headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    seen = resp.json()
    assert seen["event_keys"] == ["data", "event-id", "event-namespace", "event-time", "event-type", "extensions"]
    assert seen["extension_keys"] == ["request"]  # no 'response', whatever the docs say
    assert seen["request_is_bottle"] is True
    assert seen["data_type"] == "bytes"
    assert seen["data_len"] == len(b"raw bytes")
    assert seen["headers"] == dict.fromkeys(("event-id", "event-type", "event-time", "event-namespace"))
    assert seen["context_keys"] == ["function-name", "memory-limit", "runtime", "timeout"]
    # alpha.8 hands the function object itself, not its name
    assert seen["function_name_type"] == "function"
    assert seen["function_name"] == "probe"
    assert seen["timeout"] == float(PROBE_TIMEOUT_S)
    assert seen["runtime"] == "python3.11"
    assert seen["memory_limit"] == "0"


def test_event_headers_are_passed_through(faithful):
    headers = {"event-id": "42", "event-type": "application/json", "event-time": "t0", "event-namespace": "kafka"}
    seen = call(faithful, "echo", headers=headers).json()
    assert seen["headers"] == headers


def test_every_call_runs_in_a_fresh_fork_of_the_server(faithful):
    first, second = (call(faithful, "echo").json() for _ in range(2))
    assert first["pid"] != second["pid"]
    assert first["ppid"] == second["ppid"] == faithful.process.pid
    # module state changed by a call dies with its process
    assert [call(faithful, "count").json()["calls"] for _ in range(3)] == [1, 1, 1]


def test_json_is_parsed_only_for_exactly_application_json(faithful):
    body = json.dumps({"a": [1, 2]}).encode()
    parsed = call(faithful, "echo", body=body, headers={"Content-Type": "application/json"}).json()
    assert parsed["data_type"] == "dict"
    assert parsed["data"] == {"a": [1, 2]}
    raw = call(faithful, "echo", body=body, headers={"Content-Type": "application/json; charset=utf-8"}).json()
    assert raw["data_type"] == "bytes"
    assert raw["data_len"] == len(body)


def test_json_over_100_kib_is_413_before_the_call(faithful):
    body = json.dumps({"pad": "x" * JSON_LIMIT}).encode()
    before = metric(metric_samples(faithful.url), "function_calls_total", method="POST")
    resp = call(faithful, "echo", body=body, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert resp.headers["content-type"].startswith("text/html")
    # the runtime rejects it before counting a call
    assert metric(metric_samples(faithful.url), "function_calls_total", method="POST") == before


def test_raw_bodies_over_100_kib_reach_the_function(faithful):
    body = b"\x00" * (3 * JSON_LIMIT)
    seen = call(faithful, "echo", body=body, headers={"Content-Type": "application/octet-stream"}).json()
    assert seen["data_len"] == len(body)


def test_invalid_json_with_the_json_content_type_is_a_500(faithful):
    resp = call(faithful, "echo", body=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 500


# ------------------------------------------------------------------------------------- statuses
def test_an_exception_in_the_function_is_a_500_html_page(faithful):
    resp = call(faithful, "raise")
    assert resp.status == 500
    assert resp.headers["content-type"].startswith("text/html")
    assert b"Internal Server Error" in resp.body


def test_a_raised_http_response_reaches_the_client(faithful):
    resp = call(faithful, "http_response")
    assert resp.status == 418
    assert resp.json() == {"error": "teapot"}
    assert resp.headers["content-type"] == "application/json"


def test_returning_a_number_is_a_500(faithful):
    assert call(faithful, "number").status == 500


def test_a_call_past_func_timeout_is_a_408(faithful):
    start = time.monotonic()
    resp = call(faithful, "sleep", seconds=PROBE_TIMEOUT_S * 3)
    assert resp.status == 408
    assert b"Timeout while processing the function" in resp.body
    assert PROBE_TIMEOUT_S <= time.monotonic() - start < PROBE_TIMEOUT_S * 3


def test_a_small_result_is_returned_but_one_over_the_pipe_buffer_is_a_408(faithful):
    small = call(faithful, "bytes", n=32 * 1024)
    assert small.status == 200
    assert len(small.body) == 32 * 1024
    # alpha.8 joins the child before reading the queue: the child blocks writing > 64 KiB, the parent times out
    big = call(faithful, "bytes", n=100 * 1024)
    assert big.status == 408


def test_an_unpicklable_result_gets_no_reply_at_all(faithful):
    # alpha.8: the result never reaches the queue and the server thread waits on it forever
    with pytest.raises(TimeoutError):
        call(faithful, "unpicklable", timeout=PROBE_TIMEOUT_S + 2)


# ----------------------------------------------------------------------------------------- routes
def test_routes(faithful):
    assert request(faithful.url, "GET", "/healthz").body == b"OK"
    assert request(faithful.url, "GET", "/predict").status == 404  # alpha.8 serves the function at / only
    assert request(faithful.url, "PUT", "/", body=b"").status == 405
    for method in ("GET", "POST", "PATCH", "DELETE"):
        assert call(faithful, "echo", method=method).json()["method"] == method


# ---------------------------------------------------------------------------------------- metrics
def test_metrics_count_calls_failures_and_durations_by_method(faithful):
    before = metric_samples(faithful.url)
    for _ in range(3):
        assert call(faithful, "echo").status == 200
    for _ in range(2):
        assert call(faithful, "echo", method="GET").status == 200
    assert call(faithful, "raise").status == 500
    assert call(faithful, "http_response").status == 418  # raised, so alpha.8 counts it as a failure
    assert call(faithful, "sleep", seconds=PROBE_TIMEOUT_S * 2).status == 408  # returned: timed, not a failure
    after = metric_samples(faithful.url)

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("function_calls_total", method="POST") == 6
    assert delta("function_calls_total", method="GET") == 2
    assert delta("function_failures_total", method="POST") == 2
    assert delta("function_failures_total", method="GET") == 0
    assert delta("function_duration_seconds_count", method="POST") == 6
    assert delta("function_duration_seconds_count", method="GET") == 2
    assert delta("function_duration_seconds_sum", method="POST") >= PROBE_TIMEOUT_S
    assert metric(after, "function_duration_seconds_bucket", le="10.0", method="POST") > 0
    assert ("process_resident_memory_bytes", ()) in after  # the client's default process metrics


def test_metrics_content_type(faithful):
    resp = request(faithful.url, "GET", "/metrics")
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")


# ---------------------------------------------------------------------------------------- access log
ACCESS_LINE = re.compile(
    r"^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
    r'"POST /\?action=echo&tag=access-log HTTP/1\.1" 200 (\d+) "" "kde-test" (\d+)/(\d+)$',
    re.MULTILINE,
)


def test_each_request_gets_an_apache_style_access_line_on_stdout(faithful):
    resp = call(faithful, "echo", tag="access-log")
    deadline = time.monotonic() + 5
    while not (match := ACCESS_LINE.search(faithful.stdout())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert match, faithful.stdout()[-2000:]
    size, seconds, micros = (int(g) for g in match.groups())
    assert size == len(resp.body)
    assert seconds == micros // 1_000_000


# ---------------------------------------------------------------------------------------- repaired
def test_repaired_returns_results_over_the_pipe_buffer(repaired):
    resp = call(repaired, "bytes", n=1024 * 1024)
    assert resp.status == 200
    assert len(resp.body) == 1024 * 1024


def test_repaired_answers_an_unpicklable_result_with_a_500(repaired):
    start = time.monotonic()
    assert call(repaired, "unpicklable").status == 500
    assert time.monotonic() - start < PROBE_TIMEOUT_S


def test_repaired_answers_a_call_whose_process_died_with_a_500(repaired):
    start = time.monotonic()
    assert call(repaired, "exit").status == 500
    assert time.monotonic() - start < PROBE_TIMEOUT_S
    assert "exit code 3" in repaired.stderr()


def test_repaired_still_times_out_with_a_408(repaired):
    assert call(repaired, "sleep", seconds=PROBE_TIMEOUT_S * 3).status == 408


def test_repaired_http_response_is_not_a_failure_and_exceptions_are(repaired):
    before = metric(metric_samples(repaired.url), "function_failures_total", method="POST")
    resp = call(repaired, "http_response")
    assert resp.status == 418
    assert resp.json() == {"error": "teapot"}
    assert metric(metric_samples(repaired.url), "function_failures_total", method="POST") == before
    assert call(repaired, "raise").status == 500
    assert metric(metric_samples(repaired.url), "function_failures_total", method="POST") == before + 1


def test_repaired_passes_the_function_name_as_a_string(repaired):
    seen = call(repaired, "echo").json()
    assert seen["function_name_type"] == "str"
    assert seen["function_name"] == "probe"
    assert seen["ppid"] == repaired.process.pid
