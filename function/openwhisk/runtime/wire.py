"""The HTTP/1.1 the front needs on asyncio streams: read a request or a response whole, write one.

The message format (Message, the body reader, the encoders) is function/common/http1.py's, shared with the other
kinds; what is the front's own is reading straight from a StreamReader with a 64 KiB head limit, every fault of
the peer reported as a ProtocolError, and the reason phrases it answers with.

Whole messages are enough: a request is one photo, an answer a 256-byte JSON; what the front is measured for is
its per-request cost and its rules, not streaming. Bodies need a Content-Length or chunked encoding.
"""

from __future__ import annotations

import asyncio

from function.common import http1
from function.common.http1 import Message, ProtocolError, encode_request

__all__ = ["MAX_HEAD_BYTES", "REASONS", "Message", "ProtocolError", "encode_request", "encode_response",
           "read_request", "read_response"]

MAX_HEAD_BYTES = 64 * 1024
REASONS = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 413: "Payload Too Large", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


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


async def _body(reader: asyncio.StreamReader, msg: Message) -> bytes:
    try:
        return await http1.read_body(reader, msg.headers)
    except (asyncio.IncompleteReadError, ValueError) as exc:
        raise ProtocolError(f"bad or truncated body: {exc}") from None


async def read_request(reader: asyncio.StreamReader) -> Message | None:
    head = await _head(reader)
    if head is None:
        return None
    msg = http1.request_message(head)
    msg.body = await _body(reader, msg)
    return msg


async def read_response(reader: asyncio.StreamReader) -> Message:
    head = await _head(reader)
    if head is None:
        raise ConnectionResetError("the peer closed the connection before answering")
    msg = http1.head_message(head)
    msg.body = await _body(reader, msg)
    return msg


def encode_response(status: int, headers: list[tuple[str, str]], body: bytes, close: bool, version: str = "HTTP/1.1",
                    head_only: bool = False) -> bytes:
    return http1.encode_response(version, status, REASONS.get(status, "Unknown"), headers, body, close, head_only)
