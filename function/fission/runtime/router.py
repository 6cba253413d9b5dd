"""The router hop: every request reaches the function through it, with one of two sets of upstream rules.

`2018` follows fission/fission 0.11.0 `router/functionHandler.go` (RetryingRoundTripper):
- keep-alive disabled towards the pod (`transport.DisableKeepAlives = true`): a new TCP connection per request;
- a dial error on an address the executor just gave is retried: the dial timeout starts at
  ROUTER_ROUND_TRIP_TIMEOUT (50 ms) and is multiplied by ROUTER_ROUNDTRIP_TIMEOUT_EXPONENT (2) before each
  back-off sleep of that length (so the sleeps are 100, 200, 400 ms ...), for ROUTER_ROUND_TRIP_MAX_RETRIES - 1
  tries, then one last try; a dial error on a cached address drops it and asks the executor again;
- any other error is relayed as Go's ReverseProxy does: 502, empty body; there is no function timeout.

`current` follows pkg/router at v1.26.0 (`functionHandler.go`, `transport.go`):
- one shared keep-alive pool per function address (MaxIdleConnsPerHost 32, idle connections closed after 30 s);
- each try has a deadline of the function's timeout (functionTimeout, 60 s by default): past it, 504 "no response
  from function before timeout"; a client that goes away: 499 "client closes the connection";
- dial errors re-resolve the address and back off (sleep of the dial timeout plus up to 20 % jitter, then x2),
  up to ROUTER_ROUND_TRIP_MAX_RETRIES tries; other errors and exhausted retries: 500 "error sending request to
  function"; an executor refusal keeps its status (429 at the concurrency limit).

Each request prints one JSON line (`"event": "router"`) with its status and where it came from (`origin`:
`function` when the pod answered, `router` when the hop made the answer up), so errors can be told by layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import http1
from poolmgr import Executor, ExecutorError, Pod, log_event, ms_since

IDLE_CONN_TIMEOUT_S = 30.0
MAX_IDLE_CONNS_PER_HOST = 32
SVC_ADDR_RETRY_COUNT = 5
DEFAULT_DIAL_TIMEOUT_S = 30.0
MODES = ("2018", "current")


@dataclass
class RouterSettings:
    mode: str = "current"
    round_trip_timeout_s: float = 0.05  # ROUTER_ROUND_TRIP_TIMEOUT
    timeout_exponent: int = 2  # ROUTER_ROUNDTRIP_TIMEOUT_EXPONENT
    max_retries: int = 10  # ROUTER_ROUND_TRIP_MAX_RETRIES
    disable_keep_alive: bool | None = None  # ROUTER_ROUND_TRIP_DISABLE_KEEP_ALIVE; None: the mode's rule
    function_timeout_s: float = 60.0  # the Function's functionTimeout (current mode only)
    trigger_url: str = "/"
    trigger_methods: tuple[str, ...] = ("GET", "POST")
    function_name: str = "predict"
    namespace: str = "default"
    access_log: bool = True

    @property
    def keep_alive(self) -> bool:
        if self.disable_keep_alive is not None:
            return not self.disable_keep_alive
        return self.mode == "current"


class DialError(Exception):
    def __init__(self, exc: BaseException, timeout: bool) -> None:
        super().__init__(f"dial tcp: {'i/o timeout' if timeout else exc}")
        self.timeout = timeout


class RouterAnswer(Exception):
    """The hop answers by itself (status, body) instead of relaying the function's answer."""

    def __init__(self, status: int, body: bytes, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.body = body
        self.reason = reason


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stream = http1.Buffered(reader)
        self.writer = writer
        self.reused = False
        self.idle_since = 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Router:
    def __init__(self, settings: RouterSettings, executor: Executor) -> None:
        if settings.mode not in MODES:
            raise ValueError(f"router mode must be one of {', '.join(MODES)}, got {settings.mode!r}")
        self.s = settings
        self.executor = executor
        self.idle: dict[str, list[Conn]] = {}
        self.cached: Pod | None = None  # the 2018 router's function-service cache (fmap)
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task] = set()

    # ------------------------------------------------------------------------------ listening
    async def start(self, bind: str, port: int) -> None:
        self.server = await asyncio.start_server(self._client, bind, port, backlog=1024)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.connections):
            task.cancel()
        for conns in self.idle.values():
            for conn in conns:
                conn.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        stream = http1.Buffered(reader)
        try:
            while True:
                try:
                    req = await http1.read_request(stream)
                except (http1.ProtocolError, ValueError):
                    writer.write(http1.encode_response("HTTP/1.1", 400, "Bad Request", [], b"", close=True))
                    break
                if req is None:
                    break
                close = req.wants_close()
                status, reason, headers, body = await self._serve(req, stream)
                if status is None:  # the client went away
                    break
                close = close or stream.eof
                writer.write(http1.encode_response(req.version, status, reason, headers, body, close,
                                                   head_only=req.start[0] == "HEAD"))
                await writer.drain()
                if close:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, req: http1.Message, stream: http1.Buffered):
        method, target = req.start[0], req.start[1]
        path = target.split("?", 1)[0]
        if path == "/router-healthz" and method == "GET":
            return 200, "OK", [], b""
        if path == "/function-ready" and method == "GET":
            ready = self.executor.ready()
            body = json.dumps({"ready": ready, **self.executor.status()}).encode()
            return (200 if ready else 503), ("OK" if ready else "Service Unavailable"), \
                [("Content-Type", "application/json")], body
        if path not in (self.s.trigger_url, f"/fission-function/{self.s.function_name}"):
            return 404, "Not Found", [("Content-Type", "text/plain; charset=utf-8")], b"404 page not found\n"
        if method not in self.s.trigger_methods and not path.startswith("/fission-function/"):
            return 405, "Method Not Allowed", [], b""
        return await self._proxy_watched(req, stream)

    # ------------------------------------------------------------------------------ proxying
    async def _proxy_watched(self, req: http1.Message, stream: http1.Buffered):
        """Proxy while watching the client: if it closes its end first, the upstream call is cancelled."""
        start = time.perf_counter()
        info: dict[str, Any] = {"attempts": 0, "pod": None, "cold": False}
        proxy = asyncio.create_task(self._proxy(req, info))
        watch = asyncio.create_task(self._client_gone(stream))
        done, _ = await asyncio.wait({proxy, watch}, return_when=asyncio.FIRST_COMPLETED)
        if proxy in done:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            try:
                resp = proxy.result()
            except Exception as exc:  # a defect of the hop itself: answered like Go's recovered handler panic
                if not isinstance(exc, RouterAnswer):
                    log_event("router_error", error=repr(exc))
                    exc = RouterAnswer(500 if self.s.mode == "current" else 502, b"", f"router error: {exc!r}")
                answer = exc
                self._log(req, answer.status, "router", start, info, answer.reason)
                return answer.status, http1.REASONS.get(answer.status, ""), \
                    ([("Content-Type", "text/plain; charset=utf-8")] if answer.body else []), answer.body
            status = int(resp.start[1])
            self._log(req, status, "function", start, info)
            headers = [(k, v) for k, v in resp.headers if k.lower() not in http1.HOP_BY_HOP
                       and k.lower() != "content-length"]
            return status, resp.start[2], headers, resp.body
        proxy.cancel()
        with contextlib.suppress(asyncio.CancelledError, RouterAnswer, Exception):
            await proxy
        # Go cancels the request's context: 499 today; 2018's ReverseProxy logged the error and wrote a 502
        status = 499 if self.s.mode == "current" else 502
        self._log(req, status, "router", start, info, "client closes the connection")
        return None, "", [], b""

    @staticmethod
    async def _client_gone(stream: http1.Buffered) -> None:
        while True:
            before = len(stream.buf)
            if not await stream.fill():
                return
            if len(stream.buf) > before:  # a pipelined next request: keep it, stop watching
                await asyncio.Event().wait()

    def _log(self, req: http1.Message, status: int, origin: str, start: float, info: dict[str, Any],
             reason: str | None = None) -> None:
        if not self.s.access_log:
            return
        record = {"event": "router", "ts": round(time.time(), 6), "mode": self.s.mode, "method": req.start[0],
                  "status": status, "origin": origin, "ms": ms_since(start), "attempts": info["attempts"],
                  "pod": info["pod"], "cold": info["cold"]}
        if reason:
            record["reason"] = reason
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    async def _proxy(self, req: http1.Message, info: dict[str, Any]) -> http1.Message:
        return await (self._round_trip_2018(req, info) if self.s.mode == "2018"
                      else self._round_trip_current(req, info))

    # -------------------------------------------------------------------------------- 2018
    async def _round_trip_2018(self, req: http1.Message, info: dict[str, Any]) -> http1.Message:
        timeout = self.s.round_trip_timeout_s
        from_executor = self.cached is None  # a cache miss asks the executor (which may specialize a pod)
        pod: Pod | None = None
        try:
            pod = self.cached = await self._acquire(info)
            for _ in range(self.s.max_retries - 1):
                try:
                    return await self._attempt(pod, req, timeout, info)
                except DialError:
                    if from_executor:
                        timeout *= self.s.timeout_exponent
                        self._retry_log(info, pod, timeout)
                        await asyncio.sleep(timeout)
                    else:
                        # a stale cache entry: drop it and ask the executor for the function's service again
                        self.executor.invalidate(pod)
                        self.executor.release(pod)
                        pod = self.cached = None
                        pod = self.cached = await self._acquire(info)
                        from_executor = True
            # finally one more try (Go's default transport, with the dial timeout the loop left on it)
            return await self._attempt(pod, req, timeout, info)
        except (DialError, ExecutorError) as exc:
            raise RouterAnswer(502, b"", f"proxy error: {exc}") from None
        except (OSError, http1.ProtocolError, ValueError) as exc:
            raise RouterAnswer(502, b"", f"proxy error: {exc!r}") from None
        finally:
            if pod is not None:
                self.executor.release(pod)

    # ------------------------------------------------------------------------------ current
    async def _round_trip_current(self, req: http1.Message, info: dict[str, Any]) -> http1.Message:
        timeout = self.s.round_trip_timeout_s
        retry_counter = 0
        pod: Pod | None = None
        try:
            for i in range(self.s.max_retries):
                if retry_counter == 0:
                    if pod is not None:
                        self.executor.release(pod)
                        pod = None
                    try:
                        pod = await self._acquire(info)
                    except ExecutorError as exc:
                        raise RouterAnswer(exc.status, b"error sending request to function", str(exc)) from None
                try:
                    return await asyncio.wait_for(self._attempt(pod, req, timeout, info), self.s.function_timeout_s)
                except TimeoutError:
                    raise RouterAnswer(504, b"no response from function before timeout",
                                       "no response from function before timeout") from None
                except DialError as exc:
                    if i >= self.s.max_retries - 1:
                        raise RouterAnswer(500, b"error sending request to function", str(exc)) from None
                    self.executor.invalidate(pod)
                    if exc.timeout:
                        retry_counter += 1
                    if retry_counter >= SVC_ADDR_RETRY_COUNT:
                        retry_counter = 0
                    self._retry_log(info, pod, timeout)
                    await asyncio.sleep(timeout * (1 + 0.2 * random.random()))  # noqa: S311 - jitter, not a secret
                    timeout *= self.s.timeout_exponent
                except (OSError, http1.ProtocolError, ValueError) as exc:
                    raise RouterAnswer(500, b"error sending request to function", repr(exc)) from None
            raise RouterAnswer(500, b"error sending request to function", "unable to get service url")
        finally:
            if pod is not None:
                self.executor.release(pod)

    # ------------------------------------------------------------------------------ one try
    async def _acquire(self, info: dict[str, Any]) -> Pod:
        pod = await self.executor.acquire()
        if pod.cold is not None and not pod.answered:
            info["cold"] = True
        return pod

    def _retry_log(self, info: dict[str, Any], pod: Pod, backoff_s: float) -> None:
        if self.s.access_log:
            log_event("router_retry", mode=self.s.mode, pod=pod.index, attempt=info["attempts"],
                      backoff_ms=round(backoff_s * 1000, 3))

    async def _dial(self, pod: Pod, timeout: float) -> Conn:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(pod.host, pod.port), timeout)
        except TimeoutError as exc:
            raise DialError(exc, timeout=True) from None
        except OSError as exc:
            raise DialError(exc, timeout=False) from None
        return Conn(reader, writer)

    def _pooled(self, pod: Pod) -> Conn | None:
        conns = self.idle.get(pod.address)
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if conn.stream.eof or conn.writer.is_closing() or now - conn.idle_since > IDLE_CONN_TIMEOUT_S \
                    or conn.stream.reader.at_eof():
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    async def _attempt(self, pod: Pod, req: http1.Message, dial_timeout: float, info: dict[str, Any]) -> http1.Message:
        info["attempts"] += 1
        info["pod"] = pod.index
        keep_alive = self.s.keep_alive
        conn = self._pooled(pod) if keep_alive else None
        if conn is None:
            conn = await self._dial(pod, dial_timeout)
        done = False
        try:
            conn.writer.write(http1.encode_request(req.start[0], self._upstream_target(req),
                                                   self._upstream_headers(req, pod, keep_alive), req.body))
            await conn.writer.drain()
            resp = await http1.read_response(conn.stream, req.start[0])
            done = True
        finally:
            if not done:
                conn.close()
        if keep_alive and not resp.wants_close() and not conn.stream.eof:
            conn.idle_since = time.monotonic()
            conns = self.idle.setdefault(pod.address, [])
            if len(conns) < MAX_IDLE_CONNS_PER_HOST:
                conns.append(conn)
            else:
                conn.close()
        else:
            conn.close()
        if pod.cold is not None and not pod.answered and resp.start[1] == "200":
            self._log_cold_start(pod)
        if resp.start[1] == "200":
            pod.answered = True
        return resp

    @staticmethod
    def _upstream_target(req: http1.Message) -> str:
        # the function container does no routing: the path becomes "/", the query string stays
        query = req.start[1].split("?", 1)[1] if "?" in req.start[1] else ""
        return "/" + (f"?{query}" if query else "")

    def _upstream_headers(self, req: http1.Message, pod: Pod, keep_alive: bool) -> list[tuple[str, str]]:
        headers = [(k, v) for k, v in req.headers
                   if k.lower() not in http1.HOP_BY_HOP and k.lower() not in ("host", "content-length")]
        headers = [("Host", pod.address), *headers]
        if not any(k.lower() == "user-agent" for k, _ in headers):
            headers.append(("User-Agent", ""))
        headers += [("X-Fission-Function-Name", self.s.function_name),
                    ("X-Fission-Function-Namespace", self.s.namespace)]
        if not keep_alive:
            headers.append(("Connection", "close"))
        return headers

    def _log_cold_start(self, pod: Pod) -> None:
        cold = dict(pod.cold or {})
        start = cold.pop("perf_start", None)
        if start is not None:
            cold["first_200_ms"] = ms_since(start)
        pod.cold = None
        log_event("cold_start", mode=self.s.mode, executor=self.executor.name, **cold)
