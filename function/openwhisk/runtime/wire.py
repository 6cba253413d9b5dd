"""The HTTP/1.1 the front needs on asyncio streams: read a request or a response whole, write one.

Whole messages are enough: a request is one photo, an answer a 256-byte JSON; what the front is measured for is
its per-request cost and its rules, not streaming. Bodies need a Content-Length or chunked encoding.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 64 * 1024
REASONS = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 413: "Payload Too Large", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.x."""


@dataclass
class Message:
    """A request (method, target, version) or a response (version, status, reason) with its whole body."""

    start: tuple[str, str, str]
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def wants_close(self) -> bool:
        tokens = {t.strip().lower() for t in (self.header("Connection") or "").split(",")}
        version = self.start[0] if self.start[0].startswith("HTTP/") else self.start[2]
        return "keep-alive" not in tokens if version == "HTTP/1.0" else "close" in tokens


async def _head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("connection closed inside a header section") from None
        return None
    except asyncio.LimitOverrunError:
        raise ProtocolError("header section too long") from None
    if len(head) > MAX_HEAD_BYTES:
        raise ProtocolError("header section too long")
    return head


def _parse(head: bytes) -> Message:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2:
        raise ProtocolError(f"bad start line {lines[0][:80]!r}")
    msg = Message((parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line[:80]!r}")
            msg.headers.append((name.strip(), value.strip()))
    return msg


async def _body(reader: asyncio.StreamReader, msg: Message) -> bytes:
    try:
        if (msg.header("Transfer-Encoding") or "").lower().endswith("chunked"):
            body = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    return bytes(body)
                body += await reader.readexactly(size)
                await reader.readexactly(2)
        length = int(msg.header("Content-Length") or 0)
        return await reader.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, ValueError) as exc:
        raise ProtocolError(f"bad or truncated body: {exc}") from None


async def read_request(reader: asyncio.StreamReader) -> Message | None:
    head = await _head(reader)
    if head is None:
        return None
    msg = _parse(head)
    if not msg.start[2].startswith("HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x request line: {msg.start!r}")
    msg.body = await _body(reader, msg)
    return msg


async def read_response(reader: asyncio.StreamReader) -> Message:
    head = await _head(reader)
    if head is None:
        raise ConnectionResetError("the peer closed the connection before answering")
    msg = _parse(head)
    msg.body = await _body(reader, msg)
    return msg


def encode_request(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def encode_response(status: int, headers: list[tuple[str, str]], body: bytes, close: bool, version: str = "HTTP/1.1",
                    head_only: bool = False) -> bytes:
    lines = [f"{version} {status} {REASONS.get(status, 'Unknown')}", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {len(body)}"]
    if close and version == "HTTP/1.1":
        lines.append("Connection: close")
    elif not close and version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)
