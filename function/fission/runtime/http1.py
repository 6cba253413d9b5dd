"""The bit of HTTP/1.x the router hop needs, on asyncio streams: read a request or a response whole, write one.

The message format (Message, the body reader, the encoders) is function/common/http1.py's, shared with the other
kinds; what is the router's own is its reader, `Buffered`, and the head limit and reason phrases it answers with.

A whole-message (buffered) proxy is enough here: requests are one image and answers a 256-byte JSON, and what
the hop is measured for is its per-request cost and its connection rules, not streaming.
"""

from __future__ import annotations

import asyncio

from function.common.http1 import (
    HOP_BY_HOP,
    Message,
    ProtocolError,
    encode_request,
    encode_response,
    head_message,
    read_body,
    request_message,
)

__all__ = ["HOP_BY_HOP", "MAX_HEAD_BYTES", "REASONS", "Buffered", "Message", "ProtocolError", "encode_request",
           "encode_response", "read_request", "read_response"]

MAX_HEAD_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
           499: "status code 499", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


class Buffered:
    """A StreamReader with our own buffer, so that a read can watch for the peer going away (EOF) while
    keeping any bytes that arrive meanwhile (a pipelined next request). Its reads have StreamReader's names, so
    the shared body reader takes it; the peer closing mid-message is a ProtocolError."""

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

    async def readexactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self.fill():
                raise ProtocolError(f"connection closed after {len(self.buf)} of {n} body bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        while (end := self.buf.find(separator)) < 0:
            if not await self.fill():
                raise ProtocolError("connection closed inside a chunked body")
        end += len(separator)
        line = bytes(self.buf[:end])
        del self.buf[:end]
        return line

    async def read(self, n: int = -1) -> bytes:
        """Everything up to the peer's EOF (`n` is there for StreamReader's signature; the whole rest is read)."""
        while await self.fill():
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data


async def read_request(stream: Buffered) -> Message | None:
    head = await stream.read_head()
    if head is None:
        return None
    msg = request_message(head)
    msg.body = await read_body(stream, msg.headers)
    return msg


async def read_response(stream: Buffered, method: str) -> Message:
    head = await stream.read_head()
    if head is None:
        raise ConnectionResetError("the function closed the connection before answering")
    msg = head_message(head)
    msg.body = await read_body(stream, msg.headers, until_eof=not (method == "HEAD" or msg.start[1] in ("204", "304")))
    return msg
