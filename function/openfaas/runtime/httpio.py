"""HTTP/1.1 on asyncio for the OpenFaaS stand-ins (watchdog.py, gateway.py): a server with Go net/http's timeout
rules, and a keep-alive client pool like Go's http.Transport.

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

import asyncio
import contextlib
import email.utils
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEADER_BYTES = 1 << 20  # Go's http.DefaultMaxHeaderBytes, what both watchdogs and the gateway set
_HEADER_SLACK = 4096  # net/http allows this much over MaxHeaderBytes before answering 431
_HOP_BY_HOP = frozenset({"connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailer", "transfer-encoding", "upgrade"})


class ClientGone(Exception):
    """The client closed the connection or broke the protocol: nothing can be answered."""


class UpstreamError(Exception):
    """The upstream could not be reached or broke off (what Go's http.Client.Do returns as an error)."""


class Drop:
    """A handler's answer meaning: close the connection without a reply (a Go write deadline that passed)."""


DROP = Drop()


@dataclass
class Request:
    method: str
    target: str  # the raw request-target (Go's RequestURI): path and query as sent
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    remote: str = ""
    headers_done: float = 0.0  # loop time when the request headers were read (the write deadline starts here)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default


Handler = Callable[[Request], Awaitable[Response | Drop]]


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


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "status code " + str(status)


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"malformed header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return lines[0], headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    lowered = {k.lower(): v for k, v in headers}
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    length = lowered.get("content-length")
    if length:
        n = int(length)
        if n < 0:
            raise ValueError("negative Content-Length")
        return await reader.readexactly(n) if n else b""
    return b""


def _wants_keep_alive(version: str, headers: list[tuple[str, str]]) -> bool:
    connection = ",".join(v for k, v in headers if k.lower() == "connection").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _serialise(resp: Response, keep_alive: bool, request_version: str, head_only: bool) -> bytes:
    lines = [f"HTTP/1.1 {resp.status} {_reason(resp.status)}"]
    for name, value in resp.headers:
        if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
            lines.append(f"{name}: {value}")
    lines.append("Date: " + email.utils.formatdate(usegmt=True))
    if resp.status >= 200 and resp.status not in (204, 304):
        lines.append(f"Content-Length: {len(resp.body)}")
    if keep_alive and request_version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    elif not keep_alive and request_version != "HTTP/1.0":
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + resp.body


def plain(status: int, text: str = "", headers: list[tuple[str, str]] | None = None) -> Response:
    """A text/plain reply, as Go's http.Error or a handler's WriteHeader + Write give."""
    extra = headers or []
    if text:
        extra = [("Content-Type", "text/plain; charset=utf-8"), *extra]
    return Response(status, extra, text.encode())


class Server:
    """One listening socket, a handler per request, Go net/http's timeouts (see the module docstring)."""

    def __init__(self, handler: Handler, read_timeout: float, write_timeout: float) -> None:
        self.handler = handler
        self.read_timeout = read_timeout or None
        self.write_timeout = write_timeout or None
        self.server: asyncio.base_events.Server | None = None
        self.in_flight = 0

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(
            self._connection, host, port, limit=MAX_HEADER_BYTES + _HEADER_SLACK, backlog=1024
        )

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.read_timeout):
                        head = await reader.readuntil(b"\r\n\r\n")
                        request_line, headers = _parse_head(head)
                        method, target, version = request_line.split(" ")
                        if not version.startswith("HTTP/1."):
                            raise ValueError(f"unsupported protocol {version!r}")
                        headers_done = loop.time()
                        if "100-continue" in ",".join(v for k, v in headers if k.lower() == "expect").lower():
                            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                        body = await _read_body(reader, headers)
                except asyncio.LimitOverrunError:
                    writer.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; "
                                 b"charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large")
                    return
                except ValueError:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                 b"Connection: close\r\n\r\n400 Bad Request")
                    return
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                request = Request(method, target, version, headers, body, remote, headers_done)
                keep_alive = _wants_keep_alive(version, headers)
                self.in_flight += 1
                try:
                    resp = await self.handler(request)
                finally:
                    self.in_flight -= 1
                if isinstance(resp, Drop) or (
                    self.write_timeout is not None and loop.time() - headers_done > self.write_timeout
                ):
                    return
                writer.write(_serialise(resp, keep_alive, version, method == "HEAD"))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, ClientGone):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


class _Conn:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class UpstreamPool:
    """Keep-alive connections to one upstream host:port (Go's http.Transport for one host)."""

    def __init__(self, host: str, port: int, max_idle: int, idle_timeout: float, dial_timeout: float) -> None:
        self.host, self.port = host, port
        self.max_idle, self.idle_timeout = max_idle, idle_timeout
        self.dial_timeout = dial_timeout or None
        self._idle: list[_Conn] = []

    async def _dial(self) -> _Conn:
        try:
            async with asyncio.timeout(self.dial_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEADER_BYTES)
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

    def _give_back(self, conn: _Conn) -> None:
        if len(self._idle) < self.max_idle:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    async def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Response:
        """Send one request and read the whole reply; UpstreamError if it cannot be had. A caller's timeout
        (asyncio.timeout around this call) cancels it and the connection is closed, never reused."""
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"]
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
                if method == "HEAD" or status.startswith("1") or status in ("204", "304"):
                    resp_body = b""
                    framed = True
                else:
                    lowered = {k.lower(): v for k, v in resp_headers}
                    framed = "content-length" in lowered or "chunked" in lowered.get("transfer-encoding", "")
                    resp_body = await (_read_body(conn.reader, resp_headers) if framed else conn.reader.read())
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                conn.close()
                if reused and not got_reply:
                    conn, reused = None, False
                    continue
                raise UpstreamError(f"{method} http://{self.host}:{self.port}{target}: {exc!r}") from exc
            except BaseException:
                conn.close()  # cancelled (a deadline) or worse: the connection state is unknown
                raise
            if framed and _wants_keep_alive(version, resp_headers):
                self._give_back(conn)
            else:
                conn.close()
            return Response(int(status), resp_headers, resp_body)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def split_host_port(url: str, default_port: int = 80) -> tuple[str, int, str]:
    """`http://host:port/base` -> (host, port, base path without its trailing slash)."""
    rest = url.split("://", 1)[-1]
    hostport, _, base = rest.partition("/")
    host, _, port = hostport.partition(":")
    return host, int(port) if port else default_port, ("/" + base).rstrip("/")
