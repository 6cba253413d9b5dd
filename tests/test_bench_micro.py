"""The micro-benchmarks of the measurement package, `python -m analysis.bench micro-function` and `micro-app`: their
--help, the runtime's real access log read per status, and real runs against real servers on 127.0.0.1 (the app
under gunicorn here; both images capped on the Docker engine with `-m docker`)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.bench import payloads
from analysis.bench.cli import build_parser
from analysis.bench.micro_app import docker_bytes
from analysis.bench.micro_function import HEADER, access_stats
from analysis.bench.micro_harness import docker
from tests.fixtures_function import REPO_ROOT, probe_server
from tests.http_client import free_port, request

pytest_plugins = ["tests.fixtures_image"]  # image_server (gunicorn, the trained model), app_image

FUNCTION_FLAGS = ("--image", "--build", "--base-image", "--backend", "--mode", "--concurrency", "--requests",
                  "--warmup", "--payload", "--content-type", "--port", "--cpus", "--memory", "--out")
APP_FLAGS = ("--image", "--url", "--container", "--mount-model", "--model-dir", "--backend", "--env", "--cpus",
             "--memory", "--concurrency", "--requests", "--warmup", "--floor-requests", "--payload", "--out")


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "analysis.bench", *args]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def post(base_url: str, path: str) -> int:
    return request(base_url, "POST", path, body=b"x", headers={"Content-Type": "text/plain"}).status


def bench_payload(directory: Path) -> payloads.Payload:
    """bench.yml's payload, drawn afresh: what the micro-benchmarks must POST by default."""
    return payloads.write(payloads.DEFAULT_PAYLOAD, directory)


# ------------------------------------------------------------------------------------------------ --help
@pytest.mark.parametrize(("command", "flags"), [("micro-function", FUNCTION_FLAGS), ("micro-app", APP_FLAGS)])
def test_help_lists_and_explains_every_flag(command, flags):
    done = bench(command, "--help", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m analysis.bench {command} ")
    assert all(flag in done.stdout for flag in flags)
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = [a for a in subparsers.choices[command]._actions if a.option_strings and a.dest != "help"]
    assert sorted(o for a in options for o in a.option_strings if o.startswith("--")) == sorted(flags)
    assert all(a.help for a in options), [a.option_strings for a in options if not a.help]


def test_the_subcommands_are_listed_in_the_package_help():
    done = bench("--help", timeout=60)
    assert done.returncode == 0 and "micro-function" in done.stdout and "micro-app" in done.stdout


# ------------------------------------------------------------------------------------------------ parsing
def test_the_runtimes_access_log_is_counted_per_status(tmp_path):
    """The real runtime's access lines: POSTs to / by status, with their server time; other routes not counted."""
    with probe_server(tmp_path) as server:
        statuses = [post(server.url, "/") for _ in range(2)]
        statuses += [post(server.url, "/?action=echo"), post(server.url, "/?action=raise")]
        assert request(server.url, "GET", "/healthz").status == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(access_stats(server.stdout().splitlines())[1]) < 4:
            time.sleep(0.1)
        counts, server_ms = access_stats(server.stdout().splitlines())
    assert statuses == [200, 200, 200, 500]
    assert counts == {"200": 3, "500": 1}
    assert len(server_ms) == 4 and all(0 < ms < 10_000 for ms in server_ms)


def test_memory_is_printed_as_docker_stats_prints_it():
    assert docker_bytes(2 * 1024**3) == "2GiB"
    assert docker_bytes(432_345_088) == "412.3MiB"
    assert docker_bytes(1536) == "1.5KiB"
    assert docker_bytes(512) == "512B"


# ------------------------------------------------------------------------------------------------ micro-app, no Docker
def test_micro_app_measures_a_running_server(image_server, trained_model_dir, tmp_path):
    done = bench(
        "micro-app", "--url", image_server.url, "-c", "1", "4", "-n", "12", "--warmup", "2",
        "--floor-requests", "5", "--model-dir", str(trained_model_dir), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 CPUs can serve" in done.stdout and "target zero non-2xx and failed requests: ok" in done.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [row["concurrency"] for row in report["ab"]] == [1, 4]
    assert all(row["completed"] == 12 and row["non_2xx"] == 0 and row["server_mean_ms"] > 0 for row in report["ab"])
    assert (tmp_path / "out" / "c4" / "ab.stdout").is_file()
    assert (tmp_path / "out" / "c4" / "metrics.after.txt").is_file()  # the scrapes stay beside ab's files
    # bench.yml's payload, byte for byte
    assert report["payload_bytes"] == bench_payload(tmp_path / "reference").bytes
    assert Path(report["payload"]).read_bytes() == bench_payload(tmp_path / "reference").path.read_bytes()


def test_a_missing_payload_is_named(tmp_path):
    done = bench("micro-app", "--url", "http://127.0.0.1:9/", "--floor-requests", "0",
                 "--payload", str(tmp_path / "none.jpg"), "--out", str(tmp_path), timeout=60)
    assert done.returncode == 1
    assert f"error: --payload {tmp_path / 'none.jpg'} is not a file" in done.stderr


# ------------------------------------------------------------------------------------------------ Docker
def left_over(image: str) -> str:
    return docker("ps", "-aq", "--filter", f"ancestor={image}").stdout.strip()


@pytest.mark.docker
def test_micro_function_measures_the_runtime_image(function_image, tmp_path):
    done = bench(
        "micro-function", "--image", function_image, "--backend", "litert", "--mode", "repaired",
        "--concurrency", "1", "2", "--requests", "8", "--warmup", "2", "--port", str(free_port()),
        "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    reference = bench_payload(tmp_path / "reference")
    assert f"({reference.bytes} bytes), 8 requests per run\n{HEADER}\n" in done.stdout
    assert (tmp_path / payloads.DEFAULT_PAYLOAD).read_bytes() == reference.path.read_bytes()
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [(r["backend"], r["runtime_mode"], r["concurrency"]) for r in rows] == [("litert", "repaired", 1),
                                                                                   ("litert", "repaired", 2)]
    for row in rows:
        assert re.search(rf"^litert +repaired +{row['concurrency']} ", done.stdout, re.MULTILINE)
        assert row["ab_outcome"] == "ok" and row["non_2xx"] == 0 and row["no_reply"] == 0
        assert row["status_counts"] == {"200": 8}  # this run's access lines only: not the warm-up's
        assert 0 < row["prediction_mean_ms"] <= row["server_mean_ms"] <= row["ab_mean_ms"] + 1
        assert (Path(row["raw_dir"]) / "ab.tsv").is_file() and (Path(row["raw_dir"]) / "server.log").is_file()
    assert "POST / HTTP" in (tmp_path / "litert-repaired" / "container.log").read_text()
    assert left_over(function_image) == ""


@pytest.mark.docker
def test_micro_app_starts_measures_and_removes_a_capped_container(app_image, tmp_path):
    done = bench(
        "micro-app", "--image", app_image, "--backend", "litert", "--floor-requests", "0", "-c", "1", "2",
        "-n", "8", "--warmup", "2", "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["server_env"] == {"MODEL_BACKEND": "litert"} and report["ready_after_s"] > 0
    for row in report["ab"]:
        assert row["completed"] == 8 and row["non_2xx"] == 0 and row["failed"] == 0 and row["errors"] == 0
        assert row["prediction_lines"] == 8  # this run's log lines only: not the warm-up's
        assert row["server_mean_ms"] > 0 and row["container_cpu_ms_per_request"] > 0
    memory = report["memory"]
    assert re.fullmatch(r"[\d.]+(B|KiB|MiB|GiB) / 2GiB", memory["docker_stats_usage"]), memory
    assert memory["processes"] >= 3 and 0 < memory["pss_bytes"] < 2 * 1024**3  # gunicorn master + 2 workers
    assert "target memory < 1.5 GB: ok" in done.stdout
    assert left_over(app_image) == ""
