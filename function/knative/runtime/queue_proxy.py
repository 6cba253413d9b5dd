"""The queue-proxy sidecar of Knative Serving v1.23.0, as a Python stand-in (our code; the rules are read from
pkg/queue/sharedmain/{main,handlers}.go, pkg/queue/{handler,breaker}.go, pkg/queue/readiness/probe.go,
pkg/queue/health/handler.go and pkg/http/handler/timeout.go at tag knative-v1.23.0).

Every request to the pod enters here (port 8012) and goes on to the user container on 127.0.0.1:USER_PORT:

- A probe (header `K-Network-Probe`, or a kubelet / activator / autoscaler probe by User-Agent) is answered by the
  queue-proxy itself: its value must be `queue` (else 400 "unexpected probe header value: ..."), then the user
  container's readiness probe runs; 200 "queue" when it passes, 503 when not. With periodSeconds 0 (Knative's
  default) the probe is "aggressive": retried every 50 ms, 100 ms per try, for up to 10 s, and probes that arrive
  while one runs share its result.
- Anything else: the revision timeout (REVISION_TIMEOUT_SECONDS, 300 s by default) answers 504 "request timeout"
  when no reply has come by then, the wait in the breaker included; with CONTAINER_CONCURRENCY = cc > 0 the breaker
  admits cc requests at a time and queues 10 x cc more, and answers 503 "pending request queue full" beyond; with 0
  there is no breaker at all. An error reaching the user container is a 502 with the error's text.

The request log (off upstream by default) is replaced by one JSON line per error this layer makes itself, with
`"layer": "queue-proxy"`; its own replies also carry the header K-Kde-Layer (not upstream), which the activator
reads to name the layer of each failed reply in its log, and removes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from breaker import Breaker, QueueFull
from h1 import LAYER_HEADER, Pool, Server, event, http_error, with_timeout

from function.common.http1 import Request, Response, UpstreamError

PROBE_HEADER = "K-Network-Probe"
PROBE_USER_AGENTS = ("kube-probe/", "Knative-Activator-Probe", "Knative-Autoscaler-Probe")
QUEUE_NAME = "queue"
LAYER = "queue-proxy"
RETRY_INTERVAL_S = 0.05  # readiness.retryInterval
AGGRESSIVE_PROBE_TIMEOUT_S = 0.1  # readiness.aggressiveProbeTimeout
POLL_TIMEOUT_S = 10.0  # readiness.PollTimeout (QUEUE_PROBE_POLL_TIMEOUT_S: the tests' shorter one)
DEFAULT_PROBE = {"tcpSocket": {"port": 8080}, "successThreshold": 1}  # what Knative sets when the user sets none


class ReadinessProbe:
    """The user container's readiness probe as the queue-proxy runs it (SERVING_READINESS_PROBE, one probe in
    the JSON form of a corev1.Probe: httpGet {path, port} or tcpSocket {port}; periodSeconds 0 = aggressive)."""

    def __init__(self, spec: dict, user_port: int, poll_timeout_s: float = POLL_TIMEOUT_S) -> None:
        self.poll_timeout_s = poll_timeout_s
        self.http_path = (spec.get("httpGet") or {}).get("path")
        handler = spec.get("httpGet") or spec.get("tcpSocket") or {}
        self.port = int(handler.get("port") or user_port)
        self.period_s = float(spec.get("periodSeconds", 0))
        self.timeout_s = float(spec.get("timeoutSeconds", 1))
        self.success_threshold = int(spec.get("successThreshold", 1))
        self._running: asyncio.Future[bool] | None = None

    async def _once(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                try:
                    if self.http_path is None:
                        return True
                    writer.write(f"GET {self.http_path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                                 f"User-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n".encode())
                    status_line = await reader.readline()
                    parts = status_line.split()
                    return len(parts) >= 2 and 200 <= int(parts[1]) < 400
                finally:
                    writer.close()
        except (OSError, TimeoutError, ValueError):
            return False

    async def _probe(self) -> bool:
        if self.period_s > 0:
            return await self._once(self.timeout_s)
        loop = asyncio.get_running_loop()
        deadline, successes = loop.time() + self.poll_timeout_s, 0
        while True:
            if await self._once(AGGRESSIVE_PROBE_TIMEOUT_S):
                successes += 1
                if successes >= self.success_threshold:
                    return True
            else:
                successes = 0
            if loop.time() + RETRY_INTERVAL_S > deadline:
                return False
            await asyncio.sleep(RETRY_INTERVAL_S)

    async def check(self) -> bool:
        """Run the probe, or wait for the one already running (upstream's gateValue)."""
        if self._running is None:
            self._running = asyncio.ensure_future(self._probe())
            self._running.add_done_callback(lambda _: setattr(self, "_running", None))
        return await asyncio.shield(self._running)


class QueueProxy:
    def __init__(self, env: dict[str, str]) -> None:
        self.user_port = int(env.get("USER_PORT", "8080"))
        self.cc = int(env.get("CONTAINER_CONCURRENCY", "0"))
        self.timeout_s = float(env.get("REVISION_TIMEOUT_SECONDS", "300"))
        spec = json.loads(env["SERVING_READINESS_PROBE"]) if env.get("SERVING_READINESS_PROBE") else DEFAULT_PROBE
        self.probe = ReadinessProbe(spec, self.user_port,
                                    float(env.get("QUEUE_PROBE_POLL_TIMEOUT_S", POLL_TIMEOUT_S)))
        # buildBreaker: none for cc 0; else cc slots, 10 x cc queued, all slots open from the start
        self.breaker = Breaker(10 * self.cc, self.cc, self.cc) if self.cc > 0 else None
        # buildTransport: 1000 idle connections for cc 0, else cc
        self.pool = Pool("127.0.0.1", self.user_port, max_idle=self.cc or 1000)

    async def handle(self, req: Request) -> Response:
        probe = req.header(PROBE_HEADER)
        if probe or req.header("User-Agent").startswith(PROBE_USER_AGENTS):
            if probe != QUEUE_NAME:
                return http_error(400, "unexpected probe header value: " + probe, LAYER)
            if not await self.probe.check():
                return Response(503)
            return Response(200, [("Content-Type", "text/plain; charset=utf-8")], QUEUE_NAME.encode())
        resp = await with_timeout(self._admit(req), self.timeout_s, "request timeout", LAYER)
        if resp.status == 504 and resp.body == b"request timeout":
            event(event="front_error", layer="queue-proxy", status=504, reason="revision timeout")
        return resp

    async def _admit(self, req: Request) -> Response:
        if self.breaker is None:
            return await self._proxy(req)
        try:
            return await self.breaker.maybe(lambda: self._proxy(req))
        except QueueFull as exc:
            event(event="front_error", layer="queue-proxy", status=503, reason=str(exc))
            return http_error(503, str(exc), LAYER)

    async def _proxy(self, req: Request) -> Response:
        # the activator's own header is dropped on the way in (NewHeaderPruningReverseProxy: RevisionHeaders)
        headers = [(k, v) for k, v in req.headers if k.lower() not in ("knative-serving-revision",
                                                                       "knative-serving-namespace")]
        try:
            resp = await self.pool.request(req.method, req.target, headers, req.body)
        except UpstreamError as exc:
            event(event="front_error", layer="queue-proxy", status=502, reason=str(exc))
            return http_error(502, str(exc), LAYER)
        # a user container's reply never passes as the front's own
        resp.headers = [(k, v) for k, v in resp.headers if k.lower() != LAYER_HEADER.lower()]
        return resp


async def main() -> None:
    env = dict(os.environ)
    proxy = QueueProxy(env)
    server = Server(proxy.handle)
    await server.start(env.get("QUEUE_BIND_ADDRESS", "127.0.0.1"), int(env.get("QUEUE_SERVING_PORT", "8012")))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
