"""Knative Serving, two kinds from one image (function/knative/, KNATIVE_USER_CONTAINER): the activator and the
queue-proxy of Knative Serving v1.23.0, each a stand-in faithful to its rules (function/knative/README.md), in
front of one of two user containers. The entry's deploy.cc is the revision's containerConcurrency (0 or 1).

- knative-func: a func-python 0.8.1 function (Knative Functions' Python middleware on hypercorn, one event loop)
  over model/inference.py; it warms up with WARMUP_CALLS predictions in `start`, as the others do.
- knative-app: the kit's container server (image/: gunicorn, one sync worker per CPU) deployed as a Knative
  Service's user container, the way an existing image is; its /metrics (through the front) gives the server time.
  Like the container baseline it has no nowarmup step.

The revision starts at zero pods: the activator holds the first request while the pod starts and turns ready, so
a restart's cold start is a cold start from zero. The activator logs each reply that is not a 2xx with the layer
that made it (error_origins below): activator, queue-proxy, or the user container (`function`).
"""

import json
from collections import Counter

from analysis.bench.platforms import Kind, register


def error_origins(log: str) -> Counter[str]:
    """Failed POST replies by the layer that made them: the activator logs one JSON line per reply that is not a
    2xx (`"event": "reply"`) with its `origin`: `activator` (held past the revision timeout, its queue full, the pod
    unreachable), `queue-proxy` (its breaker's queue full, the revision timeout, the user container unreachable)
    or `function` (the user container's own answer: the inference core's 4xx, gunicorn's or hypercorn's 5xx)."""
    out: Counter[str] = Counter()
    for line in log.splitlines():
        if '"event": "reply"' not in line:
            continue
        try:
            record = json.loads(line[line.index("{"):])
        except ValueError:
            continue
        if record.get("method") == "POST":
            out[str(record.get("origin", "activator"))] += 1
    return out


UPSTREAM = "knative/serving knative-v1.23.0 (activator, queue-proxy, config-defaults, config-autoscaler)"

KNATIVE_FUNC = register(Kind(
    name="knative-func",
    role="function",
    label="Knative Serving function (func-python)",
    server_time_metric=None,
    body_limit_check=True,
    warmup_env="WARMUP_CALLS",
    upstream=UPSTREAM + " + knative-extensions/func-python 0.8.1 on hypercorn 0.17.3",
    error_origins=error_origins,
))

KNATIVE_APP = register(Kind(
    name="knative-app",
    role="function",
    label="Knative Serving, the container image as its user container",
    server_time_metric="http_request_duration_seconds",
    body_limit_check=True,
    warmup_env=None,  # as for the container baseline it is: its predict path is /predict, not the copy's /
    upstream=UPSTREAM + " + the kit's image/ (gunicorn) as the user container",
    error_origins=error_origins,
))
