"""HTTP/1.1 for the Knative stand-ins (activator.py, queue_proxy.py): function/common/http1.py's Go net/http
server and keep-alive client pool, set as these two programs run them, plus Knative's own timeout handler and the
kit's reply and event marks. Standard library only.

Both upstream programs are Go reverse proxies (net/http + httputil.ReverseProxy). What shapes the numbers this
kit measures is kept: keep-alive on both sides, a pool of idle upstream connections bounded like the upstream
transport's MaxIdleConnsPerHost, an idempotent request retried once on a new connection when a reused idle one
turns out closed before any byte of the reply came back (what Go's transport does), and bodies of the kit's size.
Bodies are buffered whole, in both directions (Go streams them, flushing every 100 ms at most); every reply
carries a Content-Length. A client that closes its connection cancels its request (Go cancels its context).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable

from function.common import http1
from function.common.http1 import Handler, Response

MAX_HEAD_BYTES = 1 << 20  # Go's http.DefaultMaxHeaderBytes; a longer head is answered 400
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # what Go's transport retries on a new connection


class Server(http1.Server):
    """One listening socket, no read timeout; a request whose client goes away is cancelled, nobody answered."""

    def __init__(self, handler: Handler) -> None:
        super().__init__(handler, max_header_bytes=MAX_HEAD_BYTES, header_too_large=400, watch_client=True)


class Pool(http1.Pool):
    """Keep-alive connections to one host:port, at most `max_idle` kept idle for `idle_timeout` seconds; only an
    idempotent request is retried on a new connection."""

    retry_methods = IDEMPOTENT


# Marks a reply a front layer made itself, between the queue-proxy and the activator: the activator reads it (its
# log line names the layer behind each failed reply) and removes it, so clients never see it. Not upstream.
LAYER_HEADER = "K-Kde-Layer"


def http_error(status: int, text: str, layer: str) -> Response:
    """Go's http.Error (text/plain, the message and a newline, X-Content-Type-Options: nosniff), made by `layer`."""
    return Response(status, [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff"),
                             (LAYER_HEADER, layer)], (text + "\n").encode())


def event(**fields: object) -> None:
    """One JSON line on stdout (the container's log): cold starts, scale events, failed replies and who made them."""
    sys.stdout.write(json.dumps({"ts": round(time.time(), 6), **fields}) + "\n")
    sys.stdout.flush()


async def with_timeout(work: Awaitable[Response], timeout: float, message: str, layer: str) -> Response:
    """Knative's timeout handler (pkg/http/handler/timeout.go) around a buffered proxy: when no reply has been
    written by `timeout` seconds, the answer is 504 with `message` as its body (no newline: it is written with
    io.WriteString, not http.Error) and the inner work is cancelled (its request context is)."""
    task = asyncio.ensure_future(work)
    if timeout <= 0:
        return await task
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if task in done:
        return task.result()
    task.cancel()
    return Response(504, [("Content-Type", "text/plain; charset=utf-8"), (LAYER_HEADER, layer)], message.encode())
