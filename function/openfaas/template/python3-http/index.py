"""The python3-http template's server (openfaas/python-flask-template, template/python3-http/index.py): a Flask app
on waitress that turns each request into an `event`, calls `function.handler.handle(event, context)` and turns the
dict it returns (`statusCode`, `body`, `headers`) into the reply. The watchdog starts it once (fprocess) and proxies
every request to it on port 5000.

Written for this kit from what the upstream file does; the differences are listed in ../../README.md (listen address
and port are settings here, so that tests can run several side by side on 127.0.0.1).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request
from waitress import serve

from function import handler  # the user's folder, copied in beside this file as `function/` (faas-cli build)

app = Flask(__name__)


class Event:
    """What the handler sees of the request."""

    def __init__(self) -> None:
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


class Context:
    def __init__(self) -> None:
        self.hostname = os.getenv("HOSTNAME", "localhost")


def to_response(returned: Any):
    """The handler's dict -> Flask's (body, status, headers); anything else is handed to Flask as it is."""
    if returned is None:
        return "", 200
    if not isinstance(returned, dict):
        return returned
    body = returned.get("body", "")
    if isinstance(body, dict):
        body = jsonify(body)
    elif not isinstance(body, str):
        body = str(body)
    headers = returned.get("headers") or {}
    return body, returned.get("statusCode", 200), list(headers.items()) if isinstance(headers, dict) else headers


@app.route("/", defaults={"path": ""}, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
@app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
def call_handler(path: str):
    return to_response(handler.handle(Event(), Context()))


if __name__ == "__main__":
    serve(
        app,
        host=os.environ.get("FUNCTION_BIND_ADDRESS", "0.0.0.0"),
        port=int(os.environ.get("FUNCTION_PORT", "5000")),
        threads=int(os.environ.get("FUNCTION_THREADS", "4")),  # waitress's default, which the template keeps
    )
