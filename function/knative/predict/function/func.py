"""The paper's prediction function as a Knative Function (func-python 0.8.1): `new()`, `start(cfg)`, `handle`,
`alive()` / `ready()`, over model/inference.py.

func-python calls `start` once, at the ASGI lifespan start, before hypercorn listens: the model loads (and warms
up) there, so the readiness probe (`/health/readiness`, answered by `ready()`) cannot pass earlier. `handle` runs
on hypercorn's one asyncio event loop. Called inline, as here by default, a prediction blocks that loop: the
process serves one prediction at a time, whatever the concurrency (function/knative/README.md measures it).
FUNC_PREDICT_IN_THREAD=1 hands each prediction to a thread instead (asyncio.to_thread), the change a user would
make to overlap them.

Bad input is the inference core's 4xx and JSON error, as on the other platforms; a GET without a body answers 200
with what is loaded (the bench's readiness checks, on / or /healthz); a GET of another path is a 404.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from contextlib import nullcontext
from typing import Any

from model.inference import (
    DEFAULT_BACKEND,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_PIXELS,
    InferenceError,
    Predictor,
    image_bytes_from_body,
    log_line,
)

JSON_HEADERS = [[b"content-type", b"application/json"]]


def new() -> Function:
    """The factory func-python calls once per process."""
    return Function()


class Function:
    def __init__(self) -> None:
        self.predictor = None
        self.max_body = int(os.environ.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
        self.platform = os.environ.get("PLATFORM_NAME", "knative")
        self.in_thread = os.environ.get("FUNC_PREDICT_IN_THREAD", "0") == "1"
        self.lock: Any = nullcontext()

    def start(self, cfg: dict[str, str]) -> None:
        """Load the model (MODEL_DIR, MODEL_BACKEND, MAX_PIXELS of `cfg`: func-python passes the environment) and
        warm it up with WARMUP_CALLS predictions. Until this returns, hypercorn does not listen."""
        predictor = Predictor(cfg.get("MODEL_DIR", "/model"), backend=cfg.get("MODEL_BACKEND", DEFAULT_BACKEND),
                              max_pixels=int(cfg.get("MAX_PIXELS", DEFAULT_MAX_PIXELS)))
        # LiteRT's interpreter may not run two calls at once; Keras eager calls may
        if self.in_thread and predictor.backend == "litert":
            self.lock = threading.Lock()
        predictor.warm_up(int(cfg.get("WARMUP_CALLS", "3")))
        self.predictor = predictor
        logging.info("model loaded: %s backend, sha256 %s", predictor.backend, predictor.info.sha256[:12])

    def stop(self) -> None:
        logging.info("function stopping")

    def alive(self) -> tuple[bool, str]:
        return True, "alive"

    def ready(self) -> tuple[bool, str]:
        return (True, "ready") if self.predictor is not None else (False, "model not loaded")

    def _predict(self, image: bytes) -> dict[str, Any]:
        with self.lock:
            return self.predictor.predict_bytes(image)

    async def handle(self, scope: dict, receive, send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET" and not body:
            if scope["path"] not in ("/", "/healthz"):
                await _reply(send, 404, json.dumps({"error": "not_found", "path": scope["path"]}).encode())
                return
            info = {"status": "ready", "backend": self.predictor.backend,
                    "model_sha256": self.predictor.info.sha256[:12]}
            await _reply(send, 200, json.dumps(info).encode())
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            image = image_bytes_from_body(bytes(body), headers.get("content-type"), self.max_body)
            if self.in_thread:
                result = await asyncio.to_thread(self._predict, image)
            else:
                result = self._predict(image)
        except InferenceError as exc:
            await _reply(send, exc.status, exc.to_json().encode())
            return
        sys.stdout.write(log_line(result, self.platform) + "\n")
        sys.stdout.flush()
        await _reply(send, 200, json.dumps(result).encode())


async def _reply(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})
