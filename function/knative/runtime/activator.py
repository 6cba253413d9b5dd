"""The activator of Knative Serving v1.23.0 in front of one revision, with the autoscaler's part in a scale from
zero, as a Python stand-in (our code; the rules are read from pkg/activator/handler/handler.go,
pkg/activator/net/{throttler,revision_backends}.go and cmd/activator/main.go at tag knative-v1.23.0).

It is the entry point of the local container (PID 1 under tini) and listens on 8080. A request:

1. gets the revision timeout (REVISION_TIMEOUT_SECONDS): no reply by then is a 504 "activator request timeout";
2. waits in the revision's throttler. With CONTAINER_CONCURRENCY = 0 that is the infinite breaker: no queue limit,
   requests are only held while no pod is ready. With cc > 0 it is a breaker of queue depth 10000 whose capacity is
   cc x ready pods (0 while none is): beyond 10000 waiting, 503 "pending request queue full";
3. goes to the pod's queue-proxy with `K-Proxy-Request: activator`; an error reaching it is a 502.

The revision starts at KNATIVE_INITIAL_SCALE pods (0: as after a scale to zero, the state in which the kit's
cold-start step finds it after a restart). A request that finds no pod makes the autoscaler stand-in start one:
the queue-proxy (queue_proxy.py) and the user container as two processes. The activator then probes the
queue-proxy every 200 ms (300 ms timeout, `K-Network-Probe: queue`, User-Agent Knative-Activator-Probe), which
runs the user container's readiness probe; the first 200 opens the breaker and the held requests go. After
KNATIVE_SCALE_TO_ZERO_AFTER_S seconds without a request (90 s: the 60 s stable window + the 30 s grace period;
0 = never) the pod is stopped again.

Each cold start and scale event is one JSON line on stdout (`"event": "cold_start"`, `"scale"`), and so is each
reply that is not a 2xx (`"event": "reply"`, with its `origin`: `activator`, `queue-proxy` or `function`, the
layer that made it), which the kind's error_origins reads for the bench's errors by layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

RUNTIME_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(RUNTIME_DIR))

from breaker import Breaker, InfiniteBreaker, QueueFull  # noqa: E402 - the runtime folder is this program's path
from h1 import LAYER_HEADER, Pool, Server, event, http_error, with_timeout  # noqa: E402

from function.common.http1 import Request, Response, UpstreamError  # noqa: E402

# throttler.go: the revision's breaker has breakerQueueDepth + revisionMaxConcurrency slots, so its 503 needs some
# 2^31 waiting requests; ACTIVATOR_QUEUE_DEPTH and ACTIVATOR_MAX_CONCURRENCY shrink them for the tests only.
BREAKER_QUEUE_DEPTH = 10000
REVISION_MAX_CONCURRENCY = 2**31 - 1  # queue.MaxBreakerCapacity
PROXY_HEADER = ("K-Proxy-Request", "activator")
LAYER = "activator"


def user_container(env: dict[str, str], user_port: int) -> tuple[list[str], dict, str | None]:
    """The user container's command, its readiness probe (corev1.Probe as JSON) and working directory.
    func: the func-python function (runtime/func_main.py over KNATIVE_FUNC_ROOT), probed on /health/readiness as
    `func deploy` configures it; app: the kit's gunicorn model server (image/), probed on its /readyz."""
    choice = env.get("KNATIVE_USER_CONTAINER", "func")
    if env.get("KNATIVE_USER_COMMAND"):
        probe = json.loads(env.get("SERVING_READINESS_PROBE") or json.dumps({"tcpSocket": {"port": user_port}}))
        return shlex.split(env["KNATIVE_USER_COMMAND"]), probe, env.get("KNATIVE_USER_WORKDIR")
    if choice == "func":
        command = [sys.executable, str(RUNTIME_DIR / "func_main.py")]
        return command, {"httpGet": {"path": "/health/readiness", "port": user_port}}, env.get("KNATIVE_FUNC_ROOT")
    if choice == "app":
        command = [sys.executable, "-m", "gunicorn", "--config", "python:image.gunicorn_conf",
                   "image.server:application"]
        return command, {"httpGet": {"path": "/readyz", "port": user_port}}, env.get("KNATIVE_APP_ROOT")
    raise SystemExit(f"KNATIVE_USER_CONTAINER={choice!r}: choose func (the func-python function) or app (image/)")


class Pod:
    """One pod of the revision: the queue-proxy and the user container, each a process of its own group."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.user_port = int(env.get("USER_PORT", "8081"))
        self.queue_port = int(env.get("QUEUE_SERVING_PORT", "8012"))
        self.procs: list[asyncio.subprocess.Process] = []
        self.started = time.monotonic()

    async def start(self) -> None:
        command, probe, workdir = user_container(self.env, self.user_port)
        base = {k: v for k, v in self.env.items() if not k.startswith("KNATIVE_")}
        user_env = base | {"PORT": str(self.user_port), "HOST": "127.0.0.1",
                           "LISTEN_ADDRESS": f"127.0.0.1:{self.user_port}", "K_REVISION": "predict-00001"}
        queue_env = base | {"USER_PORT": str(self.user_port), "QUEUE_SERVING_PORT": str(self.queue_port),
                            "SERVING_READINESS_PROBE": json.dumps(probe)}
        self.started = time.monotonic()
        self.procs = [
            await asyncio.create_subprocess_exec(*command, env=user_env, cwd=workdir, start_new_session=True),
            await asyncio.create_subprocess_exec(sys.executable, str(RUNTIME_DIR / "queue_proxy.py"), env=queue_env,
                                                 start_new_session=True),
        ]

    def exited(self) -> int | None:
        """The exit status of the first of its processes that ended, or None while all run."""
        return next((p.returncode for p in self.procs if p.returncode is not None), None)

    async def stop(self, grace_s: float) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


class Activator:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.cc = int(env.get("CONTAINER_CONCURRENCY", "0"))
        self.timeout_s = float(env.get("REVISION_TIMEOUT_SECONDS", "300"))
        self.probe_every_s = float(env.get("PROBE_FREQUENCY_S", "0.2"))
        self.probe_timeout_s = float(env.get("PROBE_TIMEOUT_S", "0.3"))
        self.zero_after_s = float(env.get("KNATIVE_SCALE_TO_ZERO_AFTER_S", "90"))
        self.grace_s = float(env.get("STOP_GRACE_S", "8"))
        self.breaker: Breaker | InfiniteBreaker = (
            InfiniteBreaker() if self.cc == 0
            else Breaker(int(env.get("ACTIVATOR_QUEUE_DEPTH", BREAKER_QUEUE_DEPTH)),
                         int(env.get("ACTIVATOR_MAX_CONCURRENCY", REVISION_MAX_CONCURRENCY)), 0))
        self.pool = Pool("127.0.0.1", int(env.get("QUEUE_SERVING_PORT", "8012")), max_idle=1000)
        self.pod: Pod | None = None
        self.ready = False
        self.scale_lock = asyncio.Lock()
        self.last_request = time.monotonic()
        self.first_held: float | None = None
        self.tasks: set[asyncio.Task] = set()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------------------------------- the data path
    async def handle(self, req: Request) -> Response:
        self.last_request = time.monotonic()
        if self.pod is None:
            if self.first_held is None:
                self.first_held = time.monotonic()
            self._spawn(self.scale_up("request"))
        start = time.monotonic()
        resp = await with_timeout(self._try(req), self.timeout_s, "activator request timeout", LAYER)
        self.last_request = time.monotonic()
        layer = resp.header(LAYER_HEADER) or "function"
        resp.headers = [(k, v) for k, v in resp.headers if k.lower() != LAYER_HEADER.lower()]
        if not 200 <= resp.status < 300:
            event(event="reply", method=req.method, path=req.path, status=resp.status, origin=layer,
                  ms=round(1000 * (self.last_request - start), 3), body=resp.body[:80].decode("latin-1"))
        return resp

    async def _try(self, req: Request) -> Response:
        try:
            return await self.breaker.maybe(lambda: self._proxy(req))
        except QueueFull as exc:
            return http_error(503, str(exc), LAYER)

    async def _proxy(self, req: Request) -> Response:
        headers = [*req.headers, PROXY_HEADER]
        try:
            return await self.pool.request(req.method, req.target, headers, req.body)
        except UpstreamError as exc:
            return http_error(502, str(exc), LAYER)

    # --------------------------------------------------------------------------- the autoscaler's part
    async def scale_up(self, reason: str) -> None:
        async with self.scale_lock:
            if self.pod is not None:
                return
            self.pool.close()
            pod = Pod(self.env)
            await pod.start()
            self.pod, self.ready = pod, False
            event(event="scale", to=1, reason=reason, containerConcurrency=self.cc)
        self._spawn(self._probe_until_ready(pod))

    async def _probe_until_ready(self, pod: Pod) -> None:
        """revision_backends.go: probe the pod's queue-proxy until it says ready, then open the breaker."""
        probe = Pool("127.0.0.1", pod.queue_port, max_idle=0)
        headers = [("K-Network-Probe", "queue"), ("User-Agent", "Knative-Activator-Probe")]
        while self.pod is pod and pod.exited() is None:
            try:
                async with asyncio.timeout(self.probe_timeout_s):
                    resp = await probe.request("GET", "/", headers, b"")
                if resp.status == 200 and resp.body == b"queue":
                    break
            except (UpstreamError, TimeoutError):
                pass
            await asyncio.sleep(self.probe_every_s)
        else:
            return
        self.ready = True
        self.breaker.update_concurrency(self.cc if self.cc > 0 else 1)
        now = time.monotonic()
        event(event="cold_start", pod_ready_s=round(now - pod.started, 3),
              first_request_held_s=round(now - self.first_held, 3) if self.first_held else None)
        self.first_held = None

    async def scale_down(self, reason: str) -> None:
        async with self.scale_lock:
            pod, self.pod, self.ready = self.pod, None, False
            self.breaker.update_concurrency(0)
            if pod is not None:
                event(event="scale", to=0, reason=reason)
                await pod.stop(self.grace_s)
            self.pool.close()

    async def watch(self) -> None:
        """Scale to zero after the idle time; a pod whose process died is replaced by the next request."""
        while True:
            await asyncio.sleep(0.5)
            pod = self.pod
            if pod is None:
                continue
            status = pod.exited()
            if status is not None:
                await self.scale_down(f"a process of the pod exited with {status}")
                if self.breaker.in_flight() > 0:
                    self._spawn(self.scale_up("requests waiting after the pod failed"))
            elif (self.zero_after_s > 0 and self.ready and self.breaker.in_flight() == 0
                  and time.monotonic() - self.last_request > self.zero_after_s):
                await self.scale_down(f"no request for {self.zero_after_s:g} s")


async def main() -> None:
    env = dict(os.environ)
    activator = Activator(env)
    server = Server(activator.handle)
    await server.start(env.get("ACTIVATOR_BIND_ADDRESS", "0.0.0.0"), int(env.get("ACTIVATOR_PORT", "8080")))
    if int(env.get("KNATIVE_INITIAL_SCALE", "0")) > 0:
        await activator.scale_up("initial scale")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.ensure_future(activator.watch())
    await stop.wait()
    watcher.cancel()
    await server.close()
    await activator.scale_down("SIGTERM")


if __name__ == "__main__":
    asyncio.run(main())
