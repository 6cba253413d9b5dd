"""Apache-style access log for the runtime, one line per request on stdout.

Kubeless alpha.8 wraps its bottle app in `wsgi-request-logger` (`WSGILogger` + `ApacheFormatter`), which writes
the Apache combined format followed by the elapsed time as `<whole seconds>/<microseconds>`:

    127.0.0.1 - - [28/Nov/2025:11:30:00 +0000] "POST / HTTP/1.0" 200 256 "-" "ApacheBench/2.3" 0/41234

This middleware writes the same line. One deliberate difference: the upstream middleware keeps the status and
size on the shared middleware object, so under concurrent requests a line can carry another request's status;
here they are kept per request, because the benchmark counts statuses (408s) from this log.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TextIO

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def format_access_line(environ: dict[str, Any], status: str, size: int, elapsed_us: int) -> str:
    """One Apache combined-log line plus the `seconds/microseconds` elapsed field."""
    query = environ.get("QUERY_STRING", "")
    request = "{} {}{}{} {}".format(
        environ.get("REQUEST_METHOD", ""),
        environ.get("PATH_INFO", ""),
        "?" if query else "",
        query,
        environ.get("SERVER_PROTOCOL", ""),
    )
    stamp = datetime.now().astimezone().strftime("%d/%b/%Y:%H:%M:%S %z")
    return (
        f'{environ.get("REMOTE_ADDR", "")} - - [{stamp}] "{request}" {status} {size} '
        f'"{environ.get("HTTP_REFERER", "")}" "{environ.get("HTTP_USER_AGENT", "")}" '
        f"{elapsed_us // 1_000_000}/{elapsed_us}"
    )


class ApacheAccessLog:
    """WSGI middleware that logs each request after the application has produced its response."""

    def __init__(self, app: WSGIApp, stream: TextIO | None = None) -> None:
        self.app = app
        self.logger = logging.getLogger("kubeless.access")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        if not self.logger.handlers:
            handler = logging.StreamHandler(stream or sys.stdout)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start = time.perf_counter()
        seen: dict[str, Any] = {"status": "-", "size": 0}

        def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = status.split(" ", 1)[0]
            seen["size"] = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
            return start_response(status, headers, exc_info)

        body = self.app(environ, _start_response)
        elapsed_us = int((time.perf_counter() - start) * 1_000_000)
        self.logger.info(format_access_line(environ, seen["status"], seen["size"], elapsed_us))
        return body
