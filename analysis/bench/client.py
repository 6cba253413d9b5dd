"""HTTP with the standard library: requests to the services, and the Docker Engine API over its socket.

http.client rather than a third-party client so that the probe's timing covers exactly one TCP connection,
one request and one response read, with nothing pooled or retried behind our back.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit


@dataclass(frozen=True)
class Response:
    """One request's outcome. status is None when no HTTP response arrived (refused, reset, timeout)."""

    status: int | None
    body: bytes
    elapsed_ms: float
    error: str | None = None

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return conn, path


def request(method: str, url: str, body: bytes | None = None, content_type: str | None = None,
            timeout: float = 30.0) -> Response:
    """One request on a fresh connection; elapsed_ms spans connect to the last byte of the body."""
    conn, path = _connection(url, timeout)
    headers = {"Connection": "close"}
    if content_type:
        headers["Content-Type"] = content_type
    started = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = (time.perf_counter() - started) * 1000.0
        return Response(resp.status, data, elapsed)
    except (OSError, http.client.HTTPException) as exc:
        elapsed = (time.perf_counter() - started) * 1000.0
        return Response(None, b"", elapsed, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


# ------------------------------------------------------------------------------------ Docker Engine API
class DockerError(RuntimeError):
    """The Docker Engine API could not be reached or refused the request."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def docker_socket_path(docker_host: str) -> str:
    if not docker_host.startswith("unix://"):
        raise DockerError(f"only unix:// Docker hosts are supported, got {docker_host!r}")
    return docker_host[len("unix://"):]


def docker_get(docker_host: str, path: str, timeout: float = 10.0) -> Any:
    """GET a Docker Engine API path (unversioned: the daemon's own API version) and decode its JSON."""
    conn = _UnixHTTPConnection(docker_socket_path(docker_host), timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        data = resp.read()
    except OSError as exc:
        raise DockerError(f"cannot reach the Docker engine at {docker_host}: {exc}") from None
    finally:
        conn.close()
    if resp.status != 200:
        message = data.decode("utf-8", "replace").strip()
        raise DockerError(f"Docker API GET {path} answered {resp.status}: {message[:300]}")
    return json.loads(data)


def docker_inspect(docker_host: str, container: str, timeout: float = 10.0) -> dict[str, Any]:
    return docker_get(docker_host, f"/containers/{quote(container, safe='')}/json", timeout)


def docker_stats(docker_host: str, container: str, timeout: float = 10.0) -> dict[str, Any]:
    """One stats sample without the daemon's 1 s wait for a second sample (one-shot, API >= 1.41)."""
    return docker_get(docker_host, f"/containers/{quote(container, safe='')}/stats?stream=false&one-shot=true",
                      timeout)
