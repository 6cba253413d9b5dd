"""Fission python environment (Flask on bjoern) behind Fission's router, as one local container (function/fission/).

Two kinds, one image, chosen by FISSION_EXECUTOR: `fission-2018` (0.11.0 router rules, one specialized process
serving all traffic) and `fission` (current router rules, poolmgr requestsPerPod = 1). Neither exposes a
per-request server-time histogram; the router prints one JSON line per request (`"event": "router"`, with the
status and whether the router or the function made it) and one per cold start (`"event": "cold_start"`).
"""

from analysis.bench.platforms import Kind, register

FISSION_2018 = register(Kind(
    name="fission-2018",
    role="function",
    label="Fission 0.11.0 python env, poolmgr (one pod)",
    body_limit_check=True,
    warmup_env="WARMUP_CALLS",
    upstream="fission/fission 0.11.0 (router, poolmgr) + fission/environments python/server.py@45815b4",
))

FISSION = register(Kind(
    name="fission",
    role="function",
    label="Fission v1.26.0 python env, poolmgr requestsPerPod=1",
    body_limit_check=True,
    warmup_env="WARMUP_CALLS",
    upstream="fission/fission v1.26.0 (pkg/router, poolmgr) + fission/environments python/server.py@45815b4",
))
