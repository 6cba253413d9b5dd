"""The front: OpenWhisk's controller rules and its invoker (invoker.py) in one process, on one port.

The controller (apache/openwhisk core/controller, at 1fae641) answers, for the one action it holds:

- **web actions**, `/api/v1/web/<namespace>/<package>/<action>[.http|.json]` (WebActions.scala): the request
  becomes the action's params: `__ow_method`, `__ow_headers`, `__ow_path`, query parameters, and the body, merged
  when it is a JSON object or a form, else as `__ow_body`, **base64-encoded for a binary content type** (a photo
  POSTed as image/jpeg, as the benchmark sends it). The result is the HTTP answer (`.http`: statusCode, headers,
  body) or its JSON (`.json`). A developer error (time limit, a non-dict result, a failed /init) is **400** "There
  was an error processing your request."; an application error answers its `error` field.
- **invokes**, `POST /api/v1/namespaces/<namespace>/actions/<action>?blocking=true&result=true` (Actions.scala):
  200 on success, **502** on an application or developer error (the time limit's "The action exceeded its time
  limits of N milliseconds."), 500 on a whisk error; non-blocking: 202 {"activationId"} at once.
- **blocking calls** wait at most `max-wait-for-blocking-activation` (60 s; an invoke's `timeout` may ask less),
  then answer **202** with the activation id (web: "Response not yet ready."), while the activation goes on;
  `GET /api/v1/namespaces/<namespace>/activations/<id>` returns its record once it has ended.
- **namespace limits** (EntitlementProvider, RateThrottler, ActivationThrottler): more than
  `invocationsPerMinute` (60) calls in the current minute, or an activation while `concurrentInvocations` (30)
  are in flight, is **429** with upstream's message. Both are settings here, raised for the benchmark.
- a body over `whisk.activation.payload.max` (1 MiB) is **413** "Request larger than allowed: N > M bytes.".
- `GET /ping` answers "pong" (the controller's health route).

Not reproduced: authentication (every call is the namespace's owner), CouchDB (the action and the records live in
memory), Kafka and the load balancer (one invoker, called in-process), the activation's logs (the proxies write
straight to the container's log). Each request prints one JSON line (`"event": "request"`: status, `origin`: the
layer that made the answer), each activation one (`"event": "activation"`: cold or warm, wait, init and run times).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import re
import signal
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import wire
from invoker import (
    APPLICATION_ERROR,
    DEVELOPER_ERROR,
    SUCCESS,
    Action,
    Invoker,
    InvokerSettings,
    log_event,
    ms,
    new_id,
)

HERE = Path(__file__).resolve().parent
NOT_FOUND = "The requested resource does not exist."
ERROR_PROCESSING = "There was an error processing your request."
NOT_READY = "Response not yet ready."
WEB_ROUTE = re.compile(r"^/api/v1/web/(?P<ns>[^/]+)/(?P<pkg>[^/]+)/(?P<action>[^/]+)(?P<rest>/.*)?$")
INVOKE_ROUTE = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/actions/(?P<action>[^/]+)$")
ACTIVATION_ROUTE = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/activations/(?P<id>[0-9a-f]+)$")
EXTENSIONS = ("http", "json")
KEEP_RECORDS = 1000
DEFAULT_INIT_ENV = ("MODEL_DIR", "MODEL_BACKEND", "MAX_PIXELS", "MAX_BODY_BYTES", "WARMUP_CALLS", "PLATFORM_NAME",
                    "TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH", "HOME")


@dataclass
class Limits:
    invocations_per_minute: int = 60
    concurrent_invocations: int = 30
    payload_max_bytes: int = 1024 * 1024
    max_wait_s: float = 60.0


@dataclass
class Throttles:
    """The namespace's per-minute counter (reset when the minute changes) and its activations in flight."""

    limits: Limits
    minute: int = -1
    count: int = 0
    in_flight: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {"rate": 0, "concurrency": 0})

    def check(self) -> str | None:
        """None when the call may go on (and is counted), else the 429's message."""
        now = int(time.time() // 60)
        if now != self.minute:
            self.minute, self.count = now, 0
        if self.count >= self.limits.invocations_per_minute:
            self.rejected["rate"] += 1
            return f"Too many requests in the last minute (count: {self.count}, allowed: " \
                   f"{self.limits.invocations_per_minute})."
        self.count += 1
        if self.in_flight >= self.limits.concurrent_invocations:
            self.rejected["concurrency"] += 1
            return f"Too many concurrent requests in flight (count: {self.in_flight}, allowed: " \
                   f"{self.limits.concurrent_invocations})."
        return None


def is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def is_binary(media: str) -> bool:
    """Akka HTTP's notion, as the controller uses it: text, JSON, XML, forms and scripts are not binary."""
    if not media:
        return True  # no content type: application/octet-stream
    top = media.split("/", 1)[0]
    if top in ("text", "multipart") or is_json(media) or media.endswith("+xml"):
        return False
    return media not in ("application/xml", "application/x-www-form-urlencoded", "application/javascript",
                         "application/x-javascript", "application/ecmascript")


def zip_action(folder: Path) -> bytes:
    """The action's code as `wsk action create predict action.zip --kind python:3.11` stores it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def error_body(message: str, transid: str) -> bytes:
    return json.dumps({"error": message, "code": transid}).encode()


class Controller:
    def __init__(self, action: Action, invoker: Invoker, limits: Limits, package: str = "default",
                 access_log: bool = True) -> None:
        self.action = action
        self.invoker = invoker
        self.limits = limits
        self.package = package
        self.access_log = access_log
        self.throttles = Throttles(limits)
        self.records: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.tasks: set[asyncio.Task] = set()
        self.server: asyncio.Server | None = None

    # ------------------------------------------------------------------------------------- serving
    async def start(self, bind: str, port: int) -> None:
        self.server = await asyncio.start_server(self._client, bind, port, backlog=1024)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        await self.invoker.close()
        for task in list(self.tasks):
            task.cancel()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    req = await wire.read_request(reader)
                except wire.ProtocolError:
                    writer.write(wire.encode_response(400, [], b"", close=True))
                    break
                if req is None:
                    break
                start = time.perf_counter()
                try:
                    status, headers, body, info = await self.route(req)
                except Exception as exc:  # a defect of the front: answered as the controller's internal error
                    log_event("controller_error", error=repr(exc))
                    status, headers, body, info = self._error(500, "An internal error occurred.", new_id())
                close = req.wants_close()
                writer.write(wire.encode_response(status, headers, body, close, req.start[2],
                                                  head_only=req.start[0] == "HEAD"))
                await writer.drain()
                if self.access_log:
                    log_event("request", method=req.start[0], path=req.start[1].split("?", 1)[0], status=status,
                              ms=ms(time.perf_counter() - start), **info)
                if close:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def route(self, req: wire.Message) -> tuple[int, list[tuple[str, str]], bytes, dict[str, Any]]:
        method, target = req.start[0], req.start[1]
        path, _, query = target.partition("?")
        transid = new_id()
        if path == "/ping" and method == "GET":
            return 200, [("Content-Type", "text/plain; charset=UTF-8")], b"pong", {"origin": "controller"}
        if path == "/kde/pool" and method == "GET":  # the kit's view of the pool (not an upstream route)
            state = {**self.invoker.status(), "in_flight": self.throttles.in_flight,
                     "rejected": self.throttles.rejected}
            return 200, [("Content-Type", "application/json")], json.dumps(state).encode(), {"origin": "controller"}
        if match := WEB_ROUTE.match(path):
            return await self.web_action(req, match, query, transid)
        if (match := INVOKE_ROUTE.match(path)) and method == "POST":
            return await self.invoke(req, match, query, transid)
        if (match := ACTIVATION_ROUTE.match(path)) and method == "GET":
            record = self.records.get(match["id"])
            if record is None or match["ns"] not in (self.action.namespace, "_"):
                return self._error(404, NOT_FOUND, transid)
            return 200, [("Content-Type", "application/json")], json.dumps(record).encode(), {"origin": "controller"}
        return self._error(404, NOT_FOUND, transid)

    @staticmethod
    def _error(status: int, message: str, transid: str, origin: str = "controller", **info: Any):
        return status, [("Content-Type", "application/json"), ("X-Request-ID", transid)], \
            error_body(message, transid), {"origin": origin, **info}

    # ---------------------------------------------------------------------------------- admission
    def _admit(self, req: wire.Message, transid: str):
        """The entitlement checks, then the payload size: None when the call may go on, else the answer."""
        rejection = self.throttles.check()
        if rejection is not None:
            return self._error(429, rejection, transid)
        if len(req.body) > self.limits.payload_max_bytes:
            return self._error(413, f"Request larger than allowed: {len(req.body)} > "
                                    f"{self.limits.payload_max_bytes} bytes.", transid)
        return None

    def _launch(self, params: dict[str, Any], transid: str) -> tuple[str, asyncio.Task]:
        activation_id = new_id()
        self.throttles.in_flight += 1
        task = asyncio.create_task(self.invoker.invoke(params, activation_id, transid))
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._completed(t, activation_id))
        return activation_id, task

    def _completed(self, task: asyncio.Task, activation_id: str) -> None:
        self.tasks.discard(task)
        self.throttles.in_flight -= 1
        if task.cancelled() or task.exception() is not None:
            return
        record = task.result()
        kde = record.pop("_kde")
        self.records[activation_id] = dict(record)  # what GET .../activations/<id> answers
        while len(self.records) > KEEP_RECORDS:
            self.records.popitem(last=False)
        if self.access_log:
            log_event("activation", activation_id=activation_id, status=record["response"]["status"],
                      duration_ms=record["duration"], **kde)
        # for the waiting request (this callback runs before the waiter resumes): which layer made the outcome
        record["_origin"] = kde["origin"]

    async def _wait(self, task: asyncio.Task, wait_s: float) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(asyncio.shield(task), wait_s)
        except TimeoutError:
            return None

    # ------------------------------------------------------------------------------- web actions
    def web_params(self, req: wire.Message, rest: str, query: str) -> dict[str, Any] | None:
        headers = {k.lower(): v for k, v in req.headers}
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        media = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if req.body:
            if is_json(media):
                try:
                    body = json.loads(req.body)
                except ValueError:
                    return None
                if isinstance(body, dict):
                    params.update(body)
                else:
                    params["__ow_body"] = body
            elif media == "application/x-www-form-urlencoded":
                params.update(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
            elif is_binary(media):
                params["__ow_body"] = base64.b64encode(req.body).decode()
            else:
                params["__ow_body"] = req.body.decode("utf-8", "replace")
        params.update({"__ow_method": req.start[0].lower(), "__ow_headers": headers, "__ow_path": rest})
        return params

    async def web_action(self, req: wire.Message, match: re.Match, query: str, transid: str):
        name, _, ext = match["action"].partition(".")
        ext = ext or "http"
        if (match["ns"], match["pkg"], name) != (self.action.namespace, self.package, self.action.name) \
                or ext not in EXTENSIONS:
            return self._error(404, NOT_FOUND, transid)
        rejected = self._admit(req, transid)
        if rejected:
            return rejected
        params = self.web_params(req, match["rest"] or "", query)
        if params is None:
            return self._error(400, "The request content was malformed.", transid)
        activation_id, task = self._launch(params, transid)
        record = await self._wait(task, self.limits.max_wait_s)
        info: dict[str, Any] = {"activation_id": activation_id}
        id_header = [("x-openwhisk-activation-id", activation_id)]
        if record is None:
            status, headers, body, info = self._error(202, NOT_READY, transid, **info)
            return status, headers + id_header, body, info
        info["origin"] = record.pop("_origin", "action")
        response = record["response"]
        if response["status"] not in (SUCCESS, APPLICATION_ERROR):
            status, headers, body, _ = self._error(400, ERROR_PROCESSING, transid)
            return status, headers + id_header, body, info
        result = response["result"]
        projected = result if response["status"] == SUCCESS else result.get("error")
        status, headers, body = self.transcode(projected, ext)
        return status, headers + id_header + [("X-Request-ID", transid)], body, info

    @staticmethod
    def transcode(result: Any, ext: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if ext == "json":
            return 200, [("Content-Type", "application/json")], json.dumps(result).encode()
        if not isinstance(result, dict):
            return 400, [("Content-Type", "application/json")], \
                json.dumps({"error": "Resource did not produce a valid HTTP response."}).encode()
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        body = result.get("body")
        status = int(result.get("statusCode") or (200 if body is not None else 204))
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        if isinstance(body, dict | list):
            data = json.dumps(body).encode()
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            media = (content_type or "text/html").split(";", 1)[0].strip().lower()
            data = base64.b64decode(body) if is_binary(media) else body.encode()
            content_type = content_type or "text/html; charset=UTF-8"
        elif body is None:
            data = b""
        else:
            data = json.dumps(body).encode()
        out = [(k, v) for k, v in headers.items() if k.lower() not in ("content-type", "content-length")]
        if content_type and data:
            out.append(("Content-Type", content_type))
        return status, out, data

    # ------------------------------------------------------------------------------------ invokes
    async def invoke(self, req: wire.Message, match: re.Match, query: str, transid: str):
        if match["ns"] not in (self.action.namespace, "_") or match["action"] != self.action.name:
            return self._error(404, NOT_FOUND, transid)
        args = dict(parse_qsl(query))
        blocking, result_only = args.get("blocking") == "true", args.get("result") == "true"
        wait_s = self.limits.max_wait_s
        if "timeout" in args:
            try:
                wait_s = min(wait_s, int(args["timeout"]) / 1000.0)
            except ValueError:
                return self._error(400, "Timeout must be a number of milliseconds.", transid)
        rejected = self._admit(req, transid)
        if rejected:
            return rejected
        try:
            params = json.loads(req.body) if req.body else {}
        except ValueError:
            params = None
        if not isinstance(params, dict):
            return self._error(400, "The request content was malformed.", transid)
        activation_id, task = self._launch(params, transid)
        id_header = [("x-openwhisk-activation-id", activation_id), ("Content-Type", "application/json")]
        record = await self._wait(task, wait_s) if blocking else None
        if record is None:
            return 202, id_header, json.dumps({"activationId": activation_id}).encode(), \
                {"origin": "controller", "activation_id": activation_id}
        origin = record.pop("_origin", "action")
        status = {SUCCESS: 200, APPLICATION_ERROR: 502, DEVELOPER_ERROR: 502}.get(record["response"]["status"], 500)
        body = record["response"]["result"] if result_only else record
        return status, id_header, json.dumps(body).encode(), {"origin": origin, "activation_id": activation_id}


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(description="OpenWhisk's controller and invoker rules in front of action "
                                "containers run as local processes (function/openwhisk/README.md).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bind", default=env("OPENWHISK_BIND", "0.0.0.0"), help="OPENWHISK_BIND")
    p.add_argument("--port", type=int, default=int(env("OPENWHISK_PORT", "8080")), help="OPENWHISK_PORT")
    p.add_argument("--namespace", default=env("OPENWHISK_NAMESPACE", "guest"), help="OPENWHISK_NAMESPACE")
    p.add_argument("--package", default=env("OPENWHISK_PACKAGE", "default"),
                   help="OPENWHISK_PACKAGE: default = the action is in no package")
    p.add_argument("--action-name", default=env("OPENWHISK_ACTION", "predict"), help="OPENWHISK_ACTION")
    p.add_argument("--action-dir", type=Path, default=Path(env("OPENWHISK_ACTION_DIR", str(HERE.parent / "action"))),
                   help="OPENWHISK_ACTION_DIR: the folder zipped as the action's code (its __main__.py)")
    p.add_argument("--main", default=env("OPENWHISK_MAIN", "main"), help="OPENWHISK_MAIN: the entry point")
    p.add_argument("--memory-mb", type=int, default=int(env("OPENWHISK_ACTION_MEMORY_MB", "256")),
                   help="OPENWHISK_ACTION_MEMORY_MB: the action's memory limit (upstream std 256, max 512)")
    p.add_argument("--user-memory-mb", type=int, default=int(env("OPENWHISK_USER_MEMORY_MB", "2048")),
                   help="OPENWHISK_USER_MEMORY_MB: the invoker's user memory; pool = this // action memory")
    p.add_argument("--time-limit-s", type=float, default=float(env("OPENWHISK_TIME_LIMIT_S", "60")),
                   help="OPENWHISK_TIME_LIMIT_S: the action's time limit for /init and for /run")
    p.add_argument("--pause-grace-s", type=float, default=float(env("OPENWHISK_PAUSE_GRACE_S", "10")),
                   help="OPENWHISK_PAUSE_GRACE_S: idle time before a container is paused (0.05 in 2018); 0: never")
    p.add_argument("--idle-container-s", type=float, default=float(env("OPENWHISK_IDLE_CONTAINER_S", "600")),
                   help="OPENWHISK_IDLE_CONTAINER_S: a paused container is removed after this; 0: never")
    p.add_argument("--invocations-per-minute", type=int,
                   default=int(env("OPENWHISK_INVOCATIONS_PER_MINUTE", "60")),
                   help="OPENWHISK_INVOCATIONS_PER_MINUTE: the namespace limit (upstream 60)")
    p.add_argument("--concurrent-invocations", type=int,
                   default=int(env("OPENWHISK_CONCURRENT_INVOCATIONS", "30")),
                   help="OPENWHISK_CONCURRENT_INVOCATIONS: the namespace limit (upstream 30)")
    p.add_argument("--max-wait-s", type=float, default=float(env("OPENWHISK_MAX_WAIT_S", "60")),
                   help="OPENWHISK_MAX_WAIT_S: a blocking call's wait before its 202 "
                        "(max-wait-for-blocking-activation)")
    p.add_argument("--payload-max-bytes", type=int, default=int(env("OPENWHISK_PAYLOAD_MAX_BYTES", str(1 << 20))),
                   help="OPENWHISK_PAYLOAD_MAX_BYTES: whisk.activation.payload.max")
    p.add_argument("--init-env", default=env("OPENWHISK_INIT_ENV", ",".join(DEFAULT_INIT_ENV)),
                   help="OPENWHISK_INIT_ENV: variables of this process passed to the action as /init's env "
                        "(the action's init parameters; the action process sees no other)")
    p.add_argument("--work-dir", type=Path, default=Path(env("OPENWHISK_WORK_DIR", "/tmp/openwhisk")),  # noqa: S108 - the container's own /tmp
                   help="OPENWHISK_WORK_DIR: each container's ./action folder goes under it")
    p.add_argument("--access-log", default=env("OPENWHISK_ACCESS_LOG", "true"),
                   help="OPENWHISK_ACCESS_LOG: one JSON line per request and per activation (true/false)")
    return p


def build(args: argparse.Namespace) -> Controller:
    main_file = args.action_dir / "__main__.py"
    if not main_file.is_file():
        raise SystemExit(f"the action folder {args.action_dir} has no __main__.py; set OPENWHISK_ACTION_DIR")
    names = [n.strip() for n in args.init_env.split(",") if n.strip()]
    action = Action(namespace=args.namespace, name=args.action_name, code=zip_action(args.action_dir),
                    main=args.main, memory_mb=args.memory_mb, time_limit_s=args.time_limit_s,
                    init_env={n: os.environ[n] for n in names if n in os.environ})
    invoker = Invoker(InvokerSettings(work_dir=args.work_dir, user_memory_mb=args.user_memory_mb,
                                      pause_grace_s=args.pause_grace_s, idle_container_s=args.idle_container_s),
                      action)
    if invoker.capacity < 1:
        raise SystemExit(f"the invoker's user memory ({args.user_memory_mb} MB) holds no container of the action's "
                         f"{args.memory_mb} MB: raise OPENWHISK_USER_MEMORY_MB or lower OPENWHISK_ACTION_MEMORY_MB")
    limits = Limits(invocations_per_minute=args.invocations_per_minute,
                    concurrent_invocations=args.concurrent_invocations,
                    payload_max_bytes=args.payload_max_bytes, max_wait_s=args.max_wait_s)
    controller = Controller(action, invoker, limits, args.package,
                            access_log=args.access_log.lower() in ("1", "true", "yes"))
    log_event("start", action=f"/{action.fqn}", code_bytes=len(action.code), memory_mb=action.memory_mb,
              user_memory_mb=args.user_memory_mb, pool=invoker.capacity, time_limit_s=action.time_limit_s,
              pause_grace_s=args.pause_grace_s, idle_container_s=args.idle_container_s,
              invocations_per_minute=limits.invocations_per_minute,
              concurrent_invocations=limits.concurrent_invocations, max_wait_s=limits.max_wait_s,
              payload_max_bytes=limits.payload_max_bytes, port=args.port)
    return controller


async def serve(args: argparse.Namespace) -> None:
    controller = build(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await controller.start(args.bind, args.port)
    await stop.wait()
    log_event("stop")
    await controller.close()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parser().parse_args(argv)))


if __name__ == "__main__":
    main()
