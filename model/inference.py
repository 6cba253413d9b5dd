"""The one inference core: request body -> image -> tensor -> prediction -> fixed-length result.

Both the Kubeless function (function/kubeless/handler.py) and the container server (image/server.py) call this
module and nothing else for decoding, preprocessing, prediction and response formatting, so any difference
in their numbers comes from the serving platform, not from the model path.

This module must stay importable without TensorFlow: the `litert` backend never imports it, and the
images copy only `model/__init__.py` and this file (serving never imports training code).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

BACKENDS = ("keras", "litert")
DEFAULT_BACKEND = "keras"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024  # 10 MiB: well above any phone photo, far below a 2 GB VM
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: bigger than any camera photo; stops decompression bombs
# Every result serialises (json.dumps, default separators) to exactly this many characters, so that
# ApacheBench never counts a "Failed request (Length)" because one response was shorter than another.
RESULT_JSON_LENGTH = 256
IMAGE_CONTENT_TYPES = ("image/jpeg", "image/png", "application/octet-stream")
JSON_CONTENT_TYPE = "application/json"
MODEL_FILE = "model.keras"
LITERT_FILE = "model.tflite"
LABELS_FILE = "labels.json"


# --------------------------------------------------------------------------------------------- errors
class InferenceError(Exception):
    """A request the model cannot serve. `status` is the HTTP status a server should answer with."""

    status = 400
    code = "bad_request"

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": str(self), "status": self.status}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


class EmptyBody(InferenceError):
    code = "empty_body"


class NotAnImage(InferenceError):
    code = "not_an_image"


class TruncatedImage(InferenceError):
    code = "truncated_image"


class UnsupportedImageMode(InferenceError):
    code = "unsupported_image_mode"


class BadJsonBody(InferenceError):
    code = "bad_json"


class BodyTooLarge(InferenceError):
    status = 413
    code = "body_too_large"


class TooManyPixels(InferenceError):
    status = 413
    code = "too_many_pixels"


class UnsupportedContentType(InferenceError):
    status = 415
    code = "unsupported_content_type"


class ModelNotFound(RuntimeError):
    """The model directory lacks a file the chosen backend needs (a deployment error, not a request error)."""


# ------------------------------------------------------------------------------------- request body
def media_type(content_type: str | None) -> str:
    """`image/jpeg; charset=x` -> `image/jpeg`; a missing header counts as application/octet-stream."""
    if not content_type:
        return "application/octet-stream"
    return content_type.split(";", 1)[0].strip().lower()


def image_bytes_from_body(
    body: bytes | dict | None,
    content_type: str | None,
    max_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> bytes:
    """Return the image bytes carried by a request body.

    Accepts a raw image body (image/jpeg, image/png, application/octet-stream) or JSON
    `{"image": "<base64>"}`. `body` may already be a parsed dict (the Kubeless runtime parses
    `application/json` bodies before the function sees them).
    """
    kind = media_type(content_type)
    if isinstance(body, dict) or kind == JSON_CONTENT_TYPE:
        return _image_from_json(body, max_bytes)
    if kind not in IMAGE_CONTENT_TYPES:
        raise UnsupportedContentType(
            f"content type {kind!r} is not supported; send the image as image/jpeg, image/png or "
            'application/octet-stream, or JSON {"image": "<base64>"} as application/json'
        )
    if isinstance(body, str):
        body = body.encode("latin-1")
    if not body:
        raise EmptyBody("the request body is empty; POST the image bytes")
    if len(body) > max_bytes:
        raise BodyTooLarge(f"the body is {len(body)} bytes; the limit is {max_bytes} bytes")
    return bytes(body)


def _image_from_json(body: bytes | str | dict | None, max_bytes: int) -> bytes:
    if body is None or (isinstance(body, bytes | str) and not body):
        raise EmptyBody("the request body is empty; POST the image bytes")
    if not isinstance(body, dict):
        if len(body) > max_bytes * 4 // 3 + 1024:
            raise BodyTooLarge(f"the JSON body is {len(body)} bytes; the image limit is {max_bytes} bytes")
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadJsonBody(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("image"), str):
        raise BadJsonBody('a JSON body must be an object {"image": "<base64 of the image file>"}')
    encoded = body["image"]
    if not encoded:
        raise EmptyBody('the "image" field is empty')
    if len(encoded) > max_bytes * 4 // 3 + 4:
        raise BodyTooLarge(f"the base64 image is {len(encoded)} characters; the image limit is {max_bytes} bytes")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadJsonBody(f'the "image" field is not valid base64: {exc}') from None


# ------------------------------------------------------------------------------------ decode/resize
def decode_image(data: bytes, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes into a (size, size, 3) uint8 RGB array.

    EXIF orientation is applied, CMYK/grayscale/palette/alpha images are converted to RGB, JPEGs are
    decoded at a reduced scale (draft mode) when they are much larger than the target size.
    """
    if not data:
        raise EmptyBody("the image is empty")
    with warnings.catch_warnings():
        # Pillow warns (then errors) on huge images; we apply our own, explicit limit below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise TooManyPixels(str(exc)) from None
        except UnidentifiedImageError:
            raise NotAnImage("the body is not an image Pillow can read (expected JPEG or PNG)") from None
        width, height = img.size
        if width * height > max_pixels:
            raise TooManyPixels(
                f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
            )
        if img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK"):
            img.draft("RGB" if img.mode != "CMYK" else img.mode, (size, size))
        try:
            img.load()
        except (OSError, SyntaxError) as exc:
            raise TruncatedImage(f"the image data is truncated or corrupt: {exc}") from None
        img = ImageOps.exif_transpose(img)
        if img.mode not in ("RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "I;16", "I", "F", "YCbCr", "1"):
            raise UnsupportedImageMode(f"image mode {img.mode!r} cannot be converted to RGB")
        if img.mode in ("I;16", "I", "F"):
            img = img.point(lambda v: v / 256).convert("L") if img.mode != "F" else img.convert("L")
        if img.mode != "RGB":
            img = img.convert("RGB")
        img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


# ------------------------------------------------------------------------------------------- model
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    labels: list[str]
    image_size: int
    sha256: str


def read_labels(model_dir: Path) -> tuple[list[str], int]:
    path = model_dir / LABELS_FILE
    if not path.is_file():
        raise ModelNotFound(
            f"{path} is missing; train a model first: python -m model train --data DIR --out {model_dir}"
        )
    meta = json.loads(path.read_text())
    return list(meta["labels"]), int(meta["image_size"])


def check_model_files(model_dir: Path, backend: str) -> tuple[list[str], int, Path]:
    """The labels, input size and weights path of the model in `model_dir`, or ModelNotFound naming the missing
    file. Cheap and TensorFlow-free: a server's parent process runs it before it forks its workers, so that
    every worker reports the same missing file."""
    labels, image_size = read_labels(model_dir)
    weights = model_dir / (MODEL_FILE if backend == "keras" else LITERT_FILE)
    if not weights.is_file():
        hint = (
            f"python -m model train --out {model_dir}"
            if backend == "keras"
            else f"python -m model export --model {model_dir / MODEL_FILE} --format litert"
        )
        raise ModelNotFound(f"{weights} is missing for backend {backend!r}; create it with: {hint}")
    return labels, image_size, weights


class Predictor:
    """A loaded model behind one backend. `predict_bytes` is all a server needs."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        backend: str = DEFAULT_BACKEND,
        fork_safe: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.model_dir = Path(model_dir)
        self.backend = backend
        self.fork_safe = fork_safe
        self.max_pixels = max_pixels
        labels, image_size, weights = check_model_files(self.model_dir, backend)
        self.info = ModelInfo(labels=labels, image_size=image_size, sha256=file_sha256(weights))
        self._run = self._load_keras(weights) if backend == "keras" else self._load_litert(weights)

    # The Kubeless runtime forks a child per request after the model is loaded in the parent. TensorFlow
    # survives that only with one intra-op thread configured before the model loads, and eager calls in
    # the child (see shared/reference/what-runs-here.md, "The fork trap"). We use eager calls always, so
    # the function and the container run the very same code path; fork_safe only pins the thread pool.
    def _load_keras(self, path: Path):
        import tensorflow as tf

        if self.fork_safe:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        import keras

        model = keras.models.load_model(path, compile=False)

        def run(batch: np.ndarray) -> np.ndarray:
            return np.asarray(model(batch, training=False))

        return run

    def _load_litert(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]

        def run(batch: np.ndarray) -> np.ndarray:
            interpreter.set_tensor(input_index, batch)
            interpreter.invoke()
            return interpreter.get_tensor(output_index).copy()

        return run

    def preprocess(self, data: bytes) -> np.ndarray:
        """Image bytes -> a (1, S, S, 3) float32 batch in 0..255 (the model rescales itself)."""
        pixels = decode_image(data, self.info.image_size, self.max_pixels)
        return pixels[np.newaxis].astype(np.float32)

    def predict_array(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch)

    def predict_bytes(self, data: bytes) -> dict[str, Any]:
        """Decode, preprocess and predict one image; return the fixed-length result dict.

        `prediction_ms` covers decode + preprocess + model, i.e. everything the model path costs, which is
        what the paper calls prediction time.
        """
        start = time.perf_counter()
        batch = self.preprocess(data)
        scores = self._run(batch)[0]
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        return make_result(self.info, scores, elapsed_ms, self.backend)

    def warm_up(self, calls: int) -> None:
        """Predict `calls` synthetic JPEG and PNG images (alternating) before serving.

        Whatever the first predictions set up lazily (Pillow's format plugins, TensorFlow's kernels and oneDNN
        primitives, LiteRT's buffers) is then paid here and not by the first requests. Every function platform
        does it at load time (its WARMUP_CALLS, 0 turns it off), so they start from the same state.
        """
        size = self.info.image_size * 3
        samples = []
        for fmt in ("JPEG", "PNG"):
            buffer = io.BytesIO()
            Image.new("RGB", (size, size), (140, 100, 60)).save(buffer, fmt)
            samples.append(buffer.getvalue())
        for i in range(calls):
            self.predict_bytes(samples[i % len(samples)])


def make_result(info: ModelInfo, scores: np.ndarray, prediction_ms: float, backend: str) -> dict[str, Any]:
    """Build the result dict; its `pad` field makes json.dumps(result) exactly RESULT_JSON_LENGTH long."""
    top = int(np.argmax(scores))
    result: dict[str, Any] = {
        "label": info.labels[top],
        "scores": {label: round(float(s), 6) for label, s in zip(info.labels, scores, strict=True)},
        "prediction_ms": round(float(prediction_ms), 3),
        "backend": backend,
        "model_sha256": info.sha256[:12],
        "pad": "",
    }
    missing = RESULT_JSON_LENGTH - len(json.dumps(result))
    if missing < 0:
        raise ValueError(f"result JSON is {-missing} characters over RESULT_JSON_LENGTH; raise the constant")
    result["pad"] = " " * missing
    return result


def log_line(result: dict[str, Any], platform: str, **extra: Any) -> str:
    """The one JSON log line per prediction that both servers print and the benchmark collects."""
    record = {
        "event": "prediction",
        "platform": platform,
        "ts": round(time.time(), 6),
        "label": result["label"],
        "prediction_ms": result["prediction_ms"],
        "backend": result["backend"],
    }
    record.update(extra)
    return json.dumps(record)


def predictor_from_env(fork_safe: bool = False) -> Predictor:
    """Build a Predictor from MODEL_DIR / MODEL_BACKEND / MAX_PIXELS, as both servers do at start."""
    model_dir = os.environ.get("MODEL_DIR", "/model")
    backend = os.environ.get("MODEL_BACKEND", DEFAULT_BACKEND)
    max_pixels = int(os.environ.get("MAX_PIXELS", DEFAULT_MAX_PIXELS))
    return Predictor(model_dir, backend=backend, fork_safe=fork_safe, max_pixels=max_pixels)
