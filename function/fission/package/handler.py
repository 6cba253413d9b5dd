"""The paper's prediction function, written against the Fission python environment: entry point `handler.main`.

Fission's convention: the function takes no arguments and reads the request from `flask.request`; what it
returns is a Flask response. The environment imports this module when it is specialized (POST /v2/specialize
with functionName "handler.main"), so the model is loaded here, at import: that load *is* the specialization
cost, i.e. Fission's cold start for this kit. The process then lives on and serves every call itself (no fork),
so no fork-safe TensorFlow settings are needed.

Bad input is answered with the inference core's 4xx and its JSON error body, as function/kubeless/handler.py
does; the environment sets no body limit, so the function's own MAX_BODY_BYTES is the one that applies.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from flask import Response, request

from model.inference import (
    DEFAULT_MAX_BODY_BYTES,
    InferenceError,
    image_bytes_from_body,
    log_line,
    predictor_from_env,
)

MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
WARMUP_CALLS = int(os.environ.get("WARMUP_CALLS", "3"))
PLATFORM = os.environ.get("FISSION_PLATFORM", "fission")
JSON_TYPE = "application/json"


# On a cluster the model arrives inside the package (package/model/, next to this file); locally the executor
# sets MODEL_DIR to the same fetched folder.
os.environ.setdefault("MODEL_DIR", str(Path(__file__).resolve().parent / "model"))
PREDICTOR = predictor_from_env()
PREDICTOR.warm_up(WARMUP_CALLS)


def main() -> Response:
    """Classify the image in the request body; answer the inference core's fixed-length JSON."""
    try:
        image = image_bytes_from_body(request.get_data(), request.headers.get("Content-Type"), MAX_BODY_BYTES)
        result = PREDICTOR.predict_bytes(image)
    except InferenceError as exc:
        return Response(exc.to_json(), status=exc.status, mimetype=JSON_TYPE)
    sys.stdout.write(log_line(result, PLATFORM) + "\n")
    sys.stdout.flush()
    return Response(json.dumps(result), status=200, mimetype=JSON_TYPE)
