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

import os
import sys
from typing import Any

import bottle

from model.inference import (
    DEFAULT_MAX_BODY_BYTES,
    BadJsonBody,
    InferenceError,
    image_bytes_from_body,
    log_line,
    predictor_from_env,
)

MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
WARMUP_CALLS = int(os.environ.get("WARMUP_CALLS", "3"))


PREDICTOR = predictor_from_env(fork_safe=True)
# In the server process, before it forks: every call's child inherits what the warm-up set up, instead of redoing
# it per request (measured on the 2-core dev machine: keras ~80 -> ~40 ms per child, litert ~27 -> ~12 ms).
PREDICTOR.warm_up(WARMUP_CALLS)


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
