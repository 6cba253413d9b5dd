"""What the OpenFaaS stand-ins (watchdog.py, gateway.py) take from Go's standard library besides net/http: log
lines, durations, http.Error and URL splitting. The server and the keep-alive client they run on are
function/common/http1.py's `Server` and `Pool` (shared with the other kinds), with the settings below.

The real watchdogs and gateway are Go programs built on net/http; what shapes their behaviour under load is kept:

- Server: `read_timeout` bounds reading a request (headers and body) and the idle wait between keep-alive requests
  (Go uses ReadTimeout as the idle timeout when IdleTimeout is 0); `write_timeout` runs from the end of the request
  headers, and a reply ready after it is never written: the connection is closed with no status (what a Go write
  deadline does). Headers are limited to 1 MiB (431 above). HTTP/1.0 and HTTP/1.1 keep-alive rules, 100-continue,
  chunked request bodies. Every reply is sent with a Content-Length (bodies are buffered, see the README).
- Client: idle connections are kept per upstream up to `max_idle` for `idle_timeout`, a request that fails on a
  reused connection before any byte of the reply came back is retried once on a new one (Go's transport does the
  same for a connection the server closed while idle), and a request cut short by its deadline loses its
  connection.

Standard library only, one event loop per process: the per-request cost is what scripts/openfaas-overhead.py
measures.
"""

from __future__ import annotations

import sys
import time

from function.common.http1 import Response


def log(message: str) -> None:
    """One line on stderr in Go's log.Printf format (date and time, then the message)."""
    sys.stderr.write(time.strftime("%Y/%m/%d %H:%M:%S ") + message + "\n")
    sys.stderr.flush()


def parse_duration(value: str | None, default: float) -> float:
    """Seconds from a watchdog/gateway setting: a whole number is seconds, else a Go duration ("1m5s", "500ms").
    An empty or unreadable value gives the default, as the Go readers do."""
    if not value:
        return default
    if value.isdigit():
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, number, i = 0.0, "", 0
    while i < len(value):
        ch = value[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = value[i:i + 2] if value[i:i + 2] in ("ms", "us", "µs", "ns") else ch
        if not number or unit not in units:
            return default
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    return default if number else total


def plain(status: int, text: str = "", headers: list[tuple[str, str]] | None = None) -> Response:
    """A text/plain reply, as Go's http.Error or a handler's WriteHeader + Write give."""
    extra = headers or []
    if text:
        extra = [("Content-Type", "text/plain; charset=utf-8"), *extra]
    return Response(status, extra, text.encode())


def split_host_port(url: str, default_port: int = 80) -> tuple[str, int, str]:
    """`http://host:port/base` -> (host, port, base path without its trailing slash)."""
    rest = url.split("://", 1)[-1]
    hostport, _, base = rest.partition("/")
    host, _, port = hostport.partition(":")
    return host, int(port) if port else default_port, ("/" + base).rstrip("/")
