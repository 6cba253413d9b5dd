"""The prediction function for OpenFaaS's classic python3 template: `handle(req)`, over model/inference.py.

The classic watchdog starts a new `python3 index.py` for every request, so this module, TensorFlow and the model
are imported and loaded again for every request, and N requests in flight hold N models in memory: that cost is
what this variant measures, so nothing here tries to avoid it (no warm-up either: each process predicts once).

The classic watchdog cannot send a status of the function's choosing: a process that exits 0 is a 200, any other
exit a 500 whose body is "exit status N" and the output. So bad input prints the inference core's JSON error and
exits 1 (a 500 carrying the JSON); the prediction's log line goes to stderr, since stdout is the reply.
"""

from __future__ import annotations

import json
import os
import sys

from model.inference import DEFAULT_MAX_BODY_BYTES, InferenceError, image_bytes_from_body, log_line, predictor_from_env

MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
PLATFORM = os.environ.get("PLATFORM_NAME", "openfaas-classic")

PREDICTOR = predictor_from_env()


def handle(req: bytes) -> str:
    # The watchdog passes the request headers as Http_* variables (cgi_headers, on by default).
    content_type = os.environ.get("Http_Content_Type")
    try:
        image = image_bytes_from_body(req, content_type, MAX_BODY_BYTES)
        result = PREDICTOR.predict_bytes(image)
    except InferenceError as exc:
        sys.stdout.write(exc.to_json() + "\n")
        sys.stdout.flush()
        sys.exit(1)
    sys.stderr.write(log_line(result, PLATFORM) + "\n")
    return json.dumps(result)
