"""The local ingress (roles/local_ingress, issue 11): the real nginx with the configuration the role renders, in front
of the real Kubeless runtime serving the real function and model, as ingress-nginx 0.16.2 renders an HTTPTrigger's
Ingress: the rewrite of /<path> to /, the default backend's 404 elsewhere, the 1 MiB body limit answered by nginx
itself with 413 (and the bench's layer attribution saying so), and upstream requests sent with Connection: close.

Needs Debian's nginx (.ci/run installs nginx-light); skipped without it, failed under CI=true.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import jinja2
import pytest
import yaml

from analysis.bench import layers
from tests.fixtures_function import REPO_ROOT, function_server, photo, request
from tests.http_client import free_port, wait_for

ROLE = REPO_ROOT / "roles" / "local_ingress"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def nginx_bin() -> str:
    if not Path(NGINX).exists():
        if os.environ.get("CI"):
            pytest.fail("nginx is missing: .ci/run installs nginx-light")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return NGINX


def render(folder: Path, upstream_port: int, listen_port: int, **overrides: object) -> Path:
    """nginx.conf from the role's template with the role's defaults (the 0.16.2 values), as the role renders it."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = {k: v for k, v in defaults.items() if not (isinstance(v, str) and "{{" in v)}
    values.update({
        "ansible_managed": "rendered by tests/test_local_ingress.py",
        "local_ingress_dir": str(folder), "local_ingress_bind": "127.0.0.1", "local_ingress_port": listen_port,
        "local_ingress_host": "127.0.0.1", "local_ingress_path": "predict", "local_ingress_namespace": "default",
        "local_ingress_name": "kde-function", "local_ingress_service": "kde-function",
        "local_ingress_upstream_name": "default-kde-function-8080", "local_ingress_service_port": upstream_port,
        "local_ingress_upstream_address": "127.0.0.1", "local_ingress_worker_processes": 2,
        "local_ingress_backlog_value": 511, "local_ingress_temp_dir": str(folder / "temp"), **overrides,
    })
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = env.from_string((ROLE / "templates" / "nginx.conf.j2").read_text()).render(**values)
    # the same upstream server line the role writes, with the test runtime's port for the Service port
    conf = folder / "nginx.conf"
    conf.write_text(text)
    return conf


@pytest.fixture(scope="module")
def stack(tmp_path_factory, trained_model_dir, nginx_bin):
    """The runtime with the real function on 127.0.0.1, and nginx in front of it on another port."""
    logs = tmp_path_factory.mktemp("runtime-logs")
    # nginx's workers (nobody, when the tests run as root) write the body temp files: a folder they can reach
    folder = Path(tempfile.mkdtemp(prefix="kde-ingress-test-"))
    folder.chmod(0o755)
    (folder / "temp").mkdir(mode=0o755)
    with function_server(logs, trained_model_dir) as runtime:
        port = free_port()
        conf = render(folder, runtime.port, port)
        check = subprocess.run([nginx_bin, "-t", "-c", str(conf)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        subprocess.run([nginx_bin, "-c", str(conf)], check=True, timeout=30)
        pid = None
        try:
            for _ in range(100):
                if (folder / "nginx.pid").exists() and (folder / "nginx.pid").read_text().strip():
                    pid = int((folder / "nginx.pid").read_text())
                    break
                time.sleep(0.05)
            assert pid, "nginx wrote no pid file"
            yield {"runtime": runtime, "url": f"http://127.0.0.1:{port}", "folder": folder, "conf": conf}
        finally:
            if pid:
                os.kill(pid, signal.SIGQUIT)
                for _ in range(100):
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.05)
            shutil.rmtree(folder, ignore_errors=True)


def _access_lines(folder: Path) -> list[str]:
    time.sleep(0.2)
    return (folder / "access.log").read_text().splitlines()


def test_the_rendered_configuration_carries_the_0_16_2_defaults(stack) -> None:
    conf = stack["conf"].read_text()
    for directive in ('client_max_body_size                    "1m";', "proxy_connect_timeout                   5s;",
                      "proxy_read_timeout                      60s;", "proxy_send_timeout                      60s;",
                      'proxy_buffering                         "off";', 'proxy_request_buffering                 "on";',
                      "proxy_next_upstream                     error timeout;",
                      "proxy_next_upstream_tries               3;", "keepalive 32;", "least_conn;",
                      "Connection        $connection_upgrade;", "rewrite /predict/(.*) /$1 break;",
                      "rewrite /predict / break;", "location ~* ^/predict\\/?(?<baseuri>.*)"):
        assert directive in conf, directive


def test_a_photo_through_the_ingress_is_predicted_by_the_function(stack, sample_jpegs) -> None:
    before = stack["runtime"].stdout().count('"POST / ')
    resp = request(stack["url"], "POST", "/predict", sample_jpegs["food"], {"Content-Type": "image/jpeg"})
    assert resp.status == 200, resp.body[:300]
    assert resp.json()["label"] in ("food", "drink", "menu", "inside", "outside")
    assert resp.headers.get("server", "").startswith("nginx")
    # the rewrite sent it to the runtime's "/" (alpha.8 serves only "/"), over HTTP/1.1 with Connection: close
    wait_for(lambda: stack["runtime"].stdout().count('"POST / ') > before, 10, "the runtime's access line")
    assert stack["runtime"].stdout().count('"POST / HTTP/1.1" 200') >= 1
    assert stack["runtime"].stdout().count('"POST / ') == before + 1
    line = _access_lines(stack["folder"])[-1]
    assert '"POST /predict HTTP/1.1" 200 256' in line and "[default-kde-function-8080]" in line
    assert line.split()[-2] == "200"  # $upstream_status: the runtime answered


def test_the_runtimes_other_routes_are_reached_under_the_trigger_path(stack) -> None:
    assert request(stack["url"], "GET", "/predict/healthz").body == b"OK"
    assert b"function_calls_total" in request(stack["url"], "GET", "/predict/metrics").body


def test_other_paths_get_the_default_backends_404(stack) -> None:
    resp = request(stack["url"], "GET", "/healthz-of-nothing")
    assert resp.status == 404 and resp.body == b"default backend - 404"


def test_a_body_over_1_mib_gets_413_from_nginx_and_the_attribution_says_ingress(stack, tmp_path) -> None:
    runtime_before = stack["runtime"].stdout().count('"POST / ')
    access = stack["folder"] / "access.log"
    offset = access.stat().st_size
    body = photo() + b"\0" * (MiB + 4096)
    resp = request(stack["url"], "POST", "/predict", body, {"Content-Type": "image/jpeg"})
    assert resp.status == 413
    assert b"413 Request Entity Too Large" in resp.body and b"nginx" in resp.body
    time.sleep(0.3)
    assert stack["runtime"].stdout().count('"POST / ') == runtime_before  # the function never saw it
    # the bench's evidence: nginx's lines of this request, the runtime's log of the same window
    with open(access, "rb") as f:
        f.seek(offset)
        (tmp_path / layers.INGRESS_ACCESS).write_bytes(f.read())
    (tmp_path / "server.log").write_text("")
    layer, evidence = layers.who_answered(resp.status, resp.body, resp.headers.get("Server"), tmp_path)
    assert layer == "ingress", evidence
    assert "no upstream" in evidence


def test_a_body_just_under_the_limit_reaches_the_function(stack, tmp_path) -> None:
    runtime_before = stack["runtime"].stdout()
    body = photo() + b"\0" * (MiB - len(photo()) - 1024)
    resp = request(stack["url"], "POST", "/predict", body, {"Content-Type": "image/jpeg"})
    assert resp.status == 200, resp.body[:300]  # a JPEG with trailing bytes still decodes
    wait_for(lambda: '"POST / ' in stack["runtime"].stdout()[len(runtime_before):], 10, "the runtime's access line")
    new = stack["runtime"].stdout()[len(runtime_before):]
    (tmp_path / "server.log").write_text(new)
    layer, _ = layers.who_answered(resp.status, resp.body, resp.headers.get("Server"), tmp_path)
    assert layer == "runtime"


def test_the_plan_has_the_overload_region_the_body_limit_and_the_nowarmup_variant() -> None:
    from analysis.bench.config import ConfigError, config_from_dict, example_config, make_plan

    data = example_config()
    data["platforms"]["function_ingress"] = {"url": "http://127.0.0.1:30082/predict", "container": "kde-function",
                                             "kind": "ingress-nginx", "via": "function",
                                             "metrics_url": "http://127.0.0.1:30080/metrics", "restart": "none",
                                             "ingress_dir": "/tmp/x"}
    keys = [i.run_key for i in make_plan(config_from_dict(data), "/tmp/run")]
    for platform in ("function", "container", "function_ingress"):
        for c in (50, 100):
            assert f"overload-{platform}-c{c}-r1" in keys
    assert "bodylimit-function" in keys and "bodylimit-function_ingress" in keys
    assert keys.count("nowarmup-function-c1-r1") == 1
    assert not any(k.startswith("coldstart-function_ingress") for k in keys)  # restart none: no cold starts
    for bad in ({"overload_concurrency": [0]}, {"overload_requests": 10}, {"nowarmup_requests": -1},
                {"nowarmup_timeout_s": 0}, {"bodylimit_bytes": -5}):
        with pytest.raises(ConfigError):
            config_from_dict({**data, "config": bad})
    off = config_from_dict({**data, "config": {"overload_concurrency": [], "nowarmup_requests": 0,
                                               "bodylimit_bytes": 0}})
    keys = [i.run_key for i in make_plan(off, "/tmp/run")]
    assert not any(k.startswith(("overload-", "nowarmup-", "bodylimit-")) for k in keys)
