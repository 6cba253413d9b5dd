"""The prediction function for OpenFaaS's python3-http template: `handle(event, context)` over model/inference.py.

The template's server imports this module once, when the watchdog starts it, so the model is loaded (and warmed
up) here, at import: from then on every request is a prediction in a warm process. Until the import is done the
server does not listen, and the watchdog answers 500 for every request it proxies (../README.md, "start-up").

Bad input is a 4xx with the inference core's JSON error, as the other platforms answer it. A GET without a body
answers 200 with what is loaded: that is what `ready_path=/` asks the function for.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from contextlib import nullcontext
from typing import Any

from model.inference import DEFAULT_MAX_BODY_BYTES, InferenceError, image_bytes_from_body, log_line, predictor_from_env

MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
WARMUP_CALLS = int(os.environ.get("WARMUP_CALLS", "3"))
PLATFORM = os.environ.get("PLATFORM_NAME", "openfaas-http")
JSON = {"Content-Type": "application/json"}

PREDICTOR = predictor_from_env()
# waitress runs handle() on 4 threads: Keras eager calls may run side by side, a LiteRT interpreter may not.
_CALL_LOCK = threading.Lock() if PREDICTOR.backend == "litert" else nullcontext()


PREDICTOR.warm_up(WARMUP_CALLS)


def handle(event: Any, context: Any) -> dict[str, Any]:
    if event.method == "GET" and not event.body:
        info = {"status": "ready", "backend": PREDICTOR.backend, "model_sha256": PREDICTOR.info.sha256[:12]}
        return {"statusCode": 200, "body": json.dumps(info), "headers": JSON}
    try:
        image = image_bytes_from_body(event.body, event.headers.get("Content-Type"), MAX_BODY_BYTES)
        with _CALL_LOCK:
            result = PREDICTOR.predict_bytes(image)
    except InferenceError as exc:
        return {"statusCode": exc.status, "body": exc.to_json(), "headers": JSON}
    sys.stdout.write(log_line(result, PLATFORM) + "\n")
    sys.stdout.flush()
    return {"statusCode": 200, "body": json.dumps(result), "headers": JSON}
