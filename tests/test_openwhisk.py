"""OpenWhisk (function/openwhisk/): the action-loop proxy, the front with the controller's and the invoker's rules,
and the prediction action, as real processes on 127.0.0.1.

The proxy's rules are driven against runtime/proxy.py alone (second /init -> 403, build failure -> 502, non-dict
result -> 502, an exited action -> 400, the end-of-activation sentinel on stdout and stderr); the front's with a
probe action (tests/fixtures_openwhisk.py) and short limits set by flags: one activation per container, the pool
sized by memory with its buffer, time limit -> 502 and the container replaced, 202 after the blocking wait, 429 at
the default namespace limits, pausing after idle. The model runs once, through the front, the proxy and the
launcher, and must give model/inference.py's own prediction. Static checks: the image's dependency stage, the
cluster definitions (wskdeploy manifest, Helm values), the bench kind, the overhead script.

Not run here: the Docker image (no engine is used by this suite) and the cluster definitions (validated only).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.fixtures_openwhisk import (
    OPENWHISK_DIR,
    PROBE,
    REPO_ROOT,
    SENTINEL,
    init_body,
    process_state,
    running,
    start_front,
    start_proxy,
    write_probe,
    zip_of,
)
from tests.http_client import request

WEB = "/api/v1/web/guest/default/predict"
INVOKE = "/api/v1/namespaces/guest/actions/predict"
JSON = {"Content-Type": "application/json"}


def invoke(url: str, params: dict, blocking: bool = True, timeout: float = 60, query: str = ""):
    flags = f"?blocking={'true' if blocking else 'false'}&result=true{query}"
    return request(url, "POST", INVOKE + flags, body=json.dumps(params).encode(), headers=JSON, timeout=timeout)


def wait_until(check, timeout_s: float, what: str, poll_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


# ------------------------------------------------------------------------------------------- the proxy
@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """One action container's proxy, initialized with the probe."""
    with running(start_proxy(tmp_path_factory.mktemp("proxy"))) as proc:
        resp = request(proc.url, "POST", "/init", body=init_body(zip_of(PROBE), env={"PROBE_INIT_SLEEP": "0"}))
        assert (resp.status, resp.json()) == (200, {"ok": True})
        yield proc


def run(url: str, value: dict, **extra):
    return request(url, "POST", "/run", body=json.dumps({"value": value, **extra}).encode(), timeout=30)


def test_a_second_init_is_403(proxy):
    again = request(proxy.url, "POST", "/init", body=init_body(zip_of(PROBE)))
    assert again.status == 403
    assert again.json() == {"error": "Cannot initialize the action more than once."}
    assert run(proxy.url, {"mode": "echo"}).status == 200  # the first action still serves


def test_run_calls_main_with_value_and_the_rest_as_ow_variables(proxy):
    resp = run(proxy.url, {"mode": "echo", "n": 1}, activation_id="a1b2", namespace="guest", deadline="123")
    assert resp.status == 200 and resp.headers["content-type"] == "application/json"
    seen = resp.json()
    assert seen["params"] == {"mode": "echo", "n": 1}
    assert seen["ow_env"]["__OW_ACTIVATION_ID"] == "a1b2" and seen["ow_env"]["__OW_NAMESPACE"] == "guest"
    assert seen["ow_env"]["__OW_PROXY_VERSION"] == "1.17.1"
    assert seen["ow_env"]["__OW_EXECUTION_ENV"] == "openwhisk/action-python-v3.11"
    # the action process gets the __OW_ variables and /init's env only, not the container's environment
    assert "PYTHONPATH" not in seen["env_keys"] and "OW_COMPILER" not in seen["env_keys"]
    assert "PROBE_INIT_SLEEP" in seen["env_keys"]
    # the module was imported once, at /init: the same process and load time on every run
    again = run(proxy.url, {}).json()
    assert (again["pid"], again["loaded_at"]) == (seen["pid"], seen["loaded_at"])


def test_a_non_dict_result_is_502_and_an_exception_an_error_field(proxy):
    resp = run(proxy.url, {"mode": "string"})
    assert resp.status == 502
    assert resp.json() == {"error": "The action did not return a dictionary or array."}
    failed = run(proxy.url, {"mode": "raise"})
    assert (failed.status, failed.json()) == (200, {"error": "the probe failed"})
    assert "ValueError: the probe failed" in proxy.stderr()


def test_each_run_ends_with_the_sentinel_on_stdout_and_stderr(proxy):
    before_out, before_err = proxy.stdout().count(SENTINEL), proxy.stderr().count(SENTINEL)
    assert run(proxy.url, {"mode": "echo", "tag": "t-42"}).status == 200
    out = wait_until(lambda: proxy.stdout().count(SENTINEL) > before_out and proxy.stdout(), 5, "the sentinel")
    err = wait_until(lambda: proxy.stderr().count(SENTINEL) > before_err and proxy.stderr(), 5, "the sentinel")
    # the action's own lines come first, then the sentinel that closes the activation's log
    assert out.index("probe stdout t-42") < out.rindex(SENTINEL)
    assert err.index("probe stderr t-42") < err.rindex(SENTINEL)
    assert out.count(SENTINEL) == before_out + 1 and err.count(SENTINEL) == before_err + 1


def test_an_action_that_exits_is_400_then_500(tmp_path):
    with running(start_proxy(tmp_path)) as proc:
        assert request(proc.url, "POST", "/run", body=b'{"value": {}}').status == 500  # not initialized
        assert request(proc.url, "POST", "/init", body=init_body(PROBE)).status == 200  # plain source, not a zip
        gone = run(proc.url, {"mode": "exit"})
        assert (gone.status, gone.json()) == (400, {"error": "command exited"})
        after = run(proc.url, {})
        assert (after.status, after.json()) == (500, {"error": "no action defined yet"})


@pytest.mark.parametrize(("code", "logged"), [
    ("def main(args:\n    return {}\n", "was never closed"),  # the compiler's check: a build failure
    ("import no_such_module_here\n\ndef main(args):\n    return args\n", "Command exited abruptly"),  # no ack
])
def test_a_build_failure_is_502_with_the_details_in_the_log(tmp_path, code, logged):
    with running(start_proxy(tmp_path)) as proc:
        resp = request(proc.url, "POST", "/init", body=init_body(code))
        assert resp.status == 502
        assert resp.json()["error"] in ("The action failed to generate or locate a binary. See logs for details.",
                                        "Cannot start action. Check logs for details.")
        err = wait_until(lambda: SENTINEL in proc.stderr() and proc.stderr(), 5, "the logged error")
        assert logged in err
        # not initialized: a fixed action may still be sent
        assert request(proc.url, "POST", "/init", body=init_body(zip_of(PROBE))).status == 200


# ------------------------------------------------------------------------------------------- the front
@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    return write_probe(tmp_path_factory.mktemp("probe-action"))


@pytest.fixture(scope="module")
def front(tmp_path_factory, probe_dir):
    """Two containers (512 MB of 1024), a 1 s time limit, a 2 s blocking wait, pause after 0.4 s idle."""
    proc = start_front(tmp_path_factory.mktemp("front"), probe_dir, "--memory-mb", "512", "--user-memory-mb", "1024",
                       "--time-limit-s", "1", "--max-wait-s", "2", "--pause-grace-s", "0.4",
                       "--invocations-per-minute", "100000", "--concurrent-invocations", "1000")
    with running(proc):
        yield proc


def pool(front) -> dict:
    return request(front.url, "GET", "/kde/pool").json()


def test_cold_start_then_warm_reuse_one_activation_per_container(front):
    first = invoke(front.url, {"mode": "echo"})
    assert first.status == 200
    with ThreadPoolExecutor(3) as threads:
        answers = list(threads.map(lambda _: invoke(front.url, {"mode": "sleep", "s": 0.3}), range(3)))
    assert [a.status for a in answers] == [200, 200, 200]
    pids = [a.json()["pid"] for a in answers]
    # two containers (1024 // 512): the third call waited in the invoker's buffer for one of them
    assert len(set(pids)) == 2 and first.json()["pid"] in pids
    starts = sorted(a.json()["started"] for a in answers)
    assert starts[2] - starts[0] >= 0.28  # never two activations at once in one container
    activations = front.events("activation")[-3:]
    assert sorted(a["cold"] for a in activations) == [False, False, True]
    assert max(a["wait_ms"] for a in activations) >= 250
    cold = next(a for a in front.events("activation") if a["cold"])
    assert cold["init_ms"] > 0 and cold["start_ms"] > 0
    state = pool(front)
    assert state["capacity"] == 2 and len(state["containers"]) == 2


def test_an_idle_container_is_paused_and_resumed(front):
    seen = invoke(front.url, {"mode": "echo"}).json()
    proxy_pid = seen["ppid"]
    wait_until(lambda: process_state(proxy_pid) == "T" and process_state(seen["pid"]) == "T", 5,
               "the container paused (its processes stopped)")
    assert any(e["state"] == "paused" for e in front.events("container"))
    again = invoke(front.url, {"mode": "echo"})
    assert again.status == 200
    assert front.events("activation")[-1]["cold"] is False
    assert any(e["state"] == "resumed" for e in front.events("container"))


def test_the_time_limit_is_502_and_the_container_is_replaced(front):
    assert invoke(front.url, {"mode": "echo"}).status == 200
    slow = invoke(front.url, {"mode": "sleep", "s": 4})
    assert slow.status == 502
    assert slow.json() == {"error": "The action exceeded its time limits of 1000 milliseconds."}
    event = front.events("activation")[-1]
    assert (event["status"], event["origin"]) == ("action developer error", "invoker")
    destroyed = [e for e in front.events("container") if e["state"] == "destroyed"]
    assert destroyed and "exceeded its time limits" in destroyed[-1]["reason"]
    gone = event["pid"]
    wait_until(lambda: process_state(gone) is None, 5, "the destroyed container's process gone")
    # the next calls run, one of them in a new container (a cold start)
    with ThreadPoolExecutor(2) as threads:
        answers = list(threads.map(lambda _: invoke(front.url, {"mode": "sleep", "s": 0.3}), range(2)))
    assert [a.status for a in answers] == [200, 200]
    assert any(a["cold"] for a in front.events("activation")[-2:])
    assert gone not in {a.json()["ppid"] for a in answers}


def test_a_non_dict_result_is_502_and_destroys_the_container(front):
    resp = invoke(front.url, {"mode": "string"})
    assert resp.status == 502
    assert resp.json() == {"error": "The action did not return a dictionary or array."}
    assert front.events("activation")[-1]["origin"] == "proxy"
    assert "did not return a dictionary" in front.events("container")[-1]["reason"]
    # through the web action, a developer error is the controller's 400
    web = request(front.url, "POST", WEB, body=b'{"mode": "string"}', headers=JSON)
    assert (web.status, web.json()["error"]) == (400, "There was an error processing your request.")


def test_a_blocking_call_past_the_wait_is_202_with_the_activation_id(front, tmp_path, probe_dir):
    # an invoke's ?timeout may shorten the wait (never lengthen it): 300 ms for a 0.6 s activation
    queued = invoke(front.url, {"mode": "sleep", "s": 0.6}, query="&timeout=300")
    assert queued.status == 202 and set(queued.json()) == {"activationId"}
    activation = queued.headers["x-openwhisk-activation-id"]
    assert activation == queued.json()["activationId"] and re.fullmatch(r"[0-9a-f]{32}", activation)
    # the activation goes on; its record is there once it has ended
    path = f"/api/v1/namespaces/guest/activations/{activation}"
    record = wait_until(lambda: (r := request(front.url, "GET", path)).status == 200 and r.json(), 10, "the record")
    assert record["response"]["status"] == "success" and record["response"]["result"]["params"]["s"] == 0.6
    assert invoke(front.url, {"mode": "echo"}, blocking=False).status == 202  # non-blocking: at once
    # a web action waits max-wait-for-blocking-activation (0.5 s here), then answers "Response not yet ready."
    with running(start_front(tmp_path, probe_dir, "--max-wait-s", "0.5")) as short:
        resp = request(short.url, "POST", WEB, body=b'{"mode": "sleep", "s": 1}', headers=JSON, timeout=30)
        assert resp.status == 202
        assert resp.json()["error"] == "Response not yet ready."
        assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-openwhisk-activation-id"])
        wait_until(lambda: short.events("activation"), 10, "the activation's end")
        assert short.events("activation")[0]["status"] == "success"


def test_web_action_params_carry_the_raw_body_base64_encoded(front):
    photo = bytes(range(256)) * 10
    resp = request(front.url, "POST", WEB + ".json?tag=q", body=photo, headers={"Content-Type": "image/jpeg"})
    assert resp.status == 200
    params = resp.json()["params"]
    assert base64.b64decode(params["__ow_body"]) == photo
    assert params["__ow_method"] == "post" and params["__ow_headers"]["content-type"] == "image/jpeg"
    assert params["tag"] == "q"
    text = request(front.url, "POST", WEB + ".json", body=b"plain words", headers={"Content-Type": "text/plain"})
    assert text.json()["params"]["__ow_body"] == "plain words"
    # the .http result is the HTTP answer: statusCode, headers, body as is
    http = request(front.url, "POST", WEB, body=b'{"mode": "http", "code": 415, "body": "{\\"x\\": 1}"}', headers=JSON)
    assert (http.status, http.body, http.headers["content-type"]) == (415, b'{"x": 1}', "application/json")
    assert request(front.url, "POST", "/api/v1/web/guest/default/other", body=b"{}").status == 404
    big = request(front.url, "POST", WEB, body=b"\0" * (1024 * 1024 + 1), headers={"Content-Type": "image/jpeg"})
    assert big.status == 413
    assert big.json()["error"] == "Request larger than allowed: 1048577 > 1048576 bytes."


def test_the_default_namespace_limits_answer_429(tmp_path, probe_dir):
    """60 invocations a minute and 30 in flight: what the benchmark would hit without raising them."""
    second = time.time() % 60
    if second > 48:  # the rate counter is per clock minute: start well inside one
        time.sleep(60.5 - second)
    with running(start_front(tmp_path, probe_dir, "--memory-mb", "256", "--user-memory-mb", "1024")) as proc:
        with ThreadPoolExecutor(31) as threads:  # 4 containers: the other activations wait in the invoker's buffer
            answers = list(threads.map(lambda _: invoke(proc.url, {"mode": "sleep", "s": 0.3}), range(31)))
        statuses = sorted(a.status for a in answers)
        assert statuses == [200] * 30 + [429], statuses
        refused = next(a for a in answers if a.status == 429).json()
        assert refused["error"] == "Too many concurrent requests in flight (count: 30, allowed: 30)."
        # 31 counted in this minute; 29 more pass, the 61st of the minute is refused
        for _ in range(29):
            assert invoke(proc.url, {"mode": "echo"}).status == 200
        over = invoke(proc.url, {"mode": "echo"})
        assert over.status == 429
        assert over.json()["error"] == "Too many requests in the last minute (count: 60, allowed: 60)."
        assert request(proc.url, "GET", WEB).status == 429  # web actions count too
        assert pool(proc)["rejected"] == {"rate": 2, "concurrency": 1}
        # the bench reads the same lines to put each failed POST under its layer
        from analysis.bench import platforms

        assert platforms.get("openwhisk").error_origins(proc.stdout()) == {"controller": 2}


def test_the_time_limit_applies_to_init_too(tmp_path, probe_dir):
    """A module-level load slower than the limit: 502 "... during initialization.", and no container is left."""
    with running(start_front(tmp_path, probe_dir, "--time-limit-s", "0.5", "--init-env", "PROBE_INIT_SLEEP",
                             PROBE_INIT_SLEEP="3")) as proc:
        resp = invoke(proc.url, {"mode": "echo"})
        assert resp.status == 502
        message = "The action exceeded its time limits of 500 milliseconds during initialization."
        assert resp.json() == {"error": message}
        assert proc.events("activation")[-1]["cold"] is True
        assert pool(proc)["containers"] == []


def test_the_front_stops_its_containers_on_sigterm(tmp_path, probe_dir):
    proc = start_front(tmp_path, probe_dir)
    with running(proc):
        pid = invoke(proc.url, {"mode": "echo"}).json()["pid"]
        assert process_state(pid) is not None
        took = proc.stop()
    assert took < 5 and proc.process.returncode == 0
    wait_until(lambda: process_state(pid) is None, 5, "the action process gone")


# ------------------------------------------------------------------------------------------- the model
def test_a_prediction_through_front_proxy_and_launcher_equals_the_inference_core(
    tmp_path, trained_model_dir, sample_jpegs
):
    from model.inference import RESULT_JSON_LENGTH, Predictor

    photo = sample_jpegs["menu"]
    front = start_front(tmp_path, OPENWHISK_DIR / "action", "--memory-mb", "768", MODEL_DIR=str(trained_model_dir),
                        WARMUP_CALLS="1", MAX_BODY_BYTES="500000", PLATFORM_NAME="openwhisk")
    with running(front):
        served = request(front.url, "POST", WEB, body=photo, headers={"Content-Type": "image/jpeg"}, timeout=300)
        assert served.status == 200, served.body[:500]
        assert len(served.body) == RESULT_JSON_LENGTH
        assert served.headers["content-type"] == "application/json"
        result = served.json()
        bad = {
            "not an image": (b"plain text, not a picture", "image/jpeg", 400, "not_an_image"),
            "truncated": (photo[: len(photo) // 3], "image/jpeg", 400, "truncated_image"),
            "oversized": (b"\xff" * 600_000, "image/jpeg", 413, "body_too_large"),
            "content type": (photo, "text/plain", 415, "unsupported_content_type"),
        }
        for name, (body, ctype, status, code) in bad.items():
            answer = request(front.url, "POST", WEB, body=body, headers={"Content-Type": ctype})
            assert (answer.status, answer.json()["error"]) == (status, code), name
        plain = invoke(front.url, {"image": base64.b64encode(photo).decode()})
        assert plain.status == 200 and json.loads(plain.json()["body"])["label"] == result["label"]
        activations = front.events("activation")
        assert activations[0]["cold"] is True and all(a["cold"] is False for a in activations[1:])
        assert {a["container"] for a in activations} == {activations[0]["container"]}
        predictions = front.events("prediction")
        assert predictions and predictions[0]["platform"] == "openwhisk" and predictions[0]["activation_id"]
    print(f"\ncold start with the test model: {json.dumps(activations[0])}")
    direct = Predictor(trained_model_dir, backend="keras").predict_bytes(photo)
    assert result["label"] == direct["label"] and result["model_sha256"] == direct["model_sha256"]
    for label, score in direct["scores"].items():
        assert result["scores"][label] == pytest.approx(score, abs=1e-5)


def test_the_model_load_is_guarded_against_the_2018_re_execution(monkeypatch, trained_model_dir, sample_jpegs):
    """The 2018 runtime exec'd the whole action module again before every main(): the loaded model must survive."""
    monkeypatch.setenv("MODEL_DIR", str(trained_model_dir))
    monkeypatch.setenv("MODEL_BACKEND", "litert")
    monkeypatch.setenv("WARMUP_CALLS", "0")
    code = compile((OPENWHISK_DIR / "action" / "__main__.py").read_text(), "__main__.py", "exec")
    scope: dict = {"__name__": "__main__"}
    exec(code, scope)  # what pythonrunner.py does at /init
    loaded = scope["PREDICTOR"]
    params = {"__ow_body": base64.b64encode(sample_jpegs["food"]).decode(), "__ow_method": "post",
              "__ow_headers": {"content-type": "image/jpeg"}, "__ow_path": ""}
    for _ in range(2):
        exec(code, scope)  # and before every /run
        answer = scope["main"](params)
        assert answer["statusCode"] == 200 and json.loads(answer["body"])["backend"] == "litert"
    assert scope["PREDICTOR"] is loaded


# ------------------------------------------------------------------------------------------- static checks
def test_the_image_shares_the_dependency_stage_with_the_other_images():
    def first_stage(path: Path) -> list[str]:
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
        end = next(i for i, line in enumerate(lines) if line.startswith("FROM ${BASE_IMAGE}") and " AS " not in line)
        return lines[: end + 3]

    ours = first_stage(OPENWHISK_DIR / "Dockerfile")
    assert ours == first_stage(REPO_ROOT / "function" / "kubeless" / "Dockerfile")
    assert ours == first_stage(REPO_ROOT / "image" / "Dockerfile")
    text = (OPENWHISK_DIR / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python3", "/opt/openwhisk/runtime/controller.py"]' in text
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in copied.split():
            if source != "\\" and "$" not in source and not source.startswith("build/"):  # build/: made by setup
                assert (REPO_ROOT / source).exists(), source
    env = dict(re.findall(r"^(?:ENV)?\s+(OW_\w+|OPENWHISK_\w+)=(\S+)", text, re.M))
    assert env["OW_WAIT_FOR_ACK"] == "1" and env["OW_EXECUTION_ENV"] == "openwhisk/action-python-v3.11"
    assert int(env["OPENWHISK_USER_MEMORY_MB"]) // int(env["OPENWHISK_ACTION_MEMORY_MB"]) == 2


# the keys of apache/openwhisk-deploy-kube helm/openwhisk/values.yaml (chart 1.0.1 at 108f327) these values set
CHART_KEYS = {
    ("whisk", "limits", "actionsInvokesPerminute"), ("whisk", "limits", "actionsInvokesConcurrent"),
    ("whisk", "limits", "actions", "time", "min"), ("whisk", "limits", "actions", "time", "max"),
    ("whisk", "limits", "actions", "time", "std"), ("whisk", "limits", "actions", "memory", "min"),
    ("whisk", "limits", "actions", "memory", "max"), ("whisk", "limits", "actions", "memory", "std"),
    ("whisk", "limits", "actions", "concurrency", "min"), ("whisk", "limits", "actions", "concurrency", "max"),
    ("whisk", "limits", "actions", "concurrency", "std"), ("whisk", "limits", "activation", "payload", "max"),
    ("whisk", "containerPool", "userMemory"),
}
# wskdeploy's action keys (apache/openwhisk-wskdeploy specification, manifest "Action" entity)
WSKDEPLOY_ACTION_KEYS = {"function", "code", "runtime", "docker", "main", "inputs", "outputs", "limits", "web",
                         "web-export", "raw-http", "annotations", "native", "sequence", "version"}
WSKDEPLOY_LIMITS = {"timeout", "memorySize", "logSize", "concurrentActivations", "userInvocationRate", "codeSize",
                    "parameterSize"}


def leaves(tree: dict, prefix: tuple = ()) -> dict[tuple, object]:
    out = {}
    for key, value in tree.items():
        out.update(leaves(value, (*prefix, key)) if isinstance(value, dict) else {(*prefix, key): value})
    return out


def megabytes(text: str) -> int:
    assert text.endswith("m"), text
    return int(text[:-1])


def test_the_cluster_definitions_agree_with_the_local_settings():
    values = leaves(yaml.safe_load((OPENWHISK_DIR / "deploy" / "values-kde.yaml").read_text()))
    assert set(values) <= CHART_KEYS, set(values) - CHART_KEYS
    manifest = yaml.safe_load((OPENWHISK_DIR / "deploy" / "manifest.yaml").read_text())
    (package,) = manifest["packages"].values()
    action = package["actions"]["predict"]
    assert set(action) <= WSKDEPLOY_ACTION_KEYS and set(action["limits"]) <= WSKDEPLOY_LIMITS
    assert action["main"] == "main" and action["web-export"] is True and action["function"].endswith(".zip")
    limits = action["limits"]
    low, high = (megabytes(values[("whisk", "limits", "actions", "memory", k)]) for k in ("min", "max"))
    assert low <= limits["memorySize"] <= high
    assert limits["concurrentActivations"] == values[("whisk", "limits", "actions", "concurrency", "max")] == 1
    assert megabytes(values[("whisk", "containerPool", "userMemory")]) // limits["memorySize"] == 2
    # the same numbers as the local image and role
    docker = (OPENWHISK_DIR / "Dockerfile").read_text()
    assert f"OPENWHISK_ACTION_MEMORY_MB={limits['memorySize']}" in docker
    assert f"OPENWHISK_TIME_LIMIT_S={limits['timeout'] // 1000}" in docker
    role = yaml.safe_load((REPO_ROOT / "roles" / "kind_openwhisk" / "defaults" / "main.yml").read_text())
    raised = role["kind_openwhisk_env"]
    assert int(raised["OPENWHISK_INVOCATIONS_PER_MINUTE"]) == values[("whisk", "limits", "actionsInvokesPerminute")]
    assert int(raised["OPENWHISK_CONCURRENT_INVOCATIONS"]) == values[("whisk", "limits", "actionsInvokesConcurrent")]
    action_image = (OPENWHISK_DIR / "deploy" / "action.Dockerfile").read_text()
    assert "ARG RUNTIME_IMAGE=openwhisk/action-python-v3.11:" in action_image


def test_the_kind_and_the_inventory_entry():
    from analysis.bench import platforms

    kind = platforms.get("openwhisk")
    assert kind.role == "function" and kind.warmup_env == "WARMUP_CALLS" and kind.body_limit_check
    lines = [{"event": "request", "method": "POST", "status": s, "origin": o} for s, o in
             ((200, "action"), (400, "action"), (502, "invoker"), (400, "proxy"), (429, "controller"))]
    log = "\n".join(["XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX", *map(json.dumps, lines),
                      '{"event": "request", "method": "GET", "status": 404, "origin": "controller"}'])
    assert kind.error_origins(log) == {"function": 1, "invoker": 1, "proxy": 1, "controller": 1}
    inventory = yaml.safe_load((REPO_ROOT / "inventory" / "local" / "group_vars" / "all.yml").read_text())
    names = [p["name"] for p in inventory["platforms"]]
    entry = inventory["platforms"][names.index("openwhisk")]
    assert names[names.index("openwhisk") - 1] == "fission"
    assert entry["optional"] is True and entry["url"].endswith(WEB) and inventory["openwhisk_port"] == 30087


def test_the_overhead_script_explains_itself():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "openwhisk-overhead.py"), "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert "--concurrency" in done.stdout and "--requests" in done.stdout

