"""A Python runtime that keeps the contract and the behaviour of the Kubeless v1.0.0-alpha.8 Python runtime.

Kubeless alpha.8 serves a Python function with this shape of program (kubeless/kubeless @ v1.0.0-alpha.8 :
docker/runtime/python/kubeless.py, byte-identical from alpha.1 to alpha.8): load `/kubeless/<MOD_NAME>.py` once in
the server process, serve it with bottle on CherryPy's thread pool (10 threads, listen backlog 5) at `/` only, and
run every call in a freshly forked process whose result comes back through a multiprocessing queue, read only
after `join(FUNC_TIMEOUT)`. Its numbers (fork cost per request, spurious 408s under concurrency, 408 for results
over one pipe buffer) are part of what the project measures, so this file reproduces them by default.

KUBELESS_RUNTIME_MODE=repaired switches to the behaviour of the later kubeless/runtimes fixes (read the result
before joining, no reliance on `is_alive()` after a concurrent fork, a clean 500 when the result cannot be sent
back, a returned `bottle.HTTPResponse` is not a failure). See function/kubeless/README.md for every switch.

Run:  MOD_NAME=handler FUNC_HANDLER=predict python3 kubeless.py
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bottle
import prometheus_client as prom
from access_log import ApacheAccessLog
from cheroot import wsgi

MODES = ("faithful", "repaired")
TIMEOUT_MESSAGE = "Timeout while processing the function"
# The runtime forks whatever the platform's default start method is; Kubeless ran on Linux, where it is fork.
FORK = multiprocessing.get_context("fork")
CHILD_EXIT_GRACE_S = 5.0
SOCKET_TIMEOUT_S = 10  # CherryPy 8.9.1's and cheroot's default, which Kubeless did not override

# The text exposition format of 2018 (client_python 0.x); newer clients label the same text version=1.0.0.
METRICS_CONTENT_TYPE = getattr(prom.exposition, "CONTENT_TYPE_PLAIN_0_0_4", prom.CONTENT_TYPE_LATEST)

Function = Callable[[dict[str, Any], dict[str, Any]], Any]


class ConfigError(Exception):
    """The runtime's environment does not describe a function it can load."""


class FunctionResultError(RuntimeError):
    """The function's process ended without a result the runtime could read (repaired mode only)."""


# ------------------------------------------------------------------------------------------- settings
def _env_number(env: Mapping[str, str], name: str, default: str, kind: type) -> Any:
    raw = env.get(name, default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than zero")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the runtime reads from its environment (the names Kubeless injects, plus our switches)."""

    mod_name: str
    func_handler: str
    timeout: float
    port: int
    runtime: str | None
    memory_limit: str | None
    code_dir: Path
    mode: str
    numthreads: int
    request_queue_size: int
    memfile_max: int
    bind_address: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        mod_name, func_handler = env.get("MOD_NAME", ""), env.get("FUNC_HANDLER", "")
        if not mod_name or not func_handler:
            raise ConfigError(
                "MOD_NAME and FUNC_HANDLER must both be set: for the handler 'handler.predict' Kubeless sets "
                "MOD_NAME=handler and FUNC_HANDLER=predict"
            )
        mode = env.get("KUBELESS_RUNTIME_MODE", "faithful")
        if mode not in MODES:
            raise ConfigError(f"KUBELESS_RUNTIME_MODE={mode!r} is not one of {', '.join(MODES)}")
        return cls(
            mod_name=mod_name,
            func_handler=func_handler,
            timeout=_env_number(env, "FUNC_TIMEOUT", "180", float),
            port=_env_number(env, "FUNC_PORT", "8080", int),
            runtime=env.get("FUNC_RUNTIME"),
            memory_limit=env.get("FUNC_MEMORY_LIMIT"),
            code_dir=Path(env.get("KUBELESS_CODE_DIR", "/kubeless")),
            mode=mode,
            numthreads=_env_number(env, "CHERRYPY_NUMTHREADS", "10", int),
            request_queue_size=_env_number(env, "CHERRYPY_REQUEST_QUEUE_SIZE", "5", int),
            memfile_max=_env_number(env, "FUNC_MEMFILE_MAX", str(bottle.BaseRequest.MEMFILE_MAX), int),
            bind_address=env.get("KUBELESS_BIND_ADDRESS", "0.0.0.0"),
        )


def load_function(settings: Settings) -> Function:
    """Import `<code_dir>/<MOD_NAME>.py` as the module `function` (as `imp.load_source` did) and return the handler.

    This runs in the server process before it serves, so whatever the module builds at import (the model) is
    inherited by every forked call.
    """
    path = settings.code_dir / f"{settings.mod_name}.py"
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist: MOD_NAME={settings.mod_name!r} must name a .py file in {path.parent}"
        )
    spec = importlib.util.spec_from_file_location("function", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["function"] = module  # so that exceptions defined in the module unpickle in the parent
    spec.loader.exec_module(module)
    func = getattr(module, settings.func_handler, None)
    if not callable(func):
        raise ConfigError(f"{path} has no function {settings.func_handler!r} (FUNC_HANDLER)")
    return func


# -------------------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metrics:
    duration: prom.Histogram
    calls: prom.Counter
    failures: prom.Counter
    registry: prom.CollectorRegistry

    @classmethod
    def register(cls, registry: prom.CollectorRegistry = prom.REGISTRY) -> Metrics:
        """The three series Kubeless exposes, labelled by HTTP method, next to the client's process metrics."""
        return cls(
            duration=prom.Histogram(
                "function_duration_seconds", "Duration of user function in seconds", ["method"], registry=registry
            ),
            calls=prom.Counter(
                "function_calls_total", "Number of calls to user function", ["method"], registry=registry
            ),
            failures=prom.Counter(
                "function_failures_total", "Number of exceptions in user function", ["method"], registry=registry
            ),
            registry=registry,
        )


# ------------------------------------------------------------------------------ calling the function
def _call_into_queue(queue: Any, func: Function, event: dict[str, Any], context: dict[str, Any]) -> None:
    """The forked child in faithful mode: put the return value, or the exception, on the queue."""
    try:
        queue.put(func(event, context))
    except Exception as exc:
        queue.put(exc)


def invoke_faithful(func: Function, event: dict[str, Any], context: dict[str, Any], timeout: float) -> Any:
    """One call exactly as alpha.8 makes it: fork, join(timeout), THEN read the queue.

    Consequences kept on purpose (they shape the measured numbers):
    - a result whose pickle exceeds the pipe buffer (~64 KiB) blocks the child's queue feeder until the parent
      reads, but the parent is still in join(): the call ends in a 408 after `timeout`;
    - when another request thread forks at the same moment, multiprocessing's child cleanup in that thread can
      reap this child first; join() then returns early and is_alive() wrongly reports True: a spurious 408;
    - a result that cannot be pickled never reaches the queue: the parent blocks in get() and the client gets
      no reply at all.
    """
    queue = FORK.Queue()
    child = FORK.Process(target=_call_into_queue, args=(queue, func, event, context))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.terminate()
        child.join()
        return bottle.HTTPError(408, TIMEOUT_MESSAGE)
    result = queue.get()
    if isinstance(result, Exception):
        raise result
    return result


def _call_into_pipe(conn: Any, func: Function, event: dict[str, Any], context: dict[str, Any]) -> None:
    """The forked child in repaired mode: send the result, or the exception, or why neither can be sent."""
    try:
        result = func(event, context)
    except Exception as exc:
        result = exc
    try:
        conn.send(result)  # pickles completely before writing, so a failure sends nothing
    except Exception as exc:
        conn.send(
            FunctionResultError(
                f"the function returned a {type(result).__name__} that cannot be pickled back to the runtime: {exc}"
            )
        )
    finally:
        conn.close()


# Held from creating a call's pipe until the parent has closed its copy of the write end, so that no other
# request's child inherits it: the parent then sees end-of-file as soon as this call's child dies.
_FORK_LOCK = threading.Lock()


def _reap(child: Any) -> None:
    """Wait (bounded) for a child to exit, kill it if it does not, and collect it.

    Exit is read from the child's sentinel, not is_alive(): another thread's fork may already have reaped it.
    """
    if not multiprocessing.connection.wait([child.sentinel], CHILD_EXIT_GRACE_S):
        child.kill()  # past its timeout, or it answered but does not exit (a non-daemon thread, say)
    child.join(CHILD_EXIT_GRACE_S)


def invoke_repaired(func: Function, event: dict[str, Any], context: dict[str, Any], timeout: float) -> Any:
    """One call with the later kubeless/runtimes fixes: wait for the result (not the exit), then join."""
    with _FORK_LOCK:
        reader, writer = FORK.Pipe(duplex=False)
        child = FORK.Process(target=_call_into_pipe, args=(writer, func, event, context))
        child.start()
        writer.close()
    try:
        if not reader.poll(timeout):
            child.terminate()
            return bottle.HTTPError(408, TIMEOUT_MESSAGE)
        try:
            result = reader.recv()
        except EOFError:
            result = None
            died = True
        else:
            died = False
    finally:
        reader.close()
        _reap(child)
    if died:
        raise FunctionResultError(
            f"the function's process exited (exit code {child.exitcode}) without returning a result"
        )
    if isinstance(result, bottle.HTTPResponse):
        return result  # a deliberate response, not a failure (kubeless/runtimes 7a69ac0)
    if isinstance(result, Exception):
        raise result
    return result


# ------------------------------------------------------------------------------------------------ app
def build_app(func: Function, settings: Settings, metrics: Metrics) -> bottle.Bottle:
    """The bottle app: the function at `/` (GET, POST, PATCH, DELETE), `/healthz` and `/metrics`."""
    app = bottle.Bottle()
    invoke = invoke_faithful if settings.mode == "faithful" else invoke_repaired
    context = {
        # alpha.8 passes the function object itself here (a bug fixed in 2020); repaired passes its name.
        "function-name": func if settings.mode == "faithful" else getattr(func, "__name__", settings.func_handler),
        "timeout": settings.timeout,
        "runtime": settings.runtime,
        "memory-limit": settings.memory_limit,
    }

    @app.route("/", method=["GET", "POST", "PATCH", "DELETE"])
    def call_function() -> Any:
        request = bottle.request
        content_type = request.get_header("content-type")
        data = request.body.read()
        if content_type == "application/json":  # exact match: '...; charset=utf-8' stays raw bytes
            data = request.json  # raises HTTPError 413 over MEMFILE_MAX, before the call is counted
        event = {
            "data": data,
            "event-id": request.get_header("event-id"),
            "event-type": request.get_header("event-type"),
            "event-time": request.get_header("event-time"),
            "event-namespace": request.get_header("event-namespace"),
            "extensions": {"request": request},
        }
        method = request.method
        metrics.calls.labels(method).inc()
        with metrics.failures.labels(method).count_exceptions(), metrics.duration.labels(method).time():
            return invoke(func, event, context, settings.timeout)

    @app.get("/healthz")
    def healthz() -> str:
        return "OK"

    @app.get("/metrics")
    def metrics_page() -> bytes:
        bottle.response.content_type = METRICS_CONTENT_TYPE
        return prom.generate_latest(metrics.registry)

    return app


def build_server(settings: Settings, app: bottle.Bottle) -> wsgi.Server:
    """cheroot is CherryPy's WSGI server, split out of CherryPy; same thread pool, same listen backlog."""
    return wsgi.Server(
        (settings.bind_address, settings.port),
        ApacheAccessLog(app),
        numthreads=settings.numthreads,
        request_queue_size=settings.request_queue_size,
        timeout=SOCKET_TIMEOUT_S,
    )


def main() -> int:
    try:
        settings = Settings.from_env()
        func = load_function(settings)
    except ConfigError as exc:
        print(f"kubeless runtime: {exc}", file=sys.stderr)
        return 2
    bottle.BaseRequest.MEMFILE_MAX = settings.memfile_max
    server = build_server(settings, build_app(func, settings, Metrics.register()))
    print(
        f"kubeless runtime (alpha.8 contract, mode={settings.mode}) serving {settings.mod_name}.{settings.func_handler}"
        f" on http://{settings.bind_address}:{settings.port}/ with {settings.numthreads} threads, backlog "
        f"{settings.request_queue_size}, timeout {settings.timeout:g} s",
        file=sys.stderr,
        flush=True,
    )
    server.safe_start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
