"""HTTP/1.1 on asyncio for the Knative stand-ins (activator.py, queue_proxy.py): a keep-alive server and a
keep-alive client pool, standard library only.

Both upstream programs are Go reverse proxies (net/http + httputil.ReverseProxy). What shapes the numbers this
kit measures is kept: keep-alive on both sides, a pool of idle upstream connections bounded like the upstream
transport's MaxIdleConnsPerHost, an idempotent request retried once on a new connection when a reused idle one
turns out closed before any byte of the reply came back (what Go's transport does), and bodies of the kit's size.
Bodies are buffered whole, in both directions (Go streams them, flushing every 100 ms at most); every reply
carries a Content-Length. A client that closes its connection cancels its request (Go cancels its context).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEAD_BYTES = 1 << 20  # Go's http.DefaultMaxHeaderBytes
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # what Go's transport retries on a new connection
CLIENT_GONE_POLL_S = 0.1  # how often a long request checks whether its client closed the connection
HOP_BY_HOP = frozenset({"connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade"})


class UpstreamError(Exception):
    """The upstream could not be reached or broke off (the error httputil.ReverseProxy hands its ErrorHandler)."""


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)


Handler = Callable[[Request], Awaitable[Response]]


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


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ValueError(f"malformed header line {line[:80]!r}")
            headers.append((name, value.strip()))
    return lines[0], headers


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]], until_eof: bool = False) -> bytes:
    lowered = {k.lower(): v for k, v in headers}
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    if "content-length" in lowered:
        n = int(lowered["content-length"])
        if n < 0:
            raise ValueError("negative Content-Length")
        return await reader.readexactly(n) if n else b""
    return await reader.read() if until_eof else b""


def _keep_alive(version: str, headers: list[tuple[str, str]]) -> bool:
    connection = ",".join(v for k, v in headers if k.lower() == "connection").lower()
    return "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "status code " + str(status)


def _serialise(resp: Response, keep_alive: bool, version: str, head_only: bool) -> bytes:
    lines = [f"HTTP/1.1 {resp.status} {_reason(resp.status)}"]
    lines += [f"{k}: {v}" for k, v in resp.headers if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
    lines.append("Date: " + email.utils.formatdate(usegmt=True))
    if resp.status >= 200 and resp.status not in (204, 304):
        lines.append(f"Content-Length: {len(resp.body)}")
    if keep_alive and version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    elif not keep_alive and version != "HTTP/1.0":
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + resp.body


class Server:
    """One listening socket; each request is read whole, handed to `handler`, and its reply written whole.
    `idle_timeout` closes a keep-alive connection that waits longer for its next request (0: never)."""

    def __init__(self, handler: Handler, idle_timeout: float = 0) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout or None
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._connection, host, port, limit=MAX_HEAD_BYTES, backlog=1024)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        head = await reader.readuntil(b"\r\n\r\n")
                    request_line, headers = _parse_head(head)
                    method, target, version = request_line.split(" ")
                    if not version.startswith("HTTP/1."):
                        raise ValueError(version)
                    if "100-continue" in ",".join(v for k, v in headers if k.lower() == "expect").lower():
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    body = await _read_body(reader, headers)
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                 b"Connection: close\r\n\r\n400 Bad Request")
                    return
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                keep_alive = _keep_alive(version, headers)
                resp = await self._serve(reader, Request(method, target, version, headers, body))
                if resp is None:
                    return
                writer.write(_serialise(resp, keep_alive, version, method == "HEAD"))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, request: Request) -> Response | None:
        """Run the handler; cancel it when the client goes away first (Go cancels the request's context when
        its connection closes: a request waiting in a breaker leaves the queue). None: nobody to answer."""
        task = asyncio.ensure_future(self.handler(request))
        while True:
            done, _ = await asyncio.wait({task}, timeout=CLIENT_GONE_POLL_S)
            if done:
                return task.result()
            if reader.at_eof():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return None

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


class _Conn:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.idle_since = reader, writer, 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Pool:
    """Keep-alive connections to one host:port, at most `max_idle` kept idle for `idle_timeout` seconds."""

    def __init__(self, host: str, port: int, max_idle: int, idle_timeout: float = 90.0,
                 dial_timeout: float = 30.0) -> None:
        self.host, self.port, self.max_idle, self.idle_timeout = host, port, max_idle, idle_timeout
        self.dial_timeout = dial_timeout
        self._idle: list[_Conn] = []

    async def _dial(self) -> _Conn:
        try:
            async with asyncio.timeout(self.dial_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEAD_BYTES)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"dial tcp {self.host}:{self.port}: {exc}") from exc
        return _Conn(reader, writer)

    def _take_idle(self) -> _Conn | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since <= self.idle_timeout and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    async def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Response:
        """One request, its reply read whole. Cancelling the call (a timeout) closes its connection."""
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        conn = self._take_idle()
        reused = conn is not None
        while True:
            if conn is None:
                conn = await self._dial()
            got_reply = False
            try:
                conn.writer.write(payload)
                head = await conn.reader.readuntil(b"\r\n\r\n")
                got_reply = True
                status_line, resp_headers = _parse_head(head)
                version, status = status_line.split(" ", 2)[:2]
                framed = True
                if method == "HEAD" or status.startswith("1") or status in ("204", "304"):
                    resp_body = b""
                else:
                    lowered = {k.lower(): v for k, v in resp_headers}
                    framed = "content-length" in lowered or "chunked" in lowered.get("transfer-encoding", "")
                    resp_body = await _read_body(conn.reader, resp_headers, until_eof=not framed)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                conn.close()
                if reused and not got_reply and method in IDEMPOTENT:
                    conn, reused = None, False
                    continue
                raise UpstreamError(f"{method} http://{self.host}:{self.port}{target}: {exc!r}") from exc
            except BaseException:
                conn.close()
                raise
            if framed and _keep_alive(version, resp_headers) and len(self._idle) < self.max_idle:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()
            return Response(int(status), resp_headers, resp_body)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


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
