"""A Kubeless function that exercises the runtime: `POST /?action=NAME` picks what it does.

Served by function/kubeless/runtime/kubeless.py in tests/test_function_runtime.py; not a pytest module.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import bottle

CALLS = 0  # module state: each call runs in a fresh fork, so a call never sees another call's increment


def _describe(event: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    data = event["data"]
    request = event["extensions"]["request"]
    name = context["function-name"]
    return {
        "event_keys": sorted(event),
        "extension_keys": sorted(event["extensions"]),
        "data_type": type(data).__name__,
        "data_len": len(data) if isinstance(data, bytes | str) else None,
        "data": data if isinstance(data, dict | list) else None,
        "headers": {key: event[key] for key in ("event-id", "event-type", "event-time", "event-namespace")},
        "request_is_bottle": isinstance(request, bottle.BaseRequest),
        "method": request.method,
        "context_keys": sorted(context),
        "function_name_type": type(name).__name__,
        "function_name": name if isinstance(name, str) else getattr(name, "__name__", None),
        "timeout": context["timeout"],
        "runtime": context["runtime"],
        "memory_limit": context["memory-limit"],
        "pid": os.getpid(),
        "ppid": os.getppid(),
    }


def probe(event: dict[str, Any], context: dict[str, Any]) -> Any:
    global CALLS  # noqa: PLW0603 - the point is to show module state does not survive a call
    query = event["extensions"]["request"].query
    action = query.get("action", "echo")
    if action == "echo":
        return _describe(event, context)
    if action == "count":
        CALLS += 1
        return {"calls": CALLS}
    if action == "sleep":
        time.sleep(float(query.get("seconds", "1")))
        return "slept"
    if action == "raise":
        raise ValueError("the probe raised on purpose")
    if action == "bytes":
        return "x" * int(query.get("n", "1"))
    if action == "unpicklable":
        return threading.Lock()
    if action == "http_response":
        raise bottle.HTTPResponse(body='{"error": "teapot"}', status=418, headers={"Content-Type": "application/json"})
    if action == "exit":
        os._exit(3)  # the call's process dies without answering
    if action == "number":
        return 42
    return f"unknown action {action!r}"
