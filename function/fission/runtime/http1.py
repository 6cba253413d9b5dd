"""The bit of HTTP/1.x the router hop needs, on asyncio streams: read a request or a response whole, write one.

A whole-message (buffered) proxy is enough here: requests are one image and answers a 256-byte JSON, and what
the hop is measured for is its per-request cost and its connection rules, not streaming.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
           499: "status code 499", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.x."""


class Buffered:
    """A StreamReader with our own buffer, so that a read can watch for the peer going away (EOF) while
    keeping any bytes that arrive meanwhile (a pipelined next request)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buf = bytearray()
        self.eof = False

    async def fill(self) -> bool:
        chunk = await self.reader.read(READ_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    async def read_head(self) -> bytes | None:
        """Up to and including the blank line; None on a clean EOF before any byte."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end + 4])
                del self.buf[:end + 4]
                return head
            if len(self.buf) > MAX_HEAD_BYTES:
                raise ProtocolError("header section over 64 KiB")
            if not await self.fill():
                if self.buf:
                    raise ProtocolError("connection closed inside a header section")
                return None

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self.fill():
                raise ProtocolError(f"connection closed after {len(self.buf)} of {n} body bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def read_line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if not await self.fill():
                raise ProtocolError("connection closed inside a chunked body")
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        return line

    async def read_to_eof(self) -> bytes:
        while await self.fill():
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    async def read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int((await self.read_line()).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while await self.read_line():  # trailers, up to the empty line
                    pass
                return bytes(body)
            body += await self.read_exactly(size)
            await self.read_exactly(2)


@dataclass
class Message:
    """A request (method, target) or a response (status, reason), with its headers and whole body."""

    start: tuple[str, str, str]
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def version(self) -> str:
        return self.start[0] if self.start[0].startswith("HTTP/") else self.start[2]

    def wants_close(self) -> bool:
        """Whether the sender ends the connection after this message (HTTP/1.0 unless keep-alive, or close)."""
        tokens = {t.strip().lower() for t in (self.header("Connection") or "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" not in tokens
        return "close" in tokens


def _parse_head(head: bytes) -> tuple[tuple[str, str, str], list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2:
        raise ProtocolError(f"bad start line {lines[0][:80]!r}")
    start = (parts[0], parts[1], parts[2] if len(parts) > 2 else "")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return start, headers


async def _read_body(stream: Buffered, msg: Message, is_response: bool, method: str = "") -> bytes:
    if (msg.header("Transfer-Encoding") or "").lower().endswith("chunked"):
        return await stream.read_chunked()
    length = msg.header("Content-Length")
    if length is not None:
        return await stream.read_exactly(int(length))
    if is_response and not (method == "HEAD" or msg.start[1] in ("204", "304")):
        return await stream.read_to_eof()
    return b""


async def read_request(stream: Buffered) -> Message | None:
    head = await stream.read_head()
    if head is None:
        return None
    start, headers = _parse_head(head)
    if not start[2].startswith("HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x request line: {start!r}")
    msg = Message(start, headers)
    msg.body = await _read_body(stream, msg, is_response=False)
    return msg


async def read_response(stream: Buffered, method: str) -> Message:
    head = await stream.read_head()
    if head is None:
        raise ConnectionResetError("the function closed the connection before answering")
    start, headers = _parse_head(head)
    msg = Message(start, headers)
    msg.body = await _read_body(stream, msg, is_response=True, method=method)
    return msg


def encode_request(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def encode_response(version: str, status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
                    close: bool, head_only: bool = False) -> bytes:
    lines = [f"{version} {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(body)}")
    if close and version == "HTTP/1.1":
        lines.append("Connection: close")
    elif not close and version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)
