"""The invoker's rules (apache/openwhisk core/invoker, ContainerPool + ContainerProxy), with action containers as
local processes: each "container" is one proxy.py (and, after /init, its action process) in its own process group.

- **One activation per container** (the action's concurrency limit: min = max = std = 1): a container is either
  free or running exactly one activation.
- **A pool sized by memory**: at most `user_memory_mb // action_memory_mb` containers exist at once. An activation
  takes a free warm container if there is one; else a new container is started while the memory allows (a cold
  start: start -> POST /init with the action's zip -> POST /run); else it waits in the invoker's buffer, in
  arrival order, for the next container that frees up.
- **Pausing after idle**: a container left idle for `pause_grace_s` (10 s now, 50 ms in 2018) is paused (`docker
  pause`, the cgroup freezer: here SIGSTOP to its process group) and resumed (SIGCONT) when it is next used; one
  paused for `idle_container_s` (10 min) is removed. 0 turns either off.
- **Time limit**: /init and /run each get the action's time limit (60 s by default); past it the activation ends
  with "The action exceeded its time limits of N milliseconds." and the container is destroyed. So is a container
  after any other developer error (a failed /init, a non-dict result, an action that exited): the next activation
  that needs a container starts a new one.

Every outcome is an activation record in the shape of the controller's (response.status: success, application
error, action developer error, whisk internal error), with the waitTime and initTime annotations.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wire

SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR, WHISK_ERROR = (
    "success", "application error", "action developer error", "whisk internal error")
STATUS_CODES = {SUCCESS: 0, APPLICATION_ERROR: 1, DEVELOPER_ERROR: 2, WHISK_ERROR: 3}
ABNORMAL_INIT = "The action did not initialize and exited unexpectedly."
ABNORMAL_RUN = "The action did not produce a valid response and exited unexpectedly."


def log_event(event: str, **fields: Any) -> None:
    """One JSON line on stdout (the container's log), beside the action's own lines."""
    sys.stdout.write(json.dumps({"event": event, "ts": round(time.time(), 6), **fields}) + "\n")
    sys.stdout.flush()


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def free_port(bind: str) -> int:
    with socket.socket() as sock:
        sock.bind((bind, 0))
        return sock.getsockname()[1]


def timed_out(limit_s: float, init: bool) -> str:
    return f"The action exceeded its time limits of {round(limit_s * 1000)} milliseconds" + (
        " during initialization." if init else ".")


@dataclass
class Action:
    """What the controller knows of the action (its CouchDB document): code, entry point, limits."""

    namespace: str
    name: str
    code: bytes  # the zip
    main: str = "main"
    memory_mb: int = 256
    time_limit_s: float = 60.0
    init_env: dict[str, str] = field(default_factory=dict)  # parameters passed as environment at /init
    parameters: dict[str, Any] = field(default_factory=dict)  # default parameters, merged into every call

    @property
    def fqn(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class InvokerSettings:
    work_dir: Path
    user_memory_mb: int = 2048
    pause_grace_s: float = 10.0
    idle_container_s: float = 600.0
    bind: str = "127.0.0.1"
    start_timeout_s: float = 60.0  # the container start (docker run) until the proxy listens
    proxy: Path = Path(__file__).resolve().parent / "proxy.py"
    container_env: dict[str, str] = field(default_factory=dict)


class ContainerError(Exception):
    """The container failed the activation: the message is the developer error it becomes; `origin` is the layer
    that decided it (the invoker: time limit, start, a connection lost; the proxy: its own error answer)."""

    def __init__(self, message: str, origin: str = "invoker") -> None:
        super().__init__(message)
        self.origin = origin


class Container:
    def __init__(self, index: int, port: int, work_dir: Path) -> None:
        self.index = index
        self.port = port
        self.work_dir = work_dir
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.state = "starting"  # starting -> initializing -> busy <-> free <-> paused; removed
        self.initialized = False
        self.activations = 0
        self.pause_timer: asyncio.TimerHandle | None = None
        self.remove_timer: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return f"wsk-container-{self.index}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)

    async def post(self, path: str, payload: dict[str, Any]) -> wire.Message:
        """One request on the container's keep-alive connection (reopened if the proxy closed it)."""
        body = json.dumps(payload).encode()
        for attempt in (1, 2):
            if self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                self.writer.write(wire.encode_request("POST", path, [("Host", f"127.0.0.1:{self.port}"),
                                                                     ("Content-Type", "application/json")], body))
                await self.writer.drain()
                resp = await wire.read_response(self.reader)
            except (ConnectionError, wire.ProtocolError):
                self.writer.close()
                self.writer = None
                if attempt == 2 or path == "/run":
                    raise
                continue
            if resp.wants_close():
                self.writer.close()
                self.writer = None
            return resp
        raise AssertionError("unreachable")


class Invoker:
    def __init__(self, settings: InvokerSettings, action: Action) -> None:
        self.s = settings
        self.action = action
        self.capacity = max(0, settings.user_memory_mb // action.memory_mb)
        self.containers: list[Container] = []
        self.free: list[Container] = []  # warm and idle (running or paused), the most recently used last
        self.buffer: deque[asyncio.Future] = deque()  # activations waiting for a container, in arrival order
        self._next = 0
        self._code_b64 = base64.b64encode(action.code).decode()
        self.closed = False

    # ------------------------------------------------------------------------------------------- pool
    async def _acquire(self) -> tuple[Container, bool]:
        """A free warm container (resumed if paused), or a new one while memory allows, or the next one freed."""
        if self.free:
            return self._take(self.free.pop()), False
        if len(self.containers) < self.capacity:
            return self._new_container(), True
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.buffer.append(future)
        return await future  # a freed warm container, or a new one in the memory a destroyed one left

    def _take(self, container: Container) -> Container:
        for timer in (container.pause_timer, container.remove_timer):
            if timer is not None:
                timer.cancel()
        container.pause_timer = container.remove_timer = None
        if container.state == "paused":
            container.signal(signal.SIGCONT)  # docker unpause
            log_event("container", container=container.name, state="resumed")
        container.state = "busy"
        return container

    def _new_container(self) -> Container:
        index = self._next
        self._next += 1
        container = Container(index, free_port(self.s.bind), self.s.work_dir / f"container-{index}")
        self.containers.append(container)
        return container

    def _release(self, container: Container) -> None:
        while self.buffer:
            waiter = self.buffer.popleft()
            if not waiter.done():
                container.state = "busy"
                waiter.set_result((container, False))
                return
        container.state = "free"
        self.free.append(container)
        loop = asyncio.get_running_loop()
        if self.s.pause_grace_s > 0:
            container.pause_timer = loop.call_later(self.s.pause_grace_s, self._pause, container)

    def _pause(self, container: Container) -> None:
        container.pause_timer = None
        if container.state != "free":
            return
        container.signal(signal.SIGSTOP)  # docker pause: the cgroup freezer stops every process of the container
        container.state = "paused"
        log_event("container", container=container.name, state="paused")
        if self.s.idle_container_s > 0:
            container.remove_timer = asyncio.get_running_loop().call_later(
                self.s.idle_container_s, lambda: asyncio.ensure_future(self._remove_idle(container)))

    async def _remove_idle(self, container: Container) -> None:
        if container.state == "paused" and container in self.free:
            self.free.remove(container)
            await self.destroy(container, "idle")

    async def destroy(self, container: Container, reason: str) -> None:
        if container.state == "removed":
            return
        container.state = "removed"
        if container in self.free:
            self.free.remove(container)
        if container in self.containers:
            self.containers.remove(container)
        if container.writer is not None:
            container.writer.close()
        container.signal(signal.SIGCONT)
        container.signal(signal.SIGKILL)
        if container.process is not None:
            await container.process.wait()
        shutil.rmtree(container.work_dir, ignore_errors=True)
        log_event("container", container=container.name, state="destroyed", reason=reason,
                  activations=container.activations)
        while self.buffer and not self.closed:  # the freed memory goes to the next waiting activation
            waiter = self.buffer.popleft()
            if not waiter.done():
                waiter.set_result((self._new_container(), True))  # reserved now, so no one else takes it
                break

    async def _start(self, container: Container) -> None:
        """docker run: the proxy process, until it accepts connections."""
        container.work_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.s.container_env, "OW_PROXY_PORT": str(container.port),
               "OW_PROXY_BIND": "127.0.0.1", "OW_ACTION_DIR": str(container.work_dir / "action")}
        container.process = await asyncio.create_subprocess_exec(
            sys.executable, str(self.s.proxy), env=env, cwd=str(container.work_dir), start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + self.s.start_timeout_s
        while True:
            if container.process.returncode is not None:
                raise ContainerError(ABNORMAL_INIT)
            try:
                container.reader, container.writer = await asyncio.open_connection("127.0.0.1", container.port)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ContainerError("Failed to start the action container.") from None
                await asyncio.sleep(0.005)

    # ----------------------------------------------------------------------------------- activation
    async def invoke(self, params: dict[str, Any], activation_id: str, transid: str) -> dict[str, Any]:
        """Run one activation to its end; return its record (never raises for the action's failures)."""
        action = self.action
        queued = time.time()
        timings: dict[str, Any] = {}
        container, cold = await self._acquire()
        start = time.time()
        timings["wait_ms"] = ms(start - queued)
        container.activations += 1
        init_ms = None
        try:
            if cold:
                started = time.monotonic()
                container.state = "initializing"
                await self._start(container)
                timings["start_ms"] = ms(time.monotonic() - started)
                t_init = time.monotonic()
                init_resp = await self._call(container, "/init", {"value": {
                    "name": action.name, "main": action.main, "code": self._code_b64, "binary": True,
                    "env": action.init_env}}, init=True)
                if resp_status(init_resp) != 200:
                    raise ContainerError(error_of(init_resp) or ABNORMAL_INIT, origin="proxy")
                container.initialized = True
                container.state = "busy"
                init_ms = ms(time.monotonic() - t_init)
            deadline_ms = int((time.time() + action.time_limit_s) * 1000)
            t_run = time.monotonic()
            resp = await self._call(container, "/run", {
                "value": {**action.parameters, **params}, "namespace": action.namespace,
                "action_name": f"/{action.fqn}", "activation_id": activation_id, "transaction_id": transid,
                "deadline": str(deadline_ms)}, init=False)
            timings["run_ms"] = ms(time.monotonic() - t_run)
            status, result = self._run_response(resp)
            origin = "proxy" if status == DEVELOPER_ERROR else "action"
        except ContainerError as exc:
            status, result, origin = DEVELOPER_ERROR, {"error": str(exc)}, exc.origin
        except Exception as exc:  # the invoker's own failure: a whisk error, as ContainerProxy reports one
            log_event("invoker_error", error=repr(exc))
            status, origin = WHISK_ERROR, "invoker"
            result = {"error": "An internal error occurred while running the action."}
        end = time.time()
        if status in (DEVELOPER_ERROR, WHISK_ERROR):
            await self.destroy(container, result["error"])
        else:
            self._release(container)
        annotations = [{"key": "path", "value": action.fqn},
                       {"key": "waitTime", "value": round((start - queued) * 1000)},
                       {"key": "kind", "value": "python:3.11"},
                       {"key": "limits", "value": {"concurrency": 1, "memory": action.memory_mb, "logs": 10,
                                                   "timeout": round(action.time_limit_s * 1000)}}]
        if init_ms is not None:
            annotations.append({"key": "initTime", "value": round(init_ms)})
        record = {
            "namespace": action.namespace, "name": action.name, "activationId": activation_id,
            "start": round(start * 1000), "end": round(end * 1000), "duration": round((end - start) * 1000),
            "response": {"status": status, "statusCode": STATUS_CODES[status], "success": status == SUCCESS,
                         "result": result},
            "annotations": annotations, "logs": [],
        }
        record["_kde"] = {"origin": origin, "container": container.name, "pid": container.pid, "cold": cold,
                          "init_ms": init_ms,
                          **timings}
        return record

    async def _call(self, container: Container, path: str, payload: dict[str, Any], init: bool) -> wire.Message:
        limit = self.action.time_limit_s
        try:
            return await asyncio.wait_for(container.post(path, payload), limit)
        except TimeoutError:
            raise ContainerError(timed_out(limit, init)) from None
        except (OSError, wire.ProtocolError):
            raise ContainerError(ABNORMAL_INIT if init else ABNORMAL_RUN) from None

    @staticmethod
    def _run_response(resp: wire.Message) -> tuple[str, dict[str, Any] | list]:
        """ActivationResponse.processRunResponseContent: 200 + object = success (or an application error when it
        has an `error` field); any other status is the developer's error, with the proxy's `error` if it gave one."""
        text = resp.body.decode("utf-8", "replace").strip()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        ok = resp.start[1] == "200"
        if isinstance(parsed, dict):
            if ok:
                return (APPLICATION_ERROR, {"error": parsed["error"]}) if "error" in parsed else (SUCCESS, parsed)
            return DEVELOPER_ERROR, {"error": parsed.get("error") or invalid_run_response(text)}
        if isinstance(parsed, list) and ok:
            return SUCCESS, parsed
        return DEVELOPER_ERROR, {"error": invalid_run_response(text)}

    def status(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "action_memory_mb": self.action.memory_mb,
                "user_memory_mb": self.s.user_memory_mb, "buffered": sum(not f.done() for f in self.buffer),
                "containers": [{"name": c.name, "pid": c.pid, "state": c.state, "activations": c.activations}
                               for c in self.containers]}

    async def close(self) -> None:
        self.closed = True
        for future in self.buffer:
            future.cancel()
        await asyncio.gather(*(self.destroy(c, "shutdown") for c in list(self.containers)), return_exceptions=True)


def resp_status(resp: wire.Message | None) -> int:
    return int(resp.start[1]) if resp is not None else 0


def error_of(resp: wire.Message | None) -> str | None:
    """The proxy's {"error": ...} message, if its answer carries one."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        return str(json.loads(resp.body)["error"])
    return None


def invalid_run_response(text: str) -> str:
    return "The action did not produce a valid JSON or JSON Array response" + (f": {text}" if text else ".")


def new_id() -> str:
    return uuid.uuid4().hex
