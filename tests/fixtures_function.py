"""Helpers shared by the function tests: start the real runtime, talk HTTP to it, make test images.

Plain helpers rather than fixtures, so each test module declares the servers it needs with the scope it wants.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests.http_client import Response, free_port, request  # re-exported

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIR = REPO_ROOT / "function" / "kubeless"
RUNTIME = FUNCTION_DIR / "runtime" / "kubeless.py"
PROBE_DIR = Path(__file__).resolve().parent / "function_probe"
SERVER_START_TIMEOUT_S = 180  # TensorFlow import + model load + warm-up, on 2 busy cores
RETRIABLE = (ConnectionResetError, BrokenPipeError, ConnectionRefusedError, http.client.RemoteDisconnected)


# ------------------------------------------------------------------------------------------------ HTTP
def post_image(url: str, data: bytes, content_type: str | None = "image/jpeg", **kwargs) -> Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return request(url, "POST", body=data, headers=headers, **kwargs)


@dataclass
class LoadResult:
    """Outcome of a bounded burst of requests: final statuses, plus how many connection errors were retried."""

    statuses: list[int | None] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connection_errors: int = 0
    elapsed_s: float = 0.0

    def count(self, status: int | None) -> int:
        return self.statuses.count(status)


def burst(
    url: str, data: bytes, total: int, concurrency: int, content_type: str = "image/jpeg", attempts: int = 3
) -> LoadResult:
    """`total` POSTs from `concurrency` threads. A connection reset (the runtime's backlog of 5 overflowing) is
    retried up to `attempts` times; a request that never got a response keeps the status None."""
    result = LoadResult()

    def one(_: int) -> tuple[int | None, bytes, int]:
        errors = 0
        for _attempt in range(attempts):
            try:
                resp = post_image(url, data, content_type, timeout=90)
            except RETRIABLE:
                errors += 1
                continue
            return resp.status, resp.body, errors
        return None, b"", errors

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for status, body, errors in pool.map(one, range(total)):
            result.statuses.append(status)
            result.bodies.append(body)
            result.connection_errors += errors
    result.elapsed_s = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------------------ images
def photo(width: int = 500, height: int = 375, fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A photo-sized, photo-like (gradient + noise) image: a JPEG of this size is ~100 KB, like the paper's."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    pixels = np.clip(ramp + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def json_image_body(data: bytes) -> bytes:
    return json.dumps({"image": base64.b64encode(data).decode()}).encode()


# ------------------------------------------------------------------------------------------------ server
class RuntimeServer:
    """The runtime (function/kubeless/runtime/kubeless.py) as a real subprocess serving on 127.0.0.1."""

    def __init__(self, log_dir: Path, code_dir: Path, mod_name: str, handler: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = log_dir / f"runtime-{self.port}.out"
        self.stderr_path = log_dir / f"runtime-{self.port}.err"
        full_env = {
            **os.environ,
            "MOD_NAME": mod_name,
            "FUNC_HANDLER": handler,
            "FUNC_PORT": str(self.port),
            "FUNC_RUNTIME": "python3.11",
            "FUNC_MEMORY_LIMIT": "0",
            "KUBELESS_CODE_DIR": str(code_dir),
            "KUBELESS_BIND_ADDRESS": "127.0.0.1",
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **env,
        }
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(RUNTIME)], env=full_env, cwd=REPO_ROOT, stdout=out, stderr=err
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the runtime exited with {self.process.returncode}:\n{self.stderr()[-3000:]}")
            with contextlib.suppress(OSError):
                if request(self.url, "GET", "/healthz", timeout=2).body == b"OK":
                    return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"the runtime did not answer /healthz in {SERVER_START_TIMEOUT_S} s:\n{self.stderr()[-3000:]}"
        )

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def running(log_dir: Path, code_dir: Path, mod_name: str, handler: str, **env: str) -> Iterator[RuntimeServer]:
    server = RuntimeServer(log_dir, code_dir, mod_name, handler, **env)
    try:
        yield server
    finally:
        server.stop()


def function_server(log_dir: Path, model_dir: Path, **env: str) -> contextlib.AbstractContextManager[RuntimeServer]:
    """The real prediction function (function/kubeless/handler.py) with the real model behind the runtime."""
    return running(log_dir, FUNCTION_DIR, "handler", "predict", MODEL_DIR=str(model_dir), **env)


def probe_server(log_dir: Path, **env: str) -> contextlib.AbstractContextManager[RuntimeServer]:
    """The runtime serving tests/function_probe/probe.py, a function that does what the query asks."""
    return running(log_dir, PROBE_DIR, "probe", "probe", **env)
