"""HTTP/1.1 on asyncio streams for the platform stand-ins: the one parser, body reader and writer that the OpenFaaS
watchdogs and gateway, the Knative activator and queue-proxy, the Fission router and executor and the OpenWhisk
front share. Standard library only; every image copies this file beside the inference core (the Dockerfiles'
`function/common/` line), and a local process finds it with the repository root on PYTHONPATH.

Two ways to use it, one per design of the programs these stand in for:

- `Server` and `Pool` are Go net/http (a server with its timeouts, a keep-alive transport) for the programs that
  are Go reverse proxies (OpenFaaS, Knative). A handler gets a `Request` and returns a `Response` (or `DROP`).
  What differs between those programs is a setting: read and write timeouts, the header limit and its status,
  whether a request is cancelled when its client goes away (Server's arguments), and which methods a transport
  retries (Pool.retry_methods).
- `Message`, `request_message`, `head_message`, `read_body`, `encode_request` and `encode_response` are
  whole-message reading and writing for proxies that run their own connection loop (Fission's router,
  OpenWhisk's front): the caller reads the head its way (each has its own limit and buffer) and the rest is
  shared.

Bodies are buffered whole in both directions: requests are one photo and answers a 256-byte JSON, and what is
measured is each hop's per-request cost and its connection rules, not streaming. Where a program treats a
malformed message its own way, that stays in its kind's module (function/<kind>/runtime/).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

MAX_HEADER_BYTES = 1 << 20  # Go's http.DefaultMaxHeaderBytes
HOP_BY_HOP = frozenset({"connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade"})
CLIENT_GONE_POLL_S = 0.1  # how often a watched request checks whether its client closed the connection


class ProtocolError(ValueError):
    """The peer sent something that is not HTTP/1.x (a ValueError, so a caller that catches either is served)."""


class UpstreamError(Exception):
    """The upstream could not be reached or broke off (what Go's http.Client.Do returns as an error, and what
    httputil.ReverseProxy hands its ErrorHandler)."""


class ClientGone(Exception):
    """The client closed the connection or broke the protocol: nothing can be answered."""


class Drop:
    """A handler's answer meaning: close the connection without a reply (a Go write deadline that passed)."""


DROP = Drop()


def header(headers: list[tuple[str, str]], name: str, default: str | None = None) -> str | None:
    """The first value of header `name` (case-insensitive), else `default`."""
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), default)


def reason(status: int) -> str:
    """Go's http.StatusText, with the fallback its server writes for a code it does not know."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "status code " + str(status)


def parse_head(head: bytes, lenient: bool = False) -> tuple[tuple[str, str, str], list[tuple[str, str]]]:
    """The start line in its three parts (a missing reason phrase is "") and the header fields of one head,
    blank line included. A field name that is empty or has white space around it is refused, as RFC 9112 and
    Go's reader do; `lenient` strips it instead (the whole-message proxies' rule: a line needs only its colon)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2:
        raise ProtocolError(f"bad start line {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep or not (lenient or (name and name == name.strip())):
                raise ProtocolError(f"malformed header line {line[:80]!r}")
            headers.append((name.strip() if lenient else name, value.strip()))
    return (parts[0], parts[1], parts[2] if len(parts) > 2 else ""), headers


class Readable(Protocol):
    """What `read_body` needs of a stream: asyncio.StreamReader's three reads (Fission's Buffered has them too)."""

    async def readuntil(self, separator: bytes = ...) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...
    async def read(self, n: int = ...) -> bytes: ...


def is_chunked(headers: list[tuple[str, str]]) -> bool:
    return "chunked" in (header(headers, "Transfer-Encoding") or "").lower()


async def read_body(reader: Readable, headers: list[tuple[str, str]], until_eof: bool = False) -> bytes:
    """The body after a head with these headers: chunked, or Content-Length bytes (an empty value counts as none,
    as in Go), or else nothing, or everything up to the end of the stream where `until_eof` (an unframed reply)."""
    if is_chunked(headers):
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = (header(headers, "Content-Length") or "").strip()
    if length:
        n = int(length)
        if n < 0:
            raise ProtocolError("negative Content-Length")
        return await reader.readexactly(n) if n else b""
    return await reader.read() if until_eof else b""


def wants_keep_alive(version: str, headers: list[tuple[str, str]]) -> bool:
    """Whether the sender keeps the connection open after this message: HTTP/1.0 only with keep-alive, HTTP/1.1
    unless it says close."""
    tokens = {t.strip().lower() for k, v in headers if k.lower() == "connection" for t in v.split(",")}
    return "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens


def encode_request(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """A request as it goes on the wire, with its Content-Length; the caller's headers are sent as given."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def encode_response(version: str, status: int, reason_phrase: str, headers: list[tuple[str, str]], body: bytes,
                    close: bool, head_only: bool = False, request_version: str | None = None,
                    content_length: bool = True) -> bytes:
    """A response as it goes on the wire: the headers as given, the Content-Length (unless `content_length` is
    false) and the Connection header that the request's version needs (`request_version`, else `version`) when
    the connection closes or, for HTTP/1.0, stays open."""
    lines = [f"{version} {status} {reason_phrase}", *(f"{k}: {v}" for k, v in headers)]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    asked = request_version or version
    if close and asked != "HTTP/1.0":
        lines.append("Connection: close")
    elif not close and asked == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)


# ------------------------------------------------------------------------------ whole messages (Fission, OpenWhisk)
@dataclass
class Message:
    """A request (method, target, version) or a response (version, status, reason) with its whole body."""

    start: tuple[str, str, str]
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return header(self.headers, name)

    @property
    def version(self) -> str:
        return self.start[0] if self.start[0].startswith("HTTP/") else self.start[2]

    def wants_close(self) -> bool:
        """Whether the sender ends the connection after this message (HTTP/1.0 unless keep-alive, or close)."""
        return not wants_keep_alive(self.version, self.headers)


def request_message(head: bytes) -> Message:
    """A request's head as a Message (its body still to read); ProtocolError unless the version is HTTP/1.x."""
    msg = head_message(head)
    if not msg.start[2].startswith("HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x request line: {msg.start!r}")
    return msg


def head_message(head: bytes) -> Message:
    """A head as a Message (its body still to read), its header names read leniently."""
    return Message(*parse_head(head, lenient=True))


# ------------------------------------------------------------------------------ Go net/http (OpenFaaS, Knative)
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
        found = header(self.headers, name)
        return default if found is None else found


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        found = header(self.headers, name)
        return default if found is None else found


Handler = Callable[[Request], Awaitable[Response | Drop]]


def go_response(resp: Response, keep_alive: bool, request_version: str, head_only: bool) -> bytes:
    """What Go's server writes for `resp`: HTTP/1.1, its own hop-by-hop and length headers, a Date, and a
    Content-Length for every status that has a body (bodies are buffered whole)."""
    headers = [(k, v) for k, v in resp.headers if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
    headers.append(("Date", email.utils.formatdate(usegmt=True)))
    return encode_response("HTTP/1.1", resp.status, reason(resp.status), headers, resp.body, not keep_alive,
                           head_only, request_version,
                           content_length=resp.status >= 200 and resp.status not in (204, 304))


def _plain_error(status: int) -> bytes:
    text = f"{status} {reason(status)}"
    return (f"HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{text}"
            ).encode("latin-1")


class Server:
    """One listening socket with Go net/http's rules; each request is read whole, handed to `handler`, and its
    reply written whole.

    - `read_timeout` bounds reading a request (headers and body) and the idle wait between keep-alive requests
      (Go uses ReadTimeout as the idle timeout when IdleTimeout is 0); 0: none.
    - `write_timeout` runs from the end of the request headers: a reply ready after it is never written, the
      connection is closed with no status (what a Go write deadline does); 0: none. So does a handler's `DROP`.
    - A head over `max_header_bytes` is answered `header_too_large` (Go: 431, after 4 KiB of slack).
    - `watch_client`: a request whose client closes its connection is cancelled (Go cancels its context), and
      nobody is answered.
    HTTP/1.0 and HTTP/1.1 keep-alive rules, 100-continue, chunked request bodies.
    """

    def __init__(self, handler: Handler, read_timeout: float = 0, write_timeout: float = 0, *,
                 max_header_bytes: int = MAX_HEADER_BYTES + 4096, header_too_large: int = 431,
                 watch_client: bool = False) -> None:
        self.handler = handler
        self.read_timeout = read_timeout or None
        self.write_timeout = write_timeout or None
        self.max_header_bytes = max_header_bytes
        self.header_too_large = _plain_error(header_too_large)
        self.watch_client = watch_client
        self.server: asyncio.base_events.Server | None = None
        self.in_flight = 0

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._connection, host, port, limit=self.max_header_bytes,
                                                 backlog=1024)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.read_timeout):
                        head = await reader.readuntil(b"\r\n\r\n")
                        (method, target, version), headers = parse_head(head)
                        if " " in version or not version.startswith("HTTP/1."):
                            raise ProtocolError(f"unsupported protocol {version!r}")
                        headers_done = loop.time()
                        if "100-continue" in ",".join(v for k, v in headers if k.lower() == "expect").lower():
                            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                        body = await read_body(reader, headers)
                except asyncio.LimitOverrunError:
                    writer.write(self.header_too_large)
                    return
                except ValueError:
                    writer.write(_plain_error(400))
                    return
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                request = Request(method, target, version, headers, body, remote, headers_done)
                keep_alive = wants_keep_alive(version, headers)
                self.in_flight += 1
                try:
                    resp = await (self._watched(reader, request) if self.watch_client else self.handler(request))
                finally:
                    self.in_flight -= 1
                if resp is None or isinstance(resp, Drop) or (
                    self.write_timeout is not None and loop.time() - headers_done > self.write_timeout
                ):
                    return
                writer.write(go_response(resp, keep_alive, version, method == "HEAD"))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, ClientGone, asyncio.CancelledError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _watched(self, reader: asyncio.StreamReader, request: Request) -> Response | Drop | None:
        """Run the handler; cancel it when the client goes away first (a request waiting in a breaker leaves the
        queue). None: nobody to answer."""
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
    """Keep-alive connections to one upstream host:port (Go's http.Transport for one host): at most `max_idle`
    kept idle for `idle_timeout` seconds. A request that fails on a reused connection before any byte of the
    reply came back is retried once on a new one, if its method is in `retry_methods` (None: any method)."""

    retry_methods: frozenset[str] | None = None

    def __init__(self, host: str, port: int, max_idle: int, idle_timeout: float = 90.0,
                 dial_timeout: float = 30.0) -> None:
        self.host, self.port, self.max_idle, self.idle_timeout = host, port, max_idle, idle_timeout
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

    async def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Response:
        """Send one request and read the whole reply; UpstreamError if it cannot be had. A caller's timeout
        (asyncio.timeout around this call) cancels it and the connection is closed, never reused."""
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
                (version, status, _), resp_headers = parse_head(head)
                framed = True
                if method == "HEAD" or status.startswith("1") or status in ("204", "304"):
                    resp_body = b""
                else:
                    framed = is_chunked(resp_headers) or bool(header(resp_headers, "Content-Length"))
                    resp_body = await read_body(conn.reader, resp_headers, until_eof=not framed)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                conn.close()
                if reused and not got_reply and (self.retry_methods is None or method in self.retry_methods):
                    conn, reused = None, False
                    continue
                raise UpstreamError(f"{method} http://{self.host}:{self.port}{target}: {exc!r}") from exc
            except BaseException:
                conn.close()  # cancelled (a deadline) or worse: the connection state is unknown
                raise
            if framed and wants_keep_alive(version, resp_headers) and len(self._idle) < self.max_idle:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()
            return Response(int(status), resp_headers, resp_body)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
