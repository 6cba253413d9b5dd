"""Adding a platform kind touches no core file: a throwaway kind (a plain HTTP server around the model, kept in a
temporary folder with its kind module) goes through a temporary inventory, the bench role's real configuration
template, the driver's plan and steps, and shows up in the report's cross-platform table beside the real
container baseline (gunicorn, image/). The repository's files are the same before and after."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures_image import gunicorn_server
from tests.http_client import free_port, wait_for

pytest_plugins = ["tests.fixtures_image"]

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

KIND_MODULE = '''
from analysis.bench.platforms import Kind, register

register(Kind(name="plain-http", role="function", label="plain HTTP server (throwaway test kind)"))
'''

# What a kind's serving folder (function/<kind>/) would hold: a thin HTTP wrapper over the inference core.
SERVER = '''
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from model.inference import InferenceError, Predictor

predictor = Predictor(os.environ["MODEL_DIR"], backend="litert")
lock = threading.Lock()  # a LiteRT interpreter serves one call at a time


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._reply(200, b'{"status": "ok"}')

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            with lock:
                result = predictor.predict_bytes(body)
            self._reply(200, json.dumps(result).encode())
        except InferenceError as exc:
            self._reply(exc.status, exc.to_json().encode())

    def _reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''

KNOBS = {"concurrency": [1, 2], "repetitions": 2, "requests_per_run": 12, "warmup_requests": 4,
         "probe_requests": 0, "paired_requests": 0, "coldstart_repetitions": 0, "rate_platforms": [],
         "overload_concurrency": [],
         "nowarmup_requests": 0, "bodylimit_bytes": 0, "stability_max_extra_repetitions": 0, "quiet_check_s": 0.1,
         "log_settle_s": 0.05, "resource_interval_s": 0.1}


def repository_state() -> str:
    """Every tracked and untracked file's change state and content hash: what a test could have touched."""
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    paths = [line[3:] for line in status.splitlines()]
    hashes = subprocess.run(["git", "hash-object", "--", *paths], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout if paths else ""
    return status + hashes


def run(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_a_throwaway_kind_is_planned_run_and_reported_without_touching_a_core_file(tmp_path, trained_model_dir):
    before = repository_state()
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "kde_plain_http_kind.py").write_text(textwrap.dedent(KIND_MODULE))
    (plugin / "plain_server.py").write_text(textwrap.dedent(SERVER))
    env = {**os.environ, "PYTHONPATH": f"{plugin}{os.pathsep}{ROOT}", "MODEL_DIR": str(trained_model_dir),
           "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_LOCALHOST_WARNING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"}
    port = free_port()
    server = subprocess.Popen([sys.executable, str(plugin / "plain_server.py"), str(port)], env=env, cwd=tmp_path,
                              stderr=subprocess.PIPE)
    try:
        with gunicorn_server(tmp_path, trained_model_dir, WORKERS="1", MODEL_BACKEND="litert") as baseline:
            wait_for(lambda: server.poll() is None and _answers(port), 60, "the plain server")
            # a temporary inventory: the new platform and the baseline, in report order
            inventory = tmp_path / "inventory"
            (inventory / "group_vars").mkdir(parents=True)
            (inventory / "hosts.yml").write_text(
                "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                f"      ansible_python_interpreter: {sys.executable}\n")
            group_vars = {
                "project_dir": str(ROOT), "bench_python": sys.executable, "bench_results_dir": str(tmp_path / "r"),
                "bench_kind_modules": ["kde_plain_http_kind"],
                "platforms": [
                    {"name": "plain", "kind": "plain-http", "url": f"http://127.0.0.1:{port}/predict",
                     "resource_source": "proc", "pid": server.pid},
                    {"name": "container", "kind": "container", "url": f"{baseline.url}/predict",
                     "resource_source": "proc", "pid": baseline.process.pid},
                ],
                **{f"bench_{k}": v for k, v in KNOBS.items()},
            }
            (inventory / "group_vars" / "all.yml").write_text(json.dumps(group_vars))
            playbook = tmp_path / "config.yml"
            playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                                "    - ansible.builtin.include_role:\n        name: bench\n"
                                "        tasks_from: config.yml\n")
            run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)], env)
            config = tmp_path / "r" / ".bench-config.json"
            assert list(json.loads(config.read_text())["platforms"]) == ["plain", "container"]

            init = json.loads(run([sys.executable, "-m", "analysis.bench", "init", "--config", str(config),
                                   "--results-dir", str(tmp_path / "r")], env).stdout.splitlines()[-1])
            plan = json.loads(run([sys.executable, "-m", "analysis.bench", "plan", init["run_dir"], "--compact"],
                                  env).stdout)
            assert [i["run_key"] for i in plan if i["platform"] == "plain"] == [
                "warmup-plain-c2-r0", "concurrency-plain-c1-r1", "concurrency-plain-c2-r1",
                "concurrency-plain-c1-r2", "concurrency-plain-c2-r2"]
            run([sys.executable, "-m", "analysis.bench", "run-all", init["run_dir"]], env, timeout=600)
            run([sys.executable, "-m", "analysis", init["run_dir"], "--out", str(tmp_path / "report")], env)
    finally:
        server.terminate()
        server.wait(10)
    with open(tmp_path / "report" / "tables" / "cross_platform.csv", newline="") as f:
        cross = list(csv.DictReader(f))
    assert [(r["platform"], r["baseline"], r["concurrency"]) for r in cross] == [
        ("plain", "container", "1"), ("plain", "container", "2")]
    assert all(float(r["mean_ratio"]) > 0 and r["failure_pct"] == "0.0" for r in cross)
    assert all(float(r["mem_peak_mib"]) > 0 for r in cross)
    assert "Every function platform against the baseline (container)" in (tmp_path / "report" / "report.md").read_text()
    # the files the kind needed: its module and its server, both outside the repository
    assert sorted(p.name for p in plugin.iterdir() if p.is_file()) == ["kde_plain_http_kind.py", "plain_server.py"]
    assert repository_state() == before


def _answers(port: int) -> bool:
    from tests.http_client import request

    return request(f"http://127.0.0.1:{port}", "GET", "/", timeout=2).status == 200
