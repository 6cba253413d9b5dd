"""The executor: a warm pool of generic environment processes, specialized on demand (Fission's poolmgr).

A *pod* here is one environment process (environment/server.py) with its own port and its own /userfunc
folder. Both variants keep a pool of `poolsize` generic pods started ahead of traffic (the Environment's
poolsize, 3 by default) and refill it whenever one is taken. Specializing a pod (the cold start) is:

1. choose: take a ready generic pod from the pool (executor/poolmgr/gp.go `_choosePod`);
2. fetch: copy the package (handler.py and the model folder) into the pod's /userfunc/<function uid> (the
   fetcher sidecar downloads and unpacks the package archive there);
3. load: POST /v2/specialize {filepath, functionName} (or /specialize for a v1 environment), retried on dial
   errors up to 20 times with a sleep of 500*2*i ms (gp.go `specializePod` at 0.11.0); the environment imports
   the module, which loads the model;
4. the first 200: the router notes when the pod first answers (router.py), and logs the whole cold start.

Variants (one FunctionService per function, or one per concurrent request):

- `Executor2018` (0.11.0, executor/executor.go + fscache): one specialized pod per function serves all its
  traffic; concurrent first calls wait for the one specialization in progress.
- `ExecutorRequestsPerPod` (current, pkg/executor/fscache/poolcache.go `getValue`/`setValue`): a pod serves at
  most `requests_per_pod` (1) requests at a time; a request that finds every pod busy gets a new pod
  specialized for it while fewer than `concurrency` pods exist or are being specialized, waits for one being
  specialized if that one has room, and is refused with 429 otherwise.

Both reap a specialized pod idle for `idle_timeout_s` (2 min in 0.11.0 gpm.go and today's idletimeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import http1

SPECIALIZE_RETRIES = 20
SPECIALIZE_TIMEOUT_S = 300.0  # the 2018 executor set none; today's SpecializationTimeout default is 120 s
POD_READY_TIMEOUT_S = 300.0  # poolmgr's podReadyTimeout (5 min)
READY_POLL_S = 0.05


def log_event(event: str, **fields: Any) -> None:
    """One JSON line on stdout, next to the environments' lines (the container's log)."""
    sys.stdout.write(json.dumps({"event": event, "ts": round(time.time(), 6), **fields}) + "\n")
    sys.stdout.flush()


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def free_port(bind: str) -> int:
    with socket.socket() as sock:
        sock.bind((bind, 0))
        return sock.getsockname()[1]


class ExecutorError(Exception):
    """No pod for this request; `status` is what the router answers (429 at the concurrency limit, else 500)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class PoolSettings:
    env_server: Path
    work_dir: Path
    package_dir: Path  # holds the function's module (handler.py)
    model_dir: Path | None  # fetched with the package, under model/
    function_name: str = "handler.main"  # the Function's package.functionName (module.function)
    function_uid: str = "kde-predict"
    bind: str = "127.0.0.1"
    poolsize: int = 3
    specialize_api: str = "v2"
    idle_timeout_s: float = 120.0
    stop_grace_s: float = 1.0
    env_vars: dict[str, str] = field(default_factory=dict)


@dataclass
class Pod:
    """One environment process: generic until specialized, then serving one function."""

    index: int
    port: int
    userfunc: Path
    process: asyncio.subprocess.Process | None = None
    state: str = "starting"  # starting -> generic -> specializing -> specialized
    active: int = 0
    last_used: float = 0.0
    cold: dict[str, Any] | None = None  # the specialization's timings, until its first 200 is logged
    answered: bool = False

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process is None or self.process.returncode is None


async def http_call(host: str, port: int, method: str, path: str, body: bytes = b"",
                    content_type: str | None = None, timeout: float = 5.0) -> http1.Message:
    """One request on a fresh connection (the executor's own calls to a pod: health, specialize)."""
    async def exchange() -> http1.Message:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            headers = [("Host", f"{host}:{port}"), ("Connection", "close")]
            if content_type:
                headers.append(("Content-Type", content_type))
            writer.write(http1.encode_request(method, path, headers, body))
            await writer.drain()
            return await http1.read_response(http1.Buffered(reader), method)
        finally:
            writer.close()
    return await asyncio.wait_for(exchange(), timeout)


class GenericPool:
    """The warm pool: `poolsize` generic environment processes, refilled as pods are taken."""

    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self.generic: list[Pod] = []
        self.all: list[Pod] = []
        self._next = 0
        self._refills: set[asyncio.Task] = set()
        self.closed = False

    async def start(self) -> None:
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(self.settings.poolsize):
            self._refill()

    def _refill(self) -> None:
        task = asyncio.create_task(self._start_pod())
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _start_pod(self) -> Pod:
        index = self._next
        self._next += 1
        userfunc = self.settings.work_dir / f"pod-{index}" / "userfunc"
        userfunc.mkdir(parents=True, exist_ok=True)
        pod = Pod(index, free_port(self.settings.bind), userfunc)
        env = {**os.environ, **self.settings.env_vars, "RUNTIME_PORT": str(pod.port),
               "RUNTIME_BIND": self.settings.bind, "USERFUNCVOL": str(userfunc), "PYTHONUNBUFFERED": "1"}
        if self.settings.model_dir is not None:
            # where the fetched package's model folder will be (step 2)
            env["MODEL_DIR"] = str(userfunc / self.settings.function_uid / "model")
        pod.process = await asyncio.create_subprocess_exec(
            sys.executable, str(self.settings.env_server), env=env, cwd=str(userfunc),
            stdin=asyncio.subprocess.DEVNULL)
        self.all.append(pod)
        self.generic.append(pod)
        start = time.perf_counter()
        while not self.closed:  # the readiness probe: GET /healthz
            if not pod.alive():
                log_event("pod", pod=pod.index, state="exited", returncode=pod.process.returncode)
                self.generic.remove(pod)
                return pod
            with contextlib.suppress(OSError, asyncio.TimeoutError, http1.ProtocolError):
                if (await http_call(pod.host, pod.port, "GET", "/healthz", timeout=2)).start[1] == "200":
                    break
            await asyncio.sleep(READY_POLL_S)
        pod.state = "generic"
        log_event("pod", pod=pod.index, state="generic", port=pod.port, ready_ms=ms_since(start))
        return pod

    async def choose(self) -> Pod:
        """Take a ready generic pod (waiting for one up to podReadyTimeout) and start its replacement."""
        deadline = time.monotonic() + POD_READY_TIMEOUT_S
        while True:
            for pod in self.generic:
                if pod.state == "generic" and pod.alive():
                    self.generic.remove(pod)
                    pod.state = "specializing"
                    self._refill()
                    return pod
            if time.monotonic() > deadline:
                raise ExecutorError(500, f"no generic pod became ready in {POD_READY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(READY_POLL_S)

    def fetch(self, pod: Pod) -> Path:
        """The fetcher's job: put the package (and its model folder) under /userfunc/<function uid>."""
        target = pod.userfunc / self.settings.function_uid
        shutil.copytree(self.settings.package_dir, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        if self.settings.model_dir is not None:
            shutil.copytree(self.settings.model_dir, target / "model", dirs_exist_ok=True)
        return target

    async def specialize(self, pod: Pod) -> Pod:
        """Fetch, then load through the environment's specialize endpoint; the timings go on `pod.cold`."""
        start = time.perf_counter()
        target = await asyncio.to_thread(self.fetch, pod)
        fetched = time.perf_counter()
        module = self.settings.function_name.rsplit(".", 1)[0]
        if self.settings.specialize_api == "v1":
            # a v1 environment loads the file /userfunc/user and calls its main
            shutil.copyfile(target / f"{module}.py", pod.userfunc / "user")
            path, body, ctype = "/specialize", b"", "text/plain"
        else:
            path, ctype = "/v2/specialize", "application/json"
            body = json.dumps({"filepath": str(target), "functionName": self.settings.function_name,
                               "FunctionMetadata": {"name": "predict", "uid": self.settings.function_uid}}).encode()
        for attempt in range(SPECIALIZE_RETRIES):
            try:
                resp = await http_call(pod.host, pod.port, "POST", path, body, ctype, timeout=SPECIALIZE_TIMEOUT_S)
            except (ConnectionRefusedError, ConnectionResetError) as exc:
                if attempt == SPECIALIZE_RETRIES - 1:
                    raise ExecutorError(500, f"error specializing function pod: {exc}") from None
                await asyncio.sleep(0.5 * 2 * attempt)
                continue
            except (TimeoutError, OSError, http1.ProtocolError) as exc:
                raise ExecutorError(500, f"error specializing function pod: {exc!r}") from None
            if resp.start[1] != "200":
                raise ExecutorError(500, f"error specializing function pod: {resp.start[1]} "
                                         f"{resp.body[:300].decode('utf-8', 'replace')}")
            break
        pod.state = "specialized"
        pod.last_used = time.monotonic()
        pod.cold = {"pod": pod.index, "fetch_ms": round((fetched - start) * 1000, 3),
                    "load_ms": ms_since(fetched), "specialize_api": self.settings.specialize_api}
        return pod

    async def stop_pod(self, pod: Pod) -> None:
        if pod in self.generic:
            self.generic.remove(pod)
        if pod.process is not None and pod.process.returncode is None:
            pod.process.terminate()
            # bjoern runs a Python signal handler only when its loop next calls into Python: a health check
            # gets it there, so the environment's own handler ends it now
            with contextlib.suppress(OSError, TimeoutError, http1.ProtocolError):
                await http_call(pod.host, pod.port, "GET", "/healthz", timeout=0.5)
            try:
                await asyncio.wait_for(pod.process.wait(), self.settings.stop_grace_s)
            except TimeoutError:
                # still running after the grace period: killed, as the kubelet does after
                # terminationGracePeriodSeconds
                pod.process.kill()
                await pod.process.wait()
        shutil.rmtree(pod.userfunc.parent, ignore_errors=True)
        if pod in self.all:
            self.all.remove(pod)

    async def close(self) -> None:
        self.closed = True
        for task in list(self._refills):
            task.cancel()
        await asyncio.gather(*(self.stop_pod(pod) for pod in list(self.all)), return_exceptions=True)


class Executor:
    """What the router asks for a pod (`acquire`) and tells when done with it (`release`)."""

    name = "executor"

    def __init__(self, pool: GenericPool | None) -> None:
        self.pool = pool
        self.specialized: list[Pod] = []

    async def acquire(self) -> Pod:
        raise NotImplementedError

    def release(self, pod: Pod) -> None:
        pod.active = max(0, pod.active - 1)
        pod.last_used = time.monotonic()

    def invalidate(self, pod: Pod) -> None:
        """The router could not dial `pod`: forget it if its process is gone."""
        if not pod.alive() and pod in self.specialized:
            self.specialized.remove(pod)
            log_event("pod", pod=pod.index, state="gone", returncode=pod.process.returncode if pod.process else None)

    async def _cold_start(self) -> Pod:
        assert self.pool is not None
        start = time.perf_counter()
        pod = await self.pool.choose()
        chosen = time.perf_counter()
        try:
            await self.pool.specialize(pod)
        except BaseException:
            await self.pool.stop_pod(pod)
            raise
        pod.cold = {**(pod.cold or {}), "choose_ms": round((chosen - start) * 1000, 3),
                    "specialize_ms": ms_since(start), "perf_start": start}
        log_event("specialized", executor=self.name, port=pod.port,
                  **{k: v for k, v in pod.cold.items() if k != "perf_start"})
        return pod

    def ready(self) -> bool:
        return any(p.answered and p.alive() for p in self.specialized)

    async def reap_idle(self, idle_timeout_s: float) -> None:
        """Delete specialized pods unused for idle_timeout_s (the idle object reaper)."""
        while idle_timeout_s > 0:
            await asyncio.sleep(min(5.0, idle_timeout_s / 4))
            now = time.monotonic()
            for pod in list(self.specialized):
                if pod.active == 0 and now - pod.last_used > idle_timeout_s:
                    self.specialized.remove(pod)
                    log_event("pod", pod=pod.index, state="reaped", idle_s=round(now - pod.last_used, 1))
                    assert self.pool is not None
                    await self.pool.stop_pod(pod)

    def status(self) -> dict[str, Any]:
        return {"executor": self.name, "specialized": len(self.specialized),
                "answered": sum(p.answered for p in self.specialized),
                "generic": len(self.pool.generic) if self.pool else 0}


class StaticExecutor(Executor):
    """No pool: one environment already running at a given address (tests and the overhead benchmark)."""

    name = "static"

    def __init__(self, address: str) -> None:
        super().__init__(None)
        host, port = address.rsplit(":", 1)
        self.pod = Pod(-1, int(port), Path("/nonexistent"), state="specialized")
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the static function address must be on 127.0.0.1, got {address!r}")
        self.specialized = [self.pod]

    async def acquire(self) -> Pod:
        self.pod.active += 1
        return self.pod

    def invalidate(self, pod: Pod) -> None:
        pass


class Executor2018(Executor):
    """0.11.0: one FunctionService (one specialized pod) per function; concurrent cold calls share it."""

    name = "poolmgr-2018"

    def __init__(self, pool: GenericPool) -> None:
        super().__init__(pool)
        self._inflight: asyncio.Task | None = None

    async def acquire(self) -> Pod:
        while True:
            for pod in self.specialized:
                if pod.alive():
                    pod.active += 1
                    return pod
            if self._inflight is None:
                self._inflight = asyncio.create_task(self._cold_start())
            task = self._inflight
            try:
                pod = await asyncio.shield(task)
            except ExecutorError:
                raise
            finally:
                if task.done() and self._inflight is task:
                    self._inflight = None
            if pod not in self.specialized:
                self.specialized.append(pod)


class ExecutorRequestsPerPod(Executor):
    """Current poolmgr: requestsPerPod and concurrency, after fscache/poolcache.go getValue and setValue."""

    name = "poolmgr"

    def __init__(self, pool: GenericPool, requests_per_pod: int = 1, concurrency: int = 500) -> None:
        super().__init__(pool)
        self.rpp = requests_per_pod
        self.concurrency = concurrency
        self.waiting = 0  # specializations in progress plus queued requests (svcWaiting)
        self.queue: deque[asyncio.Future] = deque()

    def _live_queue(self) -> int:
        return len(self.queue)

    async def acquire(self) -> Pod:
        self.specialized = [p for p in self.specialized if p.alive()]
        total_active = 0
        for pod in self.specialized:
            total_active += pod.active
            if pod.active < self.rpp:
                pod.active += 1
                return pod
        used = len(self.specialized) + (self.waiting - self._live_queue())
        if self.concurrency > 0 and used < self.concurrency:
            return await self._specialize_for_request()
        capacity = used * self.rpp - (total_active + self.waiting)
        if capacity > 0:
            # a pod being specialized will have room: wait for it
            self.waiting += 1
            future: asyncio.Future = asyncio.get_running_loop().create_future()
            self.queue.append(future)
            return await future
        if self.concurrency > 0 and used >= self.concurrency:
            raise ExecutorError(429, f"function 'predict' concurrency '{self.concurrency}' limit reached.")
        return await self._specialize_for_request()

    async def _specialize_for_request(self) -> Pod:
        self.waiting += 1
        task = asyncio.create_task(self._cold_start())
        try:
            pod = await asyncio.shield(task)
        except asyncio.CancelledError:
            # the request went away: the specialization goes on and its pod joins the function's pods, idle
            task.add_done_callback(lambda t: self._settle(t.result(), busy=False)
                                   if not t.cancelled() and t.exception() is None else self._failed())
            raise
        except BaseException:
            self._failed()
            raise
        self._settle(pod, busy=True)
        return pod

    def _failed(self) -> None:
        self.waiting -= 1  # markSpecializationFailure

    def _settle(self, pod: Pod, busy: bool) -> None:
        """setValue: the new pod is counted busy with the request that asked for it, then hands its room to
        queued waiters. The loop runs while i <= capacity, so with requestsPerPod 1 it still gives the new pod
        to one queued waiter (two requests on a one-request pod): kept as upstream has it."""
        self.specialized.append(pod)
        if busy:
            pod.active += 1
        self.waiting -= 1
        capacity = min(self.rpp - pod.active, len(self.queue))
        given = 0
        while given <= capacity and self.queue:
            future = self.queue.popleft()
            if not future.done():
                pod.active += 1
                future.set_result(pod)
                given += 1
            self.waiting -= 1
