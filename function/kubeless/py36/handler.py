"""The paper's prediction function as a 2018 user ran it on Kubeless 1.0.0-alpha.8: handler `handler.predict`.

Runs in the stock python3.6 runtime (kubeless/python@sha256:0c9f8f72..., Python 3.6.3) with Keras 2.2 and
TensorFlow 1.x, which the runtime's `install` init container pip-installs from the Function's deps
(requirements.txt beside this file). The whole function is this one file, sent as the Function's code
(content type text), so it may use only Python 3.6 and what requirements.txt pins: no dataclasses, no
`from __future__ import annotations`, no `X | Y` types. tests/test_paper_third_review.py checks it with the 3.6
grammar and runs it under today's Keras against the project's own inference core.

The model comes from MODEL_DIR (a hostPath volume the Function's deployment template mounts): model.h5, the CNN's
weights in the HDF5 layout Keras 2.2 reads (`python -m model export --format h5`), and labels.json. The layers are
built here with the Keras 2.2 API, the same as model/cnn.py's except its Rescaling layer (absent from Keras 2.2):
the pixels are divided by 255 here instead.

The runtime forks a child per request from the process that imported this module. The model is loaded at import,
as a 2018 function would; whether TensorFlow 1.x's session survives that fork was never tried here (see
docs/paper-profile.md).
"""

import io
import json
import os
import sys
import time

import h5py
import numpy as np
from PIL import Image

MODEL_DIR = os.environ.get("MODEL_DIR", "/model")
MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", str(10 * 1024 * 1024)))
MAX_PIXELS = int(os.environ.get("MAX_PIXELS", "40000000"))
RESULT_JSON_LENGTH = 256
IMAGE_CONTENT_TYPES = ("image/jpeg", "image/png", "application/octet-stream")
EXIF_ORIENTATION = 274
TRANSPOSE = {2: [Image.FLIP_LEFT_RIGHT], 3: [Image.ROTATE_180], 4: [Image.FLIP_TOP_BOTTOM],
             5: [Image.ROTATE_90, Image.FLIP_TOP_BOTTOM], 6: [Image.ROTATE_270],
             7: [Image.ROTATE_270, Image.FLIP_TOP_BOTTOM], 8: [Image.ROTATE_90]}


class BadRequest(Exception):
    """A request the model cannot serve; `status` is the HTTP status to answer with."""

    def __init__(self, code, message, status=400):
        Exception.__init__(self, message)
        self.code = code
        self.status = status

    def to_json(self):
        return json.dumps({"error": self.code, "message": str(self), "status": self.status})


def build_model(image_size, num_classes, dense_units):
    """model/cnn.py's layers with the Keras 2.2 API (inputs already divided by 255)."""
    from keras.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
    from keras.models import Sequential

    return Sequential([
        Conv2D(32, (3, 3), activation="relu", input_shape=(image_size, image_size, 3)),
        MaxPooling2D(),
        Conv2D(32, (3, 3), activation="relu"),
        MaxPooling2D(),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D(),
        Flatten(),
        Dense(dense_units, activation="relu"),
        Dropout(0.5),
        Dense(num_classes, activation="softmax"),
    ])


def load(model_dir):
    """(model, labels, image_size, model_sha256) from model.h5 and labels.json in model_dir."""
    import hashlib

    weights = os.path.join(model_dir, "model.h5")
    with open(os.path.join(model_dir, "labels.json")) as fh:
        labels = json.load(fh)["labels"]
    with h5py.File(weights, "r") as f:
        shape = (int(f.attrs["image_size"]), int(f.attrs["num_classes"]), int(f.attrs["dense_units"]))
    model = build_model(*shape)
    model.load_weights(weights)
    with open(weights, "rb") as fh:
        sha256 = hashlib.sha256(fh.read()).hexdigest()
    return model, labels, shape[0], sha256


def decode(data, size):
    """Image bytes -> (size, size, 3) uint8 RGB: EXIF orientation applied, draft-decoded, bilinear resize."""
    if not data:
        raise BadRequest("empty_body", "the request body is empty; POST the image bytes")
    try:
        img = Image.open(io.BytesIO(data))
    except OSError:
        raise BadRequest("not_an_image", "the body is not an image Pillow can read (expected JPEG or PNG)") from None
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise BadRequest("too_many_pixels",
                         f"the image is {width}x{height} pixels; the limit is {MAX_PIXELS}")
    orientation = None
    if img.format == "JPEG":
        exif = img._getexif() if hasattr(img, "_getexif") else None
        orientation = (exif or {}).get(EXIF_ORIENTATION)
        if img.mode in ("RGB", "L", "CMYK"):
            img.draft("RGB" if img.mode != "CMYK" else img.mode, (size, size))
    try:
        img.load()
    except (OSError, SyntaxError) as exc:
        raise BadRequest("truncated_image", f"the image data is truncated or corrupt: {exc}") from None
    for method in TRANSPOSE.get(orientation, []):
        img = img.transpose(method)
    if img.mode != "RGB":
        img = img.convert("RGB")
    img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def scores_for(model, pixels):
    """The softmax scores of one decoded image (the 1/255 of model/cnn.py's Rescaling layer, done here)."""
    batch = pixels[np.newaxis].astype(np.float32) / np.float32(255.0)
    return np.asarray(model.predict(batch))[0]


def result(labels, scores, prediction_ms, sha256):
    """The fixed-length result of model/inference.py (make_result): same keys, padded to 256 characters."""
    top = int(np.argmax(scores))
    out = {"label": labels[top],
           "scores": dict((label, round(float(s), 6)) for label, s in zip(labels, scores)),
           "prediction_ms": round(float(prediction_ms), 3), "backend": "keras22", "model_sha256": sha256[:12],
           "pad": ""}
    out["pad"] = " " * max(0, RESULT_JSON_LENGTH - len(json.dumps(out)))
    return out


def image_from_event(event):
    """The image bytes of a raw body (image/jpeg, image/png, application/octet-stream)."""
    request = (event.get("extensions") or {}).get("request")
    content_type = request.get_header("Content-Type") if request is not None else None
    kind = (content_type or "application/octet-stream").split(";", 1)[0].strip().lower()
    data = event.get("data")
    if kind not in IMAGE_CONTENT_TYPES or not isinstance(data, (bytes, bytearray, str)):
        raise BadRequest("unsupported_content_type",
                         "send the image as image/jpeg, image/png or application/octet-stream")
    if isinstance(data, str):
        data = data.encode("latin-1")
    if len(data) > MAX_BODY_BYTES:
        raise BadRequest("body_too_large",
                         f"the body is {len(data)} bytes; the limit is {MAX_BODY_BYTES}", 413)
    return bytes(data)


MODEL, LABELS, IMAGE_SIZE, MODEL_SHA256 = load(MODEL_DIR)


def predict(event, context):
    """Classify the image in the request; return the fixed-length result dict (bottle sends it as JSON)."""
    start = time.time()
    try:
        scores = scores_for(MODEL, decode(image_from_event(event), IMAGE_SIZE))
    except BadRequest as exc:
        import bottle

        raise bottle.HTTPResponse(body=exc.to_json(), status=exc.status,
                                  headers={"Content-Type": "application/json"}) from None
    out = result(LABELS, scores, (time.time() - start) * 1000.0, MODEL_SHA256)
    sys.stdout.write(json.dumps({"event": "prediction", "platform": "function", "ts": round(time.time(), 6),
                                 "label": out["label"], "prediction_ms": out["prediction_ms"],
                                 "backend": out["backend"]}) + "\n")
    sys.stdout.flush()
    return out
