"""The prediction action for OpenWhisk's python runtime: `main(params)` over model/inference.py.

The action is a zip whose `__main__.py` is this file; the runtime's launcher imports it once, inside the proxy's
/init (runtime/launcher.py), so the model is loaded and warmed up there: /init is this action's cold start, and
every /run after it is a prediction in a warm process.

`params` is what the controller makes of the request:
- a web action call (POST /api/v1/web/<namespace>/default/predict) with an image body arrives as
  `__ow_body`, the body base64-encoded (the controller does so for a binary content type), beside
  `__ow_headers` (whose content-type is checked as every platform of the kit checks it), `__ow_method` and
  `__ow_path`;
- a plain invoke (POST /api/v1/namespaces/<namespace>/actions/predict) passes {"image": "<base64>"}.

The answer is a web action's HTTP result, {"statusCode", "headers", "body"}: the inference core's 256-character
JSON with 200, or its JSON error with its 4xx, as the other platforms answer.
"""

import json
import os
import sys

from model.inference import (
    DEFAULT_MAX_BODY_BYTES,
    IMAGE_CONTENT_TYPES,
    InferenceError,
    UnsupportedContentType,
    image_bytes_from_body,
    log_line,
    media_type,
    predictor_from_env,
)

MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
WARMUP_CALLS = int(os.environ.get("WARMUP_CALLS", "3"))
PLATFORM = os.environ.get("PLATFORM_NAME", "openwhisk")
JSON_HEADERS = {"Content-Type": "application/json"}

# The 2018 python runtime (pythonrunner.py at 3@1.12.0-incubating) re-executed this whole module before every call
# of main: the guard keeps the model of the first execution there. Today's runtime imports the module once (in
# /init), so the guard is always true.
if "PREDICTOR" not in globals():
    PREDICTOR = predictor_from_env()
    PREDICTOR.warm_up(WARMUP_CALLS)


def image_of(params: dict) -> bytes:
    """The image bytes of a web action call (__ow_body) or of a plain invoke ({"image": ...})."""
    if "__ow_body" in params or "__ow_method" in params:  # a web action call (no body: no __ow_body)
        headers = params.get("__ow_headers") or {}
        content_type = headers.get("content-type")
        if media_type(content_type) not in IMAGE_CONTENT_TYPES:
            raise UnsupportedContentType(
                f"content type {media_type(content_type)!r} is not supported; send the image as image/jpeg, "
                "image/png or application/octet-stream")
        data = image_bytes_from_body({"image": params.get("__ow_body", "")}, "application/json", MAX_BODY_BYTES)
        return image_bytes_from_body(data, content_type, MAX_BODY_BYTES)
    return image_bytes_from_body({"image": params.get("image")}, "application/json", MAX_BODY_BYTES)


def main(params: dict) -> dict:
    try:
        result = PREDICTOR.predict_bytes(image_of(params))
    except InferenceError as exc:
        return {"statusCode": exc.status, "headers": JSON_HEADERS, "body": exc.to_json()}
    sys.stdout.write(log_line(result, PLATFORM, activation_id=os.environ.get("__OW_ACTIVATION_ID")) + "\n")
    sys.stdout.flush()
    return {"statusCode": 200, "headers": JSON_HEADERS, "body": json.dumps(result)}
