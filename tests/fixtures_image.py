"""Fixtures and helpers of the image tests: the real gunicorn server (image/) as a subprocess on 127.0.0.1,
raw HTTP to it, Prometheus scrapes, and the image built on the real Docker engine.

Test modules import the fixtures they use from here (tests/conftest.py holds the project-wide ones:
trained_model_dir, sample_jpegs, docker_engine, base_image, wheelhouse). Test modules load the fixtures with
`pytest_plugins = ["tests.fixtures_image"]` and import the helpers, so pytest must not rewrite this module
(it has no asserts): PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from tests.http_client import Response, free_port, request, wait_for, wait_for_response  # noqa: F401 - re-exported

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 180  # TensorFlow import + model load + warm-up, on 2 cores shared with other suites
TEST_PREFIX = "kde-test-"


# ------------------------------------------------------------------------------------------------ HTTP
def predict(base_url: str, data: bytes, content_type: str | None = "image/jpeg", **kwargs) -> Response:
    return request(base_url, "POST", "/predict", data, {"Content-Type": content_type} if content_type else {}, **kwargs)


def png_of(jpeg: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(out, format="PNG")
    return out.getvalue()


def prediction_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"event": "prediction"')]


# ------------------------------------------------------------------------------------------------ server
class GunicornServer:
    """`gunicorn --config python:image.gunicorn_conf image.server:application`, as the image's CMD runs it."""

    def __init__(self, log_dir: Path, model_dir: Path | str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = log_dir / f"gunicorn-{self.port}.out"
        self.stderr_path = log_dir / f"gunicorn-{self.port}.err"
        full_env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MODEL_DIR": str(model_dir),
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **env,
        }
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        argv = [sys.executable, "-m", "gunicorn", "--config", "python:image.gunicorn_conf", "image.server:application"]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(argv, env=full_env, cwd=REPO_ROOT, stdout=out, stderr=err)

    def get(self, path: str, timeout: float = 5) -> Response:
        return request(self.url, "GET", path, timeout=timeout)

    def _alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.stderr()[-3000:]}")

    def wait_listening(self) -> None:
        def answers() -> bool:
            self._alive()
            return self.get("/healthz", timeout=2).status in (200, 500)

        wait_for(answers, START_TIMEOUT_S, f"{self.url}/healthz answering")

    def wait_ready(self) -> None:
        def ready() -> bool:
            self._alive()
            return self.get("/readyz", timeout=2).status == 200

        try:
            wait_for(ready, START_TIMEOUT_S, f"{self.url}/readyz answering 200")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.stderr()[-3000:]}") from None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        self.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


@contextlib.contextmanager
def gunicorn_server(log_dir: Path, model_dir: Path | str, ready: bool = True, **env: str) -> Iterator[GunicornServer]:
    server = GunicornServer(log_dir, model_dir, **env)
    try:
        if ready:
            server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def image_server(tmp_path_factory, trained_model_dir) -> Iterator[GunicornServer]:
    """Two workers (metrics must add up across processes), the real trained model, a 1 MB body limit."""
    log_dir = tmp_path_factory.mktemp("image-server")
    with gunicorn_server(log_dir, trained_model_dir, WORKERS="2", MAX_BODY_BYTES="1000000") as server:
        yield server


@pytest.fixture(scope="session")
def payload_jpeg(sample_jpegs) -> bytes:
    """The 500x375 sample (the size of a Yelp photo)."""
    return next(iter(sample_jpegs.values()))


# ------------------------------------------------------------------------------------------------ docker
def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def build_image(tag: str, base_image: str, model_dir_in_context: str) -> None:
    """docker build -f image/Dockerfile from the repository root, as a user does (build log kept on failure)."""
    argv = [
        "build", "-f", "image/Dockerfile", "-t", tag,
        "--build-arg", f"BASE_IMAGE={base_image}",
        "--build-arg", f"MODEL_DIR={model_dir_in_context}",
        str(REPO_ROOT),
    ]  # fmt: skip
    docker(*argv, timeout=1200)


def remove_image(tag: str) -> None:
    """Remove the image and its own layers. The dependency stage (pip install from the wheelhouse) stays in
    Docker's build cache, so the next build copies the virtual environment instead of reinstalling it."""
    docker("rmi", tag, check=False)


@dataclass
class Container:
    name: str
    url: str

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.name).stdout)[0]


@contextlib.contextmanager
def run_container(image: str, *extra: str) -> Iterator[Container]:
    """The local profile's way: --cpus 2 --memory 2g, port published on 127.0.0.1 only; removed afterwards."""
    name = f"{TEST_PREFIX}app-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--cpus", "2", "--memory", "2g", "-p", "127.0.0.1::8080", *extra, image)
    try:
        port = docker("port", name, "8080/tcp").stdout.splitlines()[0].rsplit(":", 1)[1]
        yield Container(name, f"http://127.0.0.1:{port}")
    finally:
        docker("rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def app_image(base_image, wheelhouse, trained_model_dir) -> Iterator[str]:
    """image/Dockerfile built on the real engine with the test model baked in (build/test-image-model)."""
    context_model = REPO_ROOT / "build" / "test-image-model"
    shutil.rmtree(context_model, ignore_errors=True)
    shutil.copytree(trained_model_dir, context_model)
    tag = f"{TEST_PREFIX}app:{uuid.uuid4().hex[:8]}"
    try:
        build_image(tag, base_image, "build/test-image-model")
        yield tag
    finally:
        remove_image(tag)
        shutil.rmtree(context_model, ignore_errors=True)
