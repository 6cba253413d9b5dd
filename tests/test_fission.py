"""The Fission platform kind (function/fission/): the python environment, the router hop and the executors.

Real processes on 127.0.0.1: environment/server.py (Flask on bjoern) and runtime/main.py (router + executor),
serving a tiny probe function (slow, timeout and connection cases) and, once, the real handler with the small
trained model. Specs and the bench kind are checked statically.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.fixtures_fission import (
    FISSION_DIR,
    EnvServer,
    FissionRouter,
    env_children,
    prespecialized_state,
    running,
    write_probe,
)
from tests.http_client import free_port, request

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def probe_pkg(tmp_path_factory) -> Path:
    return write_probe(tmp_path_factory.mktemp("pkg"))


@pytest.fixture(scope="module")
def probe_env(tmp_path_factory, probe_pkg):
    """One environment specialized (v2) with the probe, shared by the router tests."""
    with running(EnvServer(tmp_path_factory.mktemp("env"))) as env:
        assert env.specialize_v2(probe_pkg, "probe.main").status == 200
        yield env


def call(url: str, path: str = "/", sleep: float = 0, timeout: float = 60, body: bytes = b"x"):
    query = f"?sleep={sleep}" if sleep else ""
    return request(url, "POST", path + query, body=body, headers={"Content-Type": "application/octet-stream"},
                   timeout=timeout)


# ------------------------------------------------------------------------------------- the environment
def test_generic_env_is_healthy_and_answers_500_before_specialization(tmp_path, probe_pkg):
    with running(EnvServer(tmp_path)) as env:
        health = request(env.url, "GET", "/healthz")
        assert (health.status, health.body) == (200, b"")
        before = call(env.url)
        assert before.status == 500
        assert b"Internal Server Error" in before.body
        assert "userfunc is None" in env.stdout() + env.stderr()
        # v2: {filepath, functionName} imports the module; its module-level code runs in the specialize call
        t0 = time.time()
        assert env.specialize_v2(probe_pkg, "probe.main").status == 200
        seen = call(env.url, body=b"abcd").json()
        assert t0 <= seen["imported_at"] <= time.time()
        assert seen["pid"] == env.process.pid and seen["body_len"] == 4
        # any path reaches the function (the catch-all route), which reads flask.request
        assert call(env.url, "/some/path").json()["path"] == "/some/path"
        assert json.loads((env.userfunc / "state.json").read_text())["functionName"] == "probe.main"


def test_v1_specialize_loads_userfunc_user(tmp_path, probe_pkg):
    with running(EnvServer(tmp_path)) as env:
        (env.userfunc / "user").write_text((probe_pkg / "probe.py").read_text())
        assert call(env.url).status == 500
        assert request(env.url, "POST", "/specialize", body=b"").status == 200
        assert call(env.url).json()["pid"] == env.process.pid


def test_the_environment_serves_one_request_at_a_time(probe_env):
    """bjoern's single loop: two concurrent 1 s calls take about 2 s, the second starting when the first ends."""
    with ThreadPoolExecutor(2) as pool:
        t0 = time.monotonic()
        answers = list(pool.map(lambda _: call(probe_env.url, sleep=1.0).json(), range(2)))
        elapsed = time.monotonic() - t0
    starts = sorted(a["started"] for a in answers)
    assert elapsed >= 1.9, f"two 1 s calls took {elapsed:.2f} s: not serial"
    assert starts[1] - starts[0] >= 0.95


def test_the_environment_has_no_body_limit(probe_env):
    body = b"\0" * (24 * 1024 * 1024)  # over Flask's and the kit's 10 MiB: the env passes it to the function
    assert call(probe_env.url, body=body, timeout=120).json()["body_len"] == len(body)


# ------------------------------------------------------------------------------------- the router
@pytest.mark.parametrize(("mode", "first_backoff_ms", "jitter"), [("2018", 100, 0.0), ("current", 50, 0.2)])
def test_router_retries_a_refused_dial_until_the_env_listens(tmp_path, probe_pkg, mode, first_backoff_ms, jitter):
    port = free_port()
    with running(FissionRouter(tmp_path, "--executor", "static", "--function-address", f"127.0.0.1:{port}",
                               "--router-mode", mode)) as router:
        result = {}

        def client():
            t0 = time.monotonic()
            result["resp"] = call(router.url, timeout=120)
            result["elapsed"] = time.monotonic() - t0

        thread = threading.Thread(target=client)
        thread.start()
        time.sleep(0.5)  # the request is in the retry ladder; now the (pre-specialized) env comes up
        prespecialized_state(tmp_path / f"userfunc-{port}", probe_pkg, "probe.main")
        with running(EnvServer(tmp_path, port=port, wait=False)):
            thread.join(120)
            assert result["resp"].status == 200
            assert result["resp"].json()["body_len"] == 1
        retries = router.events("router_retry")
        backoffs = [r["backoff_ms"] for r in retries]
        assert len(backoffs) >= 2
        assert backoffs == [first_backoff_ms * 2**i for i in range(len(backoffs))]
        # each retry was slept: the gaps between retries follow the ladder (jitter only adds, up to 20 %)
        gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(retries)]
        for gap, backoff in zip(gaps, backoffs, strict=False):
            assert backoff / 1000 * 0.95 <= gap <= backoff / 1000 * (1 + jitter) + 0.25
        assert result["elapsed"] >= 0.95 * sum(backoffs) / 1000
        (served,) = router.events("router")
        assert served["status"] == 200 and served["attempts"] == len(backoffs) + 1


def test_current_router_answers_504_at_the_function_timeout_and_2018_waits(tmp_path, probe_env):
    address = f"127.0.0.1:{probe_env.port}"
    with running(FissionRouter(tmp_path, "--executor", "static", "--function-address", address,
                               "--function-timeout", "1")) as router:
        t0 = time.monotonic()
        resp = call(router.url, sleep=3)
        assert resp.status == 504
        assert resp.body == b"no response from function before timeout"
        assert 0.9 <= time.monotonic() - t0 < 2.9
        assert router.events("router")[-1]["origin"] == "router"
    time.sleep(2.5)  # let the env finish that call
    with running(FissionRouter(tmp_path, "--executor", "static", "--function-address", address,
                               "--router-mode", "2018", "--function-timeout", "1")) as router:
        assert call(router.url, sleep=3).status == 200  # no function timeout in 2018


def test_errors_by_layer_name_who_made_each_failed_reply(tmp_path, probe_env):
    """The kind's log reader (errors by layer, Kind.error_origins) against the replies: the router's 504 carries its
    own body, the environment's 500 (the user code raised) is Flask's error page."""
    from collections import Counter

    from analysis.bench.kinds.fission import error_origins

    with running(FissionRouter(tmp_path, "--executor", "static", "--function-address",
                               f"127.0.0.1:{probe_env.port}", "--function-timeout", "1")) as router:
        # the environment serves one call at a time: the timed-out one goes last
        replies = [call(router.url), call(router.url, "/?sleep=not-a-number"), call(router.url, sleep=3)]
        expected = Counter("router" if r.body == b"no response from function before timeout" else
                           "function" if b"Internal Server Error" in r.body else "?"
                           for r in replies if not 200 <= r.status < 300)
        assert [r.status for r in replies] == [200, 500, 504]
        assert error_origins(router.stdout()) == expected == Counter(router=1, function=1)
    time.sleep(2.5)  # let the env finish the timed-out call


def test_2018_router_opens_one_connection_per_request_current_reuses_one(tmp_path, probe_env):
    address = f"127.0.0.1:{probe_env.port}"
    ports = {}
    for mode in ("2018", "current"):
        with running(FissionRouter(tmp_path, "--executor", "static", "--function-address", address,
                                   "--router-mode", mode)) as router:
            seen = [call(router.url).json()["client_ports"] for _ in range(6)]
        assert all(len(p) == 1 for p in seen), seen  # one connection open at the server during each call
        ports[mode] = {p[0] for p in seen}
    assert len(ports["2018"]) == 6, ports
    assert len(ports["current"]) == 1, ports


@pytest.mark.parametrize(("mode", "status"), [("current", 499), ("2018", 502)])
def test_a_client_that_goes_away_is_logged_by_the_router(tmp_path, probe_env, mode, status):
    with running(FissionRouter(tmp_path, "--executor", "static", "--function-address",
                               f"127.0.0.1:{probe_env.port}", "--router-mode", mode)) as router:
        with socket.create_connection(("127.0.0.1", router.port)) as sock:
            sock.sendall(b"POST /?sleep=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        while not router.events("router") and time.monotonic() < deadline:
            time.sleep(0.1)
        (event,) = router.events("router")
        assert (event["status"], event["origin"]) == (status, "router")
    time.sleep(1)  # the env finishes the abandoned call


def test_router_routes_only_its_trigger(tmp_path, probe_env):
    with running(FissionRouter(tmp_path, "--executor", "static", "--function-address",
                               f"127.0.0.1:{probe_env.port}", "--trigger-url", "/predict")) as router:
        assert call(router.url, "/predict").status == 200
        assert call(router.url, "/fission-function/predict").status == 200
        assert call(router.url, "/").status == 404
        assert request(router.url, "GET", "/router-healthz").status == 200


# ------------------------------------------------------------------------------------- the executors
def pool_router(tmp_path, probe_pkg, executor: str, *args: str) -> FissionRouter:
    return FissionRouter(tmp_path, "--executor", executor, "--package-dir", str(probe_pkg),
                         "--function-name", "probe.main", "--poolsize", "2", *args,
                         env={"PROBE_IMPORT_SLEEP": "1.5"})


def test_poolmgr_2018_specializes_one_pod_for_all_traffic(tmp_path, probe_pkg):
    with running(pool_router(tmp_path, probe_pkg, "poolmgr-2018")) as router:
        assert request(router.url, "GET", "/function-ready").status == 503
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: call(router.url, sleep=0.3, timeout=120), range(3)))
        assert [a.status for a in answers] == [200, 200, 200]
        assert len({a.json()["pid"] for a in answers}) == 1
        (cold,) = router.events("cold_start")
        assert cold["load_ms"] >= 1500  # the module-level code ran inside the specialization
        assert cold["first_200_ms"] >= cold["specialize_ms"] >= cold["load_ms"]
        assert cold["fetch_ms"] >= 0 and cold["choose_ms"] >= 0
        assert request(router.url, "GET", "/function-ready").status == 200
        children = env_children(router.process.pid)
        assert len(children) == 3  # the specialized pod and a refilled pool of 2
        took = router.stop()
        assert took < 5, f"SIGTERM took {took:.1f} s"
        assert router.process.returncode == 0
        time.sleep(0.2)
        assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_poolmgr_specializes_a_pod_per_concurrent_request_up_to_the_limit(tmp_path, probe_pkg):
    with running(pool_router(tmp_path, probe_pkg, "poolmgr", "--max-specialized", "2")) as router:
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: call(router.url, sleep=0.5, timeout=120), range(3)))
        statuses = sorted(a.status for a in answers)
        assert statuses == [200, 200, 429], statuses
        assert len({a.json()["pid"] for a in answers if a.status == 200}) == 2
        assert b"error sending request to function" in next(a.body for a in answers if a.status == 429)
        assert len(router.events("cold_start")) == 2
        # later calls reuse the idle specialized pods: no more cold starts
        assert call(router.url).status == 200
        assert len(router.events("specialized")) == 2


# ------------------------------------------------------------------------------------- the real function
def test_a_prediction_through_router_and_env_equals_the_inference_core(tmp_path, trained_model_dir, sample_jpegs):
    from model.inference import RESULT_JSON_LENGTH, Predictor

    jpeg = sample_jpegs["food"]
    with running(FissionRouter(tmp_path, "--executor", "poolmgr-2018", "--poolsize", "1",
                               env={"MODEL_DIR": str(trained_model_dir), "MAX_BODY_BYTES": "500000",
                                    "WARMUP_CALLS": "1"})) as router:
        resp = request(router.url, "POST", "/", body=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=300)
        assert resp.status == 200, resp.body[:500]
        assert len(resp.body) == RESULT_JSON_LENGTH
        got = resp.json()
        (cold,) = router.events("cold_start")
        bad = {
            "not an image": (b"plain text, not a picture", "image/jpeg", 400, "not_an_image"),
            "truncated": (jpeg[: len(jpeg) // 3], "image/jpeg", 400, "truncated_image"),
            "oversized": (b"\xff" * 600_000, "image/jpeg", 413, "body_too_large"),
            "content type": (jpeg, "text/plain", 415, "unsupported_content_type"),
        }
        for name, (body, ctype, status, code) in bad.items():
            answer = request(router.url, "POST", "/", body=body, headers={"Content-Type": ctype})
            assert (answer.status, answer.json()["error"]) == (status, code), name
            assert answer.headers["content-type"] == "application/json"
        predictions = [json.loads(line) for line in router.stdout().splitlines()
                       if line.startswith('{"event": "prediction"')]
        assert predictions and predictions[-1]["platform"] == "fission"
    print(f"\nspecialization with the test model: {json.dumps(cold)}")
    direct = Predictor(trained_model_dir, backend="keras").predict_bytes(jpeg)
    assert got["label"] == direct["label"]
    assert got["model_sha256"] == direct["model_sha256"]
    for label, score in direct["scores"].items():
        assert got["scores"][label] == pytest.approx(score, abs=1e-5)


# ------------------------------------------------------------------------------------- static checks
SPEC_DIR = FISSION_DIR / "specs"
# Field names of fission/fission v1.26.0 crds/v1/fission.io_*.yaml (required ones marked by the CRD), for the
# parts these specs use; ArchiveUploadSpec and DeploymentConfig are the CLI's spec-only kinds
# (pkg/fission-cli/cmd/spec/types).
CRD = {
    "Environment": {"required": ["runtime", "version"], "runtime_required": ["image"],
                    "fields": {"runtime", "version", "builder", "poolsize", "resources", "keeparchive",
                               "terminationGracePeriod", "allowedFunctionsPerContainer",
                               "allowAccessToExternalNetwork", "imagepullsecret"}},
    "Package": {"required": ["environment"], "fields": {"environment", "source", "deployment", "buildcmd"}},
    "Function": {"required": ["InvokeStrategy", "environment", "package"],
                 "fields": {"InvokeStrategy", "environment", "package", "concurrency", "requestsPerPod",
                            "functionTimeout", "idletimeout", "resources", "secrets", "configmaps", "podspec",
                            "onceOnly", "retainPods", "streaming", "tool"}},
    "HTTPTrigger": {"required": ["functionref"],
                    "fields": {"functionref", "host", "relativeurl", "method", "methods", "prefix", "keepPrefix",
                               "createingress", "ingressconfig", "routeConfig", "corsConfig"}},
}


def spec_documents() -> list[dict]:
    docs = []
    for path in sorted(SPEC_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_specs_use_the_fission_crd_fields():
    docs = spec_documents()
    kinds = [d["kind"] for d in docs]
    assert {"Environment", "Package", "Function", "HTTPTrigger"} <= set(kinds)
    for doc in docs:
        name = doc.get("metadata", {}).get("name")
        if doc["kind"] == "ArchiveUploadSpec":
            assert doc["apiVersion"] == "fission.io/v1" and doc["include"] and doc["name"]
            continue
        if doc["kind"] == "DeploymentConfig":
            assert doc["apiVersion"] == "fission.io/v1" and doc["name"] and doc["uid"]
            continue
        assert doc["apiVersion"] == "fission.io/v1", name
        crd = CRD[doc["kind"]]
        spec = doc["spec"]
        assert set(crd["required"]) <= set(spec), (name, crd["required"])
        assert set(spec) <= crd["fields"], (name, set(spec) - crd["fields"])
        if doc["kind"] == "Environment":
            assert spec["version"] in (1, 2, 3) and spec["runtime"]["image"]
        if doc["kind"] == "Function":
            strategy = spec["InvokeStrategy"]
            assert strategy["StrategyType"] == "execution"
            assert strategy["ExecutionStrategy"]["ExecutorType"] == "poolmgr"
            assert spec["package"]["functionName"] == "package.handler.main"
            assert spec["environment"]["namespace"] and spec["package"]["packageref"]["name"]
        if doc["kind"] == "HTTPTrigger":
            assert spec["functionref"]["type"] == "name" and spec["functionref"]["name"]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs if "metadata" in d}
    for doc in docs:  # references resolve inside the spec set
        if doc["kind"] == "Function":
            assert ("Package", doc["spec"]["package"]["packageref"]["name"]) in names
            assert ("Environment", doc["spec"]["environment"]["name"]) in names
        if doc["kind"] == "HTTPTrigger":
            assert ("Function", doc["spec"]["functionref"]["name"]) in names


def test_the_bench_knows_both_fission_kinds():
    from analysis.bench import platforms

    for name in ("fission-2018", "fission"):
        kind = platforms.get(name)
        assert kind.role == "function"
        assert kind.warmup_env == "WARMUP_CALLS"
        assert "fission" in kind.upstream


def test_the_overhead_script_explains_itself():
    out = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "fission-overhead.py"), "--help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "--requests" in out and "--concurrency" in out
