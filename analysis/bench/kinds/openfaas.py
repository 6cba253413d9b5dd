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

import re
from collections import Counter

from analysis.bench.platforms import Kind, register

# the gateway's line for every call it forwarded, with the status its client got
_FORWARDED = re.compile(r"Forwarded \[POST\] to \S+ - \[(?P<status>\d{3})\]")
# lines that name a reply a component made itself, each once per such reply
_OWN = (
    ("gateway", re.compile(r"error with upstream request to: .*: no such host$")),  # answered with no Forwarded line
    ("gateway", re.compile(r"error with upstream request to: ")),
    ("faas-netes", re.compile(r"resolver error: no endpoints for |error with proxy request to: ")),
    ("watchdog", re.compile(r"Upstream HTTP killed due to exec_timeout|Upstream HTTP request error: ")),
    ("watchdog", re.compile(r"Killing process: ")),
)
_NOT_FORWARDED = 0  # the index in _OWN of the one own reply the gateway does not log a Forwarded line for
# of-watchdog's line for a call its upstream answered (HTTP mode), with the upstream's status
_UPSTREAM = re.compile(r"\bPOST \S+ - (?P<status>\d{3}) - ContentLength: ")


def error_origins(log: str) -> Counter[str]:
    """Failed POST replies by the component that made them, from the container's log: the gateway's, faas-netes's
    and the watchdog's own error lines name theirs; the rest of the non-2xx the gateway forwarded (or, without a
    gateway line, of-watchdog's non-2xx upstream lines) are the function's own answers (a classic-watchdog 500 is
    the function process exiting non-zero: the watchdog reports it, the function caused it)."""
    out: Counter[str] = Counter()
    forwarded_bad = upstream_bad = not_forwarded = 0
    for line in log.splitlines():
        if m := _FORWARDED.search(line):
            forwarded_bad += not m["status"].startswith("2")
            continue
        if m := _UPSTREAM.search(line):
            upstream_bad += not m["status"].startswith("2")
            continue
        for i, (name, pattern) in enumerate(_OWN):
            if pattern.search(line):
                out[name] += 1
                not_forwarded += i == _NOT_FORWARDED
                break
    # every other own reply also reached the client through the gateway's forward, which logged it as Forwarded
    own = sum(out.values()) - not_forwarded
    function = (forwarded_bad - own) if forwarded_bad else upstream_bad
    if function > 0:
        out["function"] = function
    return out

OPENFAAS_HTTP = register(Kind(
    name="openfaas-http",
    role="function",
    label="OpenFaaS function (of-watchdog, HTTP mode)",
    server_time_metric=None,
    body_limit_check=True,
    warmup_env="WARMUP_CALLS",
    upstream="openfaas/of-watchdog 0.11.3 mode=http + python-flask-template python3-http; gateway 0.27.13, "
             "faas-netes 0.18.16 (chart 15.0.5)",
    error_origins=error_origins,
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
    error_origins=error_origins,
))
