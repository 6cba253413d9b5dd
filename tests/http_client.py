"""The HTTP client both server suites use: one request per fresh connection, exactly the headers given."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def request(
    base_url: str,
    method: str = "GET",
    path: str = "/",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> Response:
    """One HTTP/1.1 request on a fresh connection (http.client adds no Content-Type of its own)."""
    host, port = base_url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"User-Agent": "kde-test", **(headers or {})})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def metric_samples(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics and index every sample by (name, sorted labels)."""
    text = request(base_url, "GET", "/metrics", timeout=10).body.decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if check():
                return
        time.sleep(poll_s)
    raise TimeoutError(f"{what} did not happen within {timeout_s} s")


def wait_for_response(fetch: Callable[[], Response], accept: Callable[[Response], bool], timeout_s: float, what: str):
    """Poll `fetch` until a response passes `accept`, and return that response: a test asserts on the answer it
    waited for, not on a second request that may meet another worker or another moment."""
    seen: list[Response] = []

    def check() -> bool:
        seen.append(fetch())
        return accept(seen[-1])

    wait_for(check, timeout_s, what)
    return seen[-1]
