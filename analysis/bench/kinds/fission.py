"""Fission python environment (Flask on bjoern) behind Fission's router, as one local container (function/fission/).

Two kinds, one image, chosen by FISSION_EXECUTOR: `fission-2018` (0.11.0 router rules, one specialized process
serving all traffic) and `fission` (current router rules, poolmgr requestsPerPod = 1). Neither exposes a
per-request server-time histogram; the router prints one JSON line per request (`"event": "router"`, with the
status and whether the router or the function made it) and one per cold start (`"event": "cold_start"`).
"""

import json
from collections import Counter

from analysis.bench.platforms import Kind, register


def error_origins(log: str) -> Counter[str]:
    """Failed POST replies by who made them: the router's JSON line for each request names its `origin` (`router`
    for its own answers: no pod in time, the function's dial failing, the client gone; `function` for the
    environment's reply, which includes the environment's own 500 when the user code raised)."""
    out: Counter[str] = Counter()
    for line in log.splitlines():
        if '"event": "router"' not in line:
            continue
        try:
            record = json.loads(line[line.index("{"):])
        except ValueError:
            continue
        if record.get("method") == "POST" and not 200 <= int(record.get("status", 0)) < 300:
            out[str(record.get("origin", "router"))] += 1
    return out

FISSION_2018 = register(Kind(
    name="fission-2018",
    role="function",
    label="Fission 0.11.0 python env, poolmgr (one pod)",
    body_limit_check=True,
    warmup_env="WARMUP_CALLS",
    upstream="fission/fission 0.11.0 (router, poolmgr) + fission/environments python/server.py@45815b4",
    error_origins=error_origins,
))

FISSION = register(Kind(
    name="fission",
    role="function",
    label="Fission v1.26.0 python env, poolmgr requestsPerPod=1",
    body_limit_check=True,
    warmup_env="WARMUP_CALLS",
    upstream="fission/fission v1.26.0 (pkg/router, poolmgr) + fission/environments python/server.py@45815b4",
    error_origins=error_origins,
))
