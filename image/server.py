"""The WSGI app of the model server: /predict, /healthz, /readyz, /metrics.

Run it under gunicorn with `image.gunicorn_conf` (the Dockerfile's CMD). Each worker process loads its own
model in a background thread right after it starts, so /healthz and /readyz answer at once while the model
loads; /readyz turns 200 only when every worker has loaded the model and run its warm-up predictions. A model
that cannot load is one fact for the whole server, not one per worker: the gunicorn master checks the model files
before it forks, and a worker whose load fails records why, in a file all workers read (`model-failed` in the
runtime folder), so every worker's /healthz and /readyz give the same answer.
Decoding, preprocessing, prediction and the response body all come from the shared inference core
(`model.inference`); this module only speaks HTTP.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from PIL import Image

from image import metrics, settings
from model.inference import (
    DEFAULT_BACKEND,
    JSON_CONTENT_TYPE,
    BodyTooLarge,
    InferenceError,
    Predictor,
    image_bytes_from_body,
    log_line,
    media_type,
    predictor_from_env,
)

PLATFORM = "container"
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # read and drop at most this much of a refused body (see _drain)
READ_CHUNK = 64 * 1024

# Under gunicorn this logger writes to its error log (stderr), leaving stdout to the prediction lines.
log = logging.getLogger("gunicorn.error")

StartResponse = Callable[..., Any]


class IncompleteBody(InferenceError):
    code = "incomplete_body"


class BadContentLength(InferenceError):
    code = "bad_content_length"


class ModelNotReady(InferenceError):
    status = 503
    code = "model_not_ready"


class MethodNotAllowed(InferenceError):
    status = 405
    code = "method_not_allowed"


# ------------------------------------------------------------------------------------------ model state
def warmup_jpeg(width: int = 500, height: int = 375) -> bytes:
    """A photo-sized JPEG (the paper's Yelp photos are about 500x375) to exercise the full decode path."""
    img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _configure_tensorflow(threads: int) -> None:
    """Pin TensorFlow's thread pools before the model loads: one pool of CPUs // WORKERS threads per worker
    keeps the workers from fighting over the same cores (TF's default is one thread per core per process)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


class ModelState:
    """This worker's model: idle -> loading -> ready | failed. Only `ready` serves predictions."""

    def __init__(self) -> None:
        self.status = "idle"
        self.error: str | None = None
        self.predictor: Predictor | None = None
        self.load_seconds: float | None = None
        self._start_lock = threading.Lock()
        self._predict_lock = threading.Lock()  # LiteRT interpreters are not thread-safe (gthread workers)

    def start(self) -> None:
        with self._start_lock:
            if self.status != "idle":
                return
            known = settings.shared_model_failure()
            if known is not None:  # the master (or another worker) already found the model unloadable
                self.error, self.status = known, "failed"
                return
            self.status = "loading"
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            if os.environ.get("MODEL_BACKEND", DEFAULT_BACKEND) == "keras":
                expected = int(os.environ.get("IMAGE_EXPECTED_WORKERS", "1"))
                _configure_tensorflow(settings.tf_intra_op_threads(expected))
            predictor = predictor_from_env()
            sample = warmup_jpeg()
            for _ in range(settings.warmup_calls()):
                predictor.predict_bytes(sample)
        except Exception as exc:  # any failure here is a deployment error: report it, stay unready
            self.error = f"{type(exc).__name__}: {exc}"
            self.status = "failed"
            settings.record_model_failure(self.error)
            log.exception("worker %d could not load the model (MODEL_DIR=%s)", os.getpid(), os.environ.get("MODEL_DIR"))
            return
        self.load_seconds = time.perf_counter() - started
        self.predictor = predictor
        self.status = "ready"
        metrics.LOAD_SECONDS.set(self.load_seconds)
        metrics.READY_WORKERS.inc()
        ready_dir().mkdir(parents=True, exist_ok=True)
        (ready_dir() / str(os.getpid())).touch()
        log.info(
            "worker %d ready: backend %s, model %s, loaded and warmed up in %.2f s",
            os.getpid(),
            predictor.backend,
            predictor.info.sha256[:12],
            self.load_seconds,
        )

    def failure(self) -> str | None:
        """Why the server's model cannot load: this worker's own error, or the one another process recorded."""
        if self.status == "failed":
            return self.error
        return None if self.status == "ready" else settings.shared_model_failure()

    def require_ready(self) -> Predictor:
        if self.status != "ready" or self.predictor is None:
            failure = self.failure()
            if failure is not None:
                raise ModelNotReady(f"the model failed to load: {failure}")
            raise ModelNotReady("the model is still loading; retry in a second")
        return self.predictor

    def predict(self, data: bytes) -> dict[str, Any]:
        predictor = self.require_ready()
        with self._predict_lock:
            return predictor.predict_bytes(data)


MODEL = ModelState()


def start_loading() -> None:
    """Called by gunicorn's post_worker_init hook; also done lazily on the first request otherwise."""
    MODEL.start()


def ready_dir():
    return settings.runtime_dir() / "ready"


def workers_ready() -> int:
    try:
        return len(os.listdir(ready_dir()))
    except FileNotFoundError:
        return 0


# ------------------------------------------------------------------------------------------ HTTP helpers
def _json_response(
    start_response: StartResponse, status: int, payload: str | bytes, extra: list[tuple[str, str]] | None = None
) -> list[bytes]:
    body = payload.encode() if isinstance(payload, str) else payload
    headers = [("Content-Type", JSON_CONTENT_TYPE), ("Content-Length", str(len(body)))]
    start_response(f"{status} {_REASONS.get(status, 'Unknown')}", headers + (extra or []))
    return [body]


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _drain(stream: Any, length: int | None) -> None:
    """Read and drop a refused body, so the client gets our 413 instead of a connection reset (a socket
    closed with unread data sends RST). Bounded by DRAIN_LIMIT_BYTES and gunicorn's worker timeout."""
    remaining = DRAIN_LIMIT_BYTES if length is None else min(length, DRAIN_LIMIT_BYTES)
    while remaining > 0:
        chunk = stream.read(min(READ_CHUNK, remaining))
        if not chunk:
            return
        remaining -= len(chunk)


def body_limit(content_type: str | None, max_bytes: int) -> int:
    """Largest body accepted: the image limit, or the size of its base64 in a JSON envelope."""
    if media_type(content_type) == JSON_CONTENT_TYPE:
        return max_bytes * 4 // 3 + 1024
    return max_bytes


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    stream = environ["wsgi.input"]
    raw_length = (environ.get("CONTENT_LENGTH") or "").strip()
    if raw_length:
        try:
            length = int(raw_length)
        except ValueError:
            raise BadContentLength(f"Content-Length {raw_length!r} is not a number") from None
        if length > limit:
            _drain(stream, length)
            raise BodyTooLarge(
                f"the body is {length} bytes; the limit is {limit} bytes (MAX_BODY_BYTES={settings.max_body_bytes()})"
            )
        data = stream.read(length) if length else b""
        if len(data) < length:
            raise IncompleteBody(f"the client sent {len(data)} of the {length} bytes it announced")
        return data
    data = stream.read(limit + 1)  # chunked transfer encoding, or no body at all
    if len(data) > limit:
        _drain(stream, None)
        raise BodyTooLarge(f"the body is over the limit of {limit} bytes (MAX_BODY_BYTES={settings.max_body_bytes()})")
    return data


# ------------------------------------------------------------------------------------------ endpoints
def _predict(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    started = time.perf_counter()
    metrics.IN_FLIGHT.inc()
    status = 500
    try:
        status, body, extra = _predict_response(environ)
    except Exception as exc:  # a bug or a backend failure: answer 500 with the reason, keep the worker
        log.exception("POST /predict failed")
        body = json.dumps({"error": "internal", "message": f"{type(exc).__name__}: {exc}", "status": 500})
        extra = []
    finally:
        metrics.IN_FLIGHT.dec()
        metrics.REQUESTS.labels(str(status)).inc()
        metrics.REQUEST_DURATION.labels(str(status)).observe(time.perf_counter() - started)
    return _json_response(start_response, status, body, extra)


def _predict_response(environ: dict[str, Any]) -> tuple[int, str, list[tuple[str, str]]]:
    content_type = environ.get("CONTENT_TYPE")
    max_bytes = settings.max_body_bytes()
    try:
        if environ["REQUEST_METHOD"] != "POST":
            _drain(environ["wsgi.input"], None)
            raise MethodNotAllowed(f"{environ['REQUEST_METHOD']} is not allowed on /predict; POST the image")
        raw = read_body(environ, body_limit(content_type, max_bytes))
        MODEL.require_ready()
        data = image_bytes_from_body(raw, content_type, max_bytes)
        result = MODEL.predict(data)
    except MethodNotAllowed as exc:
        return exc.status, exc.to_json(), [("Allow", "POST")]
    except ModelNotReady as exc:
        return exc.status, exc.to_json(), [("Retry-After", "1")]
    except InferenceError as exc:
        return exc.status, exc.to_json(), []
    metrics.PREDICTION_DURATION.labels(result["backend"]).observe(result["prediction_ms"] / 1000.0)
    # One write call per line: workers share stdout, and a single short write to a pipe is atomic.
    sys.stdout.write(log_line(result, PLATFORM) + "\n")
    sys.stdout.flush()
    return 200, json.dumps(result), []


def _healthz(start_response: StartResponse) -> list[bytes]:
    failure = MODEL.failure()
    if failure is not None:
        return _json_response(start_response, 500, json.dumps({"status": "failed", "error": failure}))
    return _json_response(start_response, 200, json.dumps({"status": "ok", "model": MODEL.status}))


def _readyz(start_response: StartResponse) -> list[bytes]:
    expected = int(os.environ.get("IMAGE_EXPECTED_WORKERS", "1"))
    ready = workers_ready()
    failure = MODEL.failure()
    ok = failure is None and ready >= expected and MODEL.status == "ready"
    # A failure is the server's, not this worker's: every worker then reports the same state and error.
    state = "failed" if failure is not None else MODEL.status
    payload = {"ready": ok, "workers_ready": ready, "workers": expected, "worker_model": state}
    if failure is not None:
        payload["error"] = failure
    return _json_response(start_response, 200 if ok else 503, json.dumps(payload))


def _metrics(start_response: StartResponse) -> list[bytes]:
    body, content_type = metrics.exposition()
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if MODEL.status == "idle":
        MODEL.start()
    path = environ.get("PATH_INFO") or "/"
    if path == "/predict":
        return _predict(environ, start_response)
    routes = {"/healthz": _healthz, "/readyz": _readyz, "/metrics": _metrics}
    handler = routes.get(path)
    if handler is None:
        message = f"no such endpoint {path!r}; POST images to /predict (also: /healthz, /readyz, /metrics)"
        return _json_response(start_response, 404, json.dumps({"error": "not_found", "message": message}))
    if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        message = f"{environ['REQUEST_METHOD']} is not allowed on {path}; use GET"
        payload = json.dumps({"error": "method_not_allowed", "message": message, "status": 405})
        return _json_response(start_response, 405, payload, [("Allow", "GET, HEAD")])
    return handler(start_response)
