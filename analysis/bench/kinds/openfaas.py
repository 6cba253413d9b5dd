"""OpenFaaS, two kinds from one image (function/openfaas/, OPENFAAS_MODE): the gateway and faas-netes's proxy in
front of either watchdog, each a stand-in faithful to the pinned upstream (function/openfaas/README.md).

- openfaas-http: of-watchdog 0.11.3 in HTTP mode + the python3-http template (Flask on waitress, 4 threads), the model
  loaded once when the watchdog starts the function; it warms up with WARMUP_CALLS predictions, as the others do.
- openfaas-classic: the classic watchdog 0.3.1 + the python3 template: a new `python3 index.py` per request, so the
  model is loaded per request and there is no warm-up to turn off. Run it at bounded concurrency only.

Neither watchdog reports a per-request time histogram on its own port (of-watchdog's metrics port, 8081, is not
reproduced), so there is no server-time metric; the watchdogs' and the gateway's log lines carry each request's
duration, and X-OpenFaaS-Internal names the layer of a watchdog's or the proxy's own error reply.
"""

from analysis.bench.platforms import Kind, register

OPENFAAS_HTTP = register(Kind(
    name="openfaas-http",
    role="function",
    label="OpenFaaS function (of-watchdog, HTTP mode)",
    server_time_metric=None,
    body_limit_check=True,
    warmup_env="WARMUP_CALLS",
    upstream="openfaas/of-watchdog 0.11.3 mode=http + python-flask-template python3-http; gateway 0.27.13, "
             "faas-netes 0.18.16 (chart 15.0.5)",
))

OPENFAAS_CLASSIC = register(Kind(
    name="openfaas-classic",
    role="function",
    label="OpenFaaS function (classic watchdog, a process per request)",
    server_time_metric=None,
    body_limit_check=True,
    warmup_env=None,
    upstream="openfaas/classic-watchdog 0.3.1 + templates python3 (retired 2025); gateway 0.27.13, "
             "faas-netes 0.18.16 (chart 15.0.5)",
))
