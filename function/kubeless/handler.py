"""The paper's prediction function, written against the Kubeless Python contract: handler `handler.predict`.

The runtime imports this module once, in its server process, before it serves; every call then runs in a
process forked from it. So the model is loaded here, at import, with the fork-safe TensorFlow settings (one
intra-op thread, eager calls): that is the only TensorFlow set-up that survives the fork (see
shared/reference/what-runs-here.md, "The fork trap"). Anything a call caches dies with its process.

Bad input is answered with a 4xx and a JSON error body by raising `bottle.HTTPResponse`: the Kubeless runtime
re-raises whatever the call raised, and bottle sends an HTTPResponse as is. A plain exception would be a 500
HTML page.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

import bottle
from PIL import Image

from model.inference import (
    DEFAULT_MAX_BODY_BYTES,
    BadJsonBody,
    InferenceError,
    Predictor,
    image_bytes_from_body,
    log_line,
    predictor_from_env,
)

MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
WARMUP_CALLS = int(os.environ.get("WARMUP_CALLS", "3"))


def warm_up(predictor: Predictor, calls: int) -> None:
    """Predict a few JPEG and PNG images in the server process, before it starts forking.

    Each call runs in a fresh child, so whatever the first prediction sets up lazily (Pillow's format plugins,
    TensorFlow's kernels and oneDNN primitives, LiteRT's buffers) would otherwise be redone on every request.
    Done once here, it is inherited by every child. Measured on the 2-core dev machine: the keras child's
    prediction drops from ~80 ms to ~40 ms, litert's from ~27 ms to ~12 ms; WARMUP_CALLS=0 turns it off.
    """
    size = predictor.info.image_size * 3
    samples = []
    for fmt in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        Image.new("RGB", (size, size), (140, 100, 60)).save(buffer, fmt)
        samples.append(buffer.getvalue())
    for i in range(calls):
        predictor.predict_bytes(samples[i % len(samples)])


PREDICTOR = predictor_from_env(fork_safe=True)
warm_up(PREDICTOR, WARMUP_CALLS)


def _content_type(event: dict[str, Any]) -> str | None:
    request = (event.get("extensions") or {}).get("request")
    return request.get_header("Content-Type") if request is not None else None


def predict(event: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Classify the image in the request; return the fixed-length result dict (bottle sends it as JSON)."""
    data = event.get("data")
    try:
        if data is not None and not isinstance(data, bytes | bytearray | str | dict):
            # The runtime parsed an application/json body into a list or a number.
            raise BadJsonBody('a JSON body must be an object {"image": "<base64 of the image file>"}')
        image = image_bytes_from_body(data, _content_type(event), MAX_BODY_BYTES)
        result = PREDICTOR.predict_bytes(image)
    except InferenceError as exc:
        raise bottle.HTTPResponse(
            body=exc.to_json(), status=exc.status, headers={"Content-Type": "application/json"}
        ) from None
    # One write, so that lines from concurrent calls (separate processes) never interleave on stdout.
    sys.stdout.write(log_line(result, "function") + "\n")
    sys.stdout.flush()
    return result
