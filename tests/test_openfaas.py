"""OpenFaaS (function/openfaas/): the watchdogs, the gateway hop and the function, as real processes on 127.0.0.1.

Each status rule of the pinned upstreams is driven against the running program: of-watchdog (mode=http) 504 at
exec_timeout, 500 when the upstream cannot be reached, 429 at max_inflight, health that says ready before the
function listens; the classic watchdog's process per request, 408 "Killed process.", 500 on a non-zero exit,
write_timeout's dropped connection; the gateway's 502 and faas-netes's 500. The rules are driven with tiny probe
handlers (tests/fixtures_openfaas.py), not the model, so they are quick; the model runs in the last tests, through
the image's own entry point (supervisor.py): gateway -> faas-netes proxy -> watchdog -> handler.

Not run here: the Docker image (no engine is used by this suite) and the cluster manifests (validated only).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.fixtures_openfaas import (
    OPENFAAS_DIR,
    PROBE_CLASSIC,
    PROBE_HTTP,
    REPO_ROOT,
    RUNTIME_DIR,
    Proc,
    build_function,
    free_port,
    port_open,
    running,
    start_gateway,
    start_watchdog,
    wait_until,
)
from tests.http_client import request

VENV_BIN = Path(sys.executable).parent
EXEC_TIMEOUT_S = 1.5
EXEC_TIMEOUT = "1500ms"  # a bare "1.5" is no Go duration: the watchdogs would fall back to their default


def later(fn, *args, **kwargs) -> tuple[threading.Thread, list]:
    """Run a request in a thread; its result lands in the returned list."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, out


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def http_probe_dir(tmp_path_factory) -> Path:
    return build_function(tmp_path_factory.mktemp("probe-http"), "http", PROBE_HTTP)


@pytest.fixture(scope="module")
def classic_probe_dir(tmp_path_factory) -> Path:
    return build_function(tmp_path_factory.mktemp("probe-classic"), "classic", PROBE_CLASSIC)


@pytest.fixture(scope="module")
def of_watchdog(tmp_path_factory, http_probe_dir):
    """of-watchdog mode=http in front of the python3-http template serving the probe, once it listens."""
    proc = start_watchdog(tmp_path_factory.mktemp("of-watchdog"), "http", http_probe_dir,
                          exec_timeout=EXEC_TIMEOUT, max_inflight="1")
    with running(proc):
        wait_until(lambda: port_open(proc.upstream_port), 60, "the python3-http server listening")
        yield proc


@pytest.fixture(scope="module")
def classic(tmp_path_factory, classic_probe_dir):
    log_dir = tmp_path_factory.mktemp("classic")
    pid_dir = log_dir / "pids"
    pid_dir.mkdir()
    proc = start_watchdog(log_dir, "classic", classic_probe_dir, exec_timeout=EXEC_TIMEOUT,
                          content_type="application/json", combine_output="false", PROBE_PID_DIR=str(pid_dir))
    proc.pid_dir = pid_dir  # type: ignore[attr-defined]
    with running(proc):
        yield proc


# ------------------------------------------------------------------------------- of-watchdog, mode=http
def test_http_mode_proxies_every_request_to_one_process_over_keep_alive(of_watchdog):
    first = request(of_watchdog.url, "POST", "/a/b?x=1", body=b"hello", headers={"Content-Type": "text/plain"})
    second = request(of_watchdog.url, "PUT", "/", body=b"")
    assert first.status == second.status == 200
    seen, again = first.json(), second.json()
    assert seen["pid"] == again["pid"]  # started once
    assert (seen["method"], seen["path"], seen["query"], seen["len"]) == ("POST", "/a/b", {"x": "1"}, 5)
    assert seen["headers"]["content-type"] == "text/plain"
    assert seen["peer_port"] == again["peer_port"]  # the same upstream connection, kept alive between calls
    assert float(first.headers["x-duration-seconds"]) > 0


def test_exec_timeout_is_a_504_from_the_watchdog(of_watchdog):
    start = time.monotonic()
    resp = request(of_watchdog.url, "GET", "/?action=sleep&s=4", timeout=30)
    elapsed = time.monotonic() - start
    assert resp.status == 504
    assert resp.headers["x-openfaas-internal"] == "of-watchdog"
    assert resp.body == b""
    assert EXEC_TIMEOUT_S - 0.1 < elapsed < 3.5


def test_x_timeout_can_only_shorten_exec_timeout(of_watchdog):
    start = time.monotonic()
    assert request(of_watchdog.url, "GET", "/?action=sleep&s=3", headers={"X-Timeout": "0.5s"}).status == 504
    assert time.monotonic() - start < 1.4
    # a longer X-Timeout is ignored: still cut at exec_timeout
    start = time.monotonic()
    assert request(of_watchdog.url, "GET", "/?action=sleep&s=4", headers={"X-Timeout": "10s"}).status == 504
    assert time.monotonic() - start < 3.5


def test_the_upstream_status_passes_through(of_watchdog):
    resp = request(of_watchdog.url, "GET", "/?action=status&code=418")
    assert resp.status == 418
    assert "x-openfaas-internal" not in resp.headers


def test_max_inflight_is_a_429_and_ready_says_so(of_watchdog):
    # let a previous test's timed-out call (still sleeping in the upstream) not matter: the limit counts the proxy's
    thread, out = later(request, of_watchdog.url, "GET", "/?action=sleep&s=1", timeout=30)
    time.sleep(0.4)
    busy = request(of_watchdog.url, "POST", "/", body=b"x")
    ready = request(of_watchdog.url, "GET", "/_/ready")
    health = request(of_watchdog.url, "GET", "/_/health")
    thread.join(30)
    assert busy.status == 429
    assert busy.body == b"Concurrent request limit exceeded. Max concurrent requests: 1\n"
    assert busy.headers["x-openfaas-internal"] == "faas-middleware"
    assert ready.status == 429
    assert health.status == 200  # health is the lock file only
    assert out[0].status == 200
    assert request(of_watchdog.url, "GET", "/_/ready").status == 200


def test_health_follows_the_lock_file(of_watchdog):
    lock = of_watchdog.lock
    assert request(of_watchdog.url, "GET", "/_/health").body == b"OK"
    lock.unlink()
    try:
        assert request(of_watchdog.url, "GET", "/_/health").status == 503
        assert request(of_watchdog.url, "GET", "/_/ready").status == 503
        assert request(of_watchdog.url, "POST", "/_/health").status == 405
    finally:
        lock.write_bytes(b"")
    assert request(of_watchdog.url, "GET", "/_/health").status == 200


def test_health_is_ready_before_the_function_listens_and_calls_fail_with_500(tmp_path, http_probe_dir):
    """The start-up race: the lock file is written when the watchdog listens, not when the function does (as while
    TensorFlow imports). Calls made then get of-watchdog's empty 500; with ready_path, /_/ready tells the truth."""
    plain_wd = start_watchdog(tmp_path, "http", http_probe_dir, PROBE_START_DELAY_S="4")
    checked_wd = start_watchdog(tmp_path, "http", http_probe_dir, PROBE_START_DELAY_S="4", ready_path="/")
    with running(plain_wd, checked_wd):
        assert not port_open(plain_wd.upstream_port)
        assert request(plain_wd.url, "GET", "/_/health").status == 200
        assert request(plain_wd.url, "GET", "/_/ready").status == 200  # no ready_path: ready too
        early = request(plain_wd.url, "POST", "/", body=b"x")
        assert early.status == 500
        assert early.body == b""
        assert early.headers["x-openfaas-internal"] == "of-watchdog"
        assert request(checked_wd.url, "GET", "/_/health").status == 200
        assert request(checked_wd.url, "GET", "/_/ready").status == 500  # the ready path cannot be reached yet
        assert "Upstream HTTP request error" in plain_wd.logs()
        wait_until(lambda: request(plain_wd.url, "POST", "/", body=b"x").status == 200, 60, "the first 200")
        wait_until(lambda: request(checked_wd.url, "GET", "/_/ready").status == 200, 60, "/_/ready 200")


def test_the_watchdog_exits_when_its_function_dies(tmp_path, http_probe_dir):
    wd = start_watchdog(tmp_path, "http", http_probe_dir)
    with running(wd):
        wait_until(lambda: port_open(wd.upstream_port), 60, "the function listening")
        try:  # the call breaks off: a 500, unless the watchdog is gone before it answers (as in Go)
            status = request(wd.url, "GET", "/?action=exit&code=3").status
        except (http.client.HTTPException, ConnectionError):
            status = None
        assert status in (500, None)
        assert wd.process.wait(10) == 1
        assert "Forked function has terminated: exit status 3" in wd.logs()


# -------------------------------------------------------------------------------- classic watchdog
def test_classic_execs_a_process_per_request_with_the_body_on_stdin(classic):
    body = bytes(range(256)) * 40  # binary, like a JPEG
    first = request(classic.url, "POST", "/?q=1", body=body, headers={"Content-Type": "image/jpeg"})
    second = request(classic.url, "POST", "/", body=b"")
    assert first.status == second.status == 200
    seen = first.json()
    assert seen["pid"] != second.json()["pid"]
    assert (seen["len"], seen["method"], seen["content_type"]) == (len(body), "POST", "image/jpeg")
    assert first.headers["content-type"] == "application/json"  # content_type, not the request's image/jpeg
    assert first.body.endswith(b"\n")  # what print() wrote


def test_classic_concurrency_is_unbounded(classic):
    start = time.monotonic()
    threads = [later(request, classic.url, "POST", "/?action=sleep&s=1", body=b"") for _ in range(3)]
    for thread, _ in threads:
        thread.join(30)
    answers = [out[0] for _, out in threads]
    assert [a.status for a in answers] == [200, 200, 200]
    assert len({a.json()["pid"] for a in answers}) == 3
    assert time.monotonic() - start < 2.9  # side by side, not one after the other


def test_classic_exec_timeout_kills_the_process_and_answers_408(classic):
    before = set(os.listdir(classic.pid_dir))
    start = time.monotonic()
    resp = request(classic.url, "POST", "/?action=sleep&s=5", body=b"", timeout=30)
    elapsed = time.monotonic() - start
    assert resp.status == 408
    assert resp.body == b"Killed process.\n"
    assert EXEC_TIMEOUT_S - 0.1 < elapsed < 4
    (pid,) = set(os.listdir(classic.pid_dir)) - before
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_classic_non_zero_exit_is_a_500_with_the_status_and_the_output(classic):
    resp = request(classic.url, "POST", "/?action=exit&code=3", body=b"")
    assert resp.status == 500
    assert resp.body == b"exit status 3\npartial output\n"


def test_classic_stderr_goes_to_the_reply_unless_combine_output_is_false(tmp_path, classic, classic_probe_dir):
    assert b"to stderr" not in request(classic.url, "POST", "/?action=stderr", body=b"").body
    assert "stderr: to stderr" in classic.logs()
    combined = start_watchdog(tmp_path, "classic", classic_probe_dir)  # the upstream default: combine_output=true
    with running(combined):
        resp = request(combined.url, "POST", "/?action=stderr", body=b"", headers={"Content-Type": "text/x"})
        assert resp.status == 200
        assert resp.body.startswith(b"to stderr\n")
        assert resp.headers["content-type"] == "text/x"  # no content_type: the request's is echoed


def test_classic_write_timeout_drops_the_connection_without_a_reply(tmp_path, classic_probe_dir):
    wd = start_watchdog(tmp_path, "classic", classic_probe_dir, write_timeout="1")
    with running(wd):
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            request(wd.url, "POST", "/?action=sleep&s=2", body=b"", timeout=30)
        assert request(wd.url, "POST", "/", body=b"").status == 200


def test_classic_max_inflight_is_a_429(tmp_path, classic_probe_dir):
    wd = start_watchdog(tmp_path, "classic", classic_probe_dir, max_inflight="1")
    with running(wd):
        thread, out = later(request, wd.url, "POST", "/?action=sleep&s=1.5", body=b"", timeout=30)
        time.sleep(0.5)
        busy = request(wd.url, "POST", "/", body=b"")
        thread.join(30)
        assert busy.status == 429
        assert busy.headers["x-openfaas-internal"] == "faas-middleware"
        assert out[0].status == 200
        assert request(wd.url, "DELETE", "/", body=b"").status == 200
        assert request(wd.url, "OPTIONS", "/").status == 405


# ----------------------------------------------------------------------------------------- gateway
def test_gateway_forwards_path_query_and_headers(of_watchdog, tmp_path):
    gateway = start_gateway(tmp_path, {"predict": of_watchdog.url}, OPENFAAS_GATEWAY_TOPOLOGY="direct")
    with running(gateway):
        resp = request(gateway.url, "POST", "/function/predict/a/b?x=2", body=b"abc")
        assert resp.status == 200
        seen = resp.json()
        assert (seen["path"], seen["query"], seen["len"]) == ("/a/b", {"x": "2"}, 3)
        assert seen["headers"]["x-call-id"] == resp.headers["x-call-id"]
        assert int(seen["headers"]["x-start-time"]) > 0
        assert "x-forwarded-for" not in seen["headers"]  # the gateway sends it; waitress drops untrusted proxy headers
        assert resp.headers["x-served-by"] == "openfaas-ce/0.27.13"
        assert request(gateway.url, "GET", "/healthz").status == 200
        assert request(gateway.url, "GET", "/elsewhere").status == 404


def test_gateway_answers_502_when_the_function_is_down(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway(tmp_path, {"predict": down}, OPENFAAS_GATEWAY_TOPOLOGY="direct")
    with running(gateway):
        resp = request(gateway.url, "POST", "/function/predict", body=b"x")
        assert resp.status == 502
        assert resp.body == b""
        assert "x-call-id" in resp.headers
        assert "Forwarded [POST] to /function/predict - [502]" in gateway.logs()


def test_gateway_answers_502_at_its_upstream_timeout(of_watchdog, tmp_path):
    gateway = start_gateway(tmp_path, {"predict": of_watchdog.url}, OPENFAAS_GATEWAY_TOPOLOGY="direct",
                            upstream_timeout="0.5s")
    with running(gateway):
        start = time.monotonic()
        resp = request(gateway.url, "GET", "/function/predict?action=sleep&s=1", timeout=30)
        assert resp.status == 502
        assert time.monotonic() - start < 1.0
    time.sleep(0.7)  # let the watchdog's call finish before other tests count its in-flight requests


def test_provider_hop_answers_500_and_the_gateway_502_when_the_provider_is_down(of_watchdog, tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    provider = start_gateway(tmp_path, {"predict": of_watchdog.url, "gone": down}, role="provider")
    gateway = start_gateway(tmp_path, {}, functions_provider_url=provider.url)
    orphan = start_gateway(tmp_path, {}, functions_provider_url=down)
    with running(provider, gateway, orphan):
        ok = request(gateway.url, "POST", "/function/predict/x", body=b"y")
        assert ok.status == 200
        assert ok.json()["path"] == "/x"
        gone = request(gateway.url, "POST", "/function/gone", body=b"y")
        assert (gone.status, gone.body) == (500, b"Can't reach service for: gone.\n")
        assert gone.headers["x-openfaas-internal"] == "proxy"
        unknown = request(gateway.url, "POST", "/function/nobody", body=b"y")
        assert (unknown.status, unknown.body) == (503, b"No endpoints available for: nobody.\n")
        assert request(orphan.url, "POST", "/function/predict", body=b"y").status == 502
        assert request(gateway.url, "GET", "/healthz").status == 200  # the gateway asks the provider
        assert request(orphan.url, "GET", "/healthz").status == 502


def test_errors_by_layer_name_the_component_the_client_saw(of_watchdog, tmp_path):
    """The kind's log reader (errors by layer, Kind.error_origins) against what each client got: a reply with
    X-OpenFaaS-Internal is the watchdog's (or faas-netes's), a bare 502 from the gateway is the gateway's, any
    other non-2xx is the function's own answer. Counted from the responses, not from the logs."""
    from collections import Counter

    from analysis.bench.kinds.openfaas import error_origins

    down = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway(tmp_path, {"predict": of_watchdog.url, "gone": down}, OPENFAAS_GATEWAY_TOPOLOGY="direct")
    watchdog_before = len(of_watchdog.logs())
    with running(gateway):
        replies = [request(gateway.url, "POST", f"/function/{path}", body=b"x", timeout=30) for path in (
            "predict", "predict?action=status&code=500", "predict?action=status&code=415", "predict?action=sleep&s=2",
            "gone", "nobody", "predict")]
        time.sleep(0.7)  # the timed-out call finishes in the upstream before other tests count in-flight calls
        logs = gateway.logs() + of_watchdog.logs()[watchdog_before:]
    expected: Counter[str] = Counter()
    for r in replies:
        if 200 <= r.status < 300:
            continue
        internal = r.headers.get("x-openfaas-internal")
        expected["watchdog" if internal == "of-watchdog" else "gateway" if r.status == 502 and not internal
                 else "function"] += 1
    assert [r.status for r in replies] == [200, 500, 415, 504, 502, 502, 200]
    assert error_origins(logs) == expected == Counter(function=2, watchdog=1, gateway=2)


# ------------------------------------------------------------------------- the image's entry point + model
def start_platform(tmp_path: Path, model_dir: Path, mode: str, **env: str) -> Proc:
    """supervisor.py (the image's ENTRYPOINT) with both functions laid out as the Dockerfile lays them out."""
    app_root = tmp_path / "app"
    for variant in ("http", "classic"):
        build_function(app_root / variant, variant)
    lock_dir = tmp_path / "tmp"
    lock_dir.mkdir()
    gateway_port, upstream_port = free_port(), free_port()
    settings = {
        "OPENFAAS_MODE": mode, "OPENFAAS_APP_ROOT": str(app_root), "MODEL_DIR": str(model_dir), "TMPDIR": str(lock_dir),
        "GATEWAY_PORT": str(gateway_port), "WATCHDOG_PORT": str(free_port()), "PROVIDER_PORT": str(free_port()),
        "FUNCTION_PORT": str(upstream_port), "upstream_url": f"http://127.0.0.1:{upstream_port}",
        "FUNCTION_BIND_ADDRESS": "127.0.0.1", "WATCHDOG_BIND_ADDRESS": "127.0.0.1", "GATEWAY_BIND_ADDRESS": "127.0.0.1",
        "fprocess": f"{sys.executable} index.py", "healthcheck_interval": "0.5s", **env,
    }
    proc = Proc(f"platform-{mode}", [sys.executable, str(RUNTIME_DIR / "supervisor.py")], settings, tmp_path,
                port=gateway_port)
    return proc.wait_listening(60)


def health_past_the_gateway(url: str):
    """The first health answer that comes from the watchdog.

    The supervisor starts the watchdog and the gateway side by side, so until the watchdog has bound its port the
    gateway answers its own empty 502 for an unreachable upstream: that start-up race is waited out, nothing else.
    """
    def answer():
        response = request(url, "GET", "/function/predict/_/health")
        if response.status == 502 and response.body == b"" and "x-openfaas-internal" not in response.headers:
            return None
        return response

    return wait_until(answer, 30, "a health answer from the watchdog")


def truncated_jpeg(data: bytes) -> bytes:
    return data[: len(data) // 3]


def test_http_prediction_through_gateway_watchdog_and_handler_equals_the_inference_core(
    tmp_path, trained_model_dir, sample_jpegs
):
    photo = sample_jpegs["food"]
    platform = start_platform(tmp_path, trained_model_dir, "http", MAX_BODY_BYTES="400000")
    url = platform.url
    with running(platform):
        # Kubernetes' probe path says ready at once: the model is still loading behind it
        assert health_past_the_gateway(url).status == 200
        statuses = []

        def first_200() -> bool:
            statuses.append(request(url, "POST", "/function/predict", body=photo,
                                    headers={"Content-Type": "image/jpeg"}, timeout=60))
            return statuses[-1].status == 200

        wait_until(first_200, 180, "the first 200", poll_s=0.2)
        assert statuses[0].status == 500  # the start-up window: of-watchdog's 500 while TensorFlow imports
        assert statuses[0].headers["x-openfaas-internal"] == "of-watchdog"
        served = statuses[-1]
        assert served.headers["content-type"] == "application/json"
        assert "x-call-id" in served.headers and "x-duration-seconds" in served.headers
        result = served.json()
        assert len(served.body) == 256

        not_image = request(url, "POST", "/function/predict", body=b"not an image",
                            headers={"Content-Type": "image/jpeg"})
        assert (not_image.status, not_image.json()["error"]) == (400, "not_an_image")
        truncated = request(url, "POST", "/function/predict", body=truncated_jpeg(photo),
                            headers={"Content-Type": "image/jpeg"})
        assert (truncated.status, truncated.json()["error"]) == (400, "truncated_image")
        oversized = request(url, "POST", "/function/predict", body=b"\xff" * 400_001,
                            headers={"Content-Type": "image/jpeg"})
        assert (oversized.status, oversized.json()["error"]) == (413, "body_too_large")
        assert request(url, "POST", "/function/predict", body=b"{}", headers={"Content-Type": "text/csv"}).status == 415
        ready = request(url, "GET", "/function/predict")
        assert (ready.status, ready.json()["backend"]) == (200, "keras")
        start = time.monotonic()
        platform.process.send_signal(signal.SIGTERM)
        assert platform.process.wait(15) is not None
        stop_s = time.monotonic() - start
    assert stop_s < 10
    log = platform.logs()
    assert re.search(r'stdout: \{"event": "prediction", "platform": "openfaas-http"', log)

    from model.inference import Predictor

    direct = Predictor(trained_model_dir, backend="keras").predict_bytes(photo)
    assert result["label"] == direct["label"]
    assert result["model_sha256"] == direct["model_sha256"]
    np.testing.assert_allclose([result["scores"][k] for k in sorted(direct["scores"])],
                               [direct["scores"][k] for k in sorted(direct["scores"])], atol=1e-5)


def test_classic_prediction_loads_the_model_in_each_process_and_equals_the_inference_core(
    tmp_path, trained_model_dir, sample_jpegs
):
    photo = sample_jpegs["drink"]
    platform = start_platform(tmp_path, trained_model_dir, "classic", MODEL_BACKEND="litert",
                              OPENFAAS_GATEWAY_TOPOLOGY="direct")
    url = platform.url
    with running(platform):
        assert health_past_the_gateway(url).status == 200
        answers = [request(url, "POST", "/function/predict", body=photo, headers={"Content-Type": "image/jpeg"},
                           timeout=120) for _ in range(2)]
        bad = request(url, "POST", "/function/predict", body=b"not an image", headers={"Content-Type": "image/jpeg"})
    assert [a.status for a in answers] == [200, 200]
    assert answers[0].headers["content-type"] == "application/json"
    result = json.loads(answers[0].body)
    # the classic watchdog cannot send a 4xx: a non-zero exit is its 500, the function's JSON error after the status
    assert bad.status == 500
    status_line, error = bad.body.decode().split("\n", 1)
    assert status_line == "exit status 1"
    assert json.loads(error)["error"] == "not_an_image"
    log = platform.logs()
    assert log.count("Forking fprocess.") == 3
    # each process's stderr is logged as one "stderr: ..." entry (LiteRT's INFO line first), the JSON on its own line
    assert len(re.findall(r'^\{"event": "prediction", "platform": "openfaas-classic"', log, re.M)) == 2

    from model.inference import Predictor

    direct = Predictor(trained_model_dir, backend="litert").predict_bytes(photo)
    assert result["label"] == direct["label"]
    assert result["scores"] == direct["scores"]


# ----------------------------------------------------------------------------------- static checks
def test_the_image_shares_the_dependency_stage_with_the_other_images():
    def first_stage(path: Path) -> list[str]:
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
        end = next(i for i, line in enumerate(lines) if line.startswith("FROM ${BASE_IMAGE}") and " AS " not in line)
        return lines[: end + 3]

    ours = first_stage(OPENFAAS_DIR / "Dockerfile")
    assert ours == first_stage(REPO_ROOT / "function" / "kubeless" / "Dockerfile")
    assert ours == first_stage(REPO_ROOT / "image" / "Dockerfile")
    text = (OPENFAAS_DIR / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python3", "/opt/openfaas/supervisor.py"]' in text
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in copied.split():
            if source != "\\" and "$" not in source and not source.startswith("build/"):  # build/: made by setup
                assert (REPO_ROOT / source).exists(), source


def test_stack_and_the_faas_netes_manifests_agree():
    stack = yaml.safe_load((OPENFAAS_DIR / "stack.yml").read_text())
    assert set(stack["functions"]) == {"predict-http", "predict-classic"}
    for name, spec in stack["functions"].items():
        deployment = yaml.safe_load((OPENFAAS_DIR / "k8s" / f"{name}-deployment.yml").read_text())
        service = yaml.safe_load((OPENFAAS_DIR / "k8s" / f"{name}-service.yml").read_text())
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == spec["image"]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env == {k: str(v) for k, v in spec["environment"].items()}
        assert [item["name"] for item in container["env"]] == sorted(env)
        assert container["resources"] == {"limits": spec["limits"], "requests": spec["requests"]}
        assert container["readinessProbe"]["httpGet"] == {"path": "/_/health", "port": 8080}
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == {"faas_function": name}


@pytest.mark.parametrize("version", ["1.10.0", "1.24.0"])
def test_the_manifests_are_valid_kubernetes(version):
    files = sorted(str(p) for p in (OPENFAAS_DIR / "k8s").glob("*.yml"))
    done = subprocess.run([str(VENV_BIN / "kubernetes-validate"), "-k", version, "--strict", *files],
                          capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    short = version.rsplit(".", 1)[0]
    passed = [line for line in output.splitlines() if line.startswith("INFO") and f"against version {short}" in line]
    assert done.returncode == 0 and "WARN" not in output and "ERROR" not in output, output
    assert len(passed) == len(files) == 4, output


def test_both_kinds_are_registered_as_functions():
    from analysis.bench import platforms

    kinds = platforms.known()
    assert kinds["openfaas-http"].role == kinds["openfaas-classic"].role == "function"
    assert kinds["openfaas-http"].warmup_env == "WARMUP_CALLS"
    assert kinds["openfaas-classic"].warmup_env is None


def test_the_overhead_script_explains_itself():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "openfaas-overhead.py"), "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert "--concurrency" in done.stdout and "watchdog - direct" in done.stdout
