"""fwatchdog: the OpenFaaS function watchdog, in the two designs this kit measures (see ../README.md).

- `mode=http` follows of-watchdog 0.11.3 in HTTP mode (the watchdog the python3-http template ships): `fprocess` is
  started once; each request is proxied to `upstream_url` over keep-alive connections; `exec_timeout` -> 504, an
  upstream that cannot be reached or breaks off -> 500 (both empty, with `X-OpenFaaS-Internal: of-watchdog`);
  `max_inflight` -> 429; `/_/health` is ready as soon as the lock file is written, which happens when the proxy
  starts listening, before the upstream does; `/_/ready` adds the `max_inflight` check and, with `ready_path`, asks
  the upstream. If the upstream exits with an error the watchdog exits too ("Forked function has terminated").
- `mode=classic` follows the classic watchdog 0.3.1 (the one OpenFaaS's python3 template shipped until it was
  retired): every request execs `fprocess` (`python3 index.py`), writes the body to its stdin and answers its stdout;
  `exec_timeout` kills it and answers 408 "Killed process."; a non-zero exit -> 500 with the exit status and the
  output; concurrency is unbounded unless `max_inflight` is set (-> 429).

Settings are the upstream environment variables, read as upstream reads them. One Python process with an asyncio
loop (function/common/http1.py) stands in for the Go binary; ../README.md lists what is faithful and what is not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from httpio import log, parse_duration, plain, split_host_port

from function.common.http1 import Drop, Request, Response, Server, UpstreamError
from function.common.http1 import Pool as UpstreamPool

VERSIONS = {"http": "of-watchdog 0.11.3 (mode=http)", "classic": "classic-watchdog 0.3.1"}
CLASSIC_METHODS = ("POST", "PUT", "PATCH", "DELETE", "GET")
SIGNAL_TEXT = {signal.SIGKILL: "killed", signal.SIGTERM: "terminated", signal.SIGINT: "interrupt",
               signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted", signal.SIGBUS: "bus error"}


def _bool(value: str | None) -> bool:
    return value in ("true", "1")


@dataclass(frozen=True)
class Config:
    mode: str
    port: int
    fprocess: str
    read_timeout: float
    write_timeout: float
    exec_timeout: float
    healthcheck_interval: float
    max_inflight: int
    suppress_lock: bool
    upstream_url: str
    ready_path: str
    prefix_logs: bool
    content_type: str
    combine_output: bool
    cgi_headers: bool
    bind: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Config:
        mode = env.get("mode", "")
        if mode not in VERSIONS:
            raise SystemExit(f"watchdog: set mode=http (of-watchdog) or mode=classic (classic watchdog), got {mode!r}")
        fprocess = env.get("function_process") or env.get("fprocess", "") if mode == "http" else env.get("fprocess", "")
        if not fprocess:
            raise SystemExit('watchdog: provide a "fprocess" environment variable for your function')
        write_timeout = parse_duration(env.get("write_timeout"), 30.0)
        upstream_url = env.get("http_upstream_url") or env.get("upstream_url", "")
        if mode == "http" and not upstream_url:
            raise SystemExit('watchdog: for "mode=http" you must specify a valid URL for "upstream_url"')
        # of-watchdog's exec_timeout defaults to 30 s; the classic watchdog's to 0 (no limit).
        return cls(
            mode=mode,
            port=int(env.get("port") or 8080),
            fprocess=fprocess,
            read_timeout=parse_duration(env.get("read_timeout"), 30.0),
            write_timeout=write_timeout,
            exec_timeout=parse_duration(env.get("exec_timeout"), 30.0 if mode == "http" else 0.0),
            healthcheck_interval=parse_duration(env.get("healthcheck_interval"), write_timeout),
            max_inflight=int(env.get("max_inflight") or 0),
            suppress_lock=_bool(env.get("suppress_lock")),
            upstream_url=upstream_url,
            ready_path=env.get("ready_path", ""),
            prefix_logs=env.get("prefix_logs", "true") not in ("false", "0", "f", "F", "FALSE", "False"),
            content_type=env.get("content_type", ""),
            combine_output=env.get("combine_output", "true") == "true",
            cgi_headers=env.get("cgi_headers", "true") == "true",
            # Not an upstream setting: the address to listen on (the Go servers listen on every address).
            bind=env.get("WATCHDOG_BIND_ADDRESS", "0.0.0.0"),
        )


def lock_path() -> Path:
    """Go's os.TempDir(): $TMPDIR, else /tmp."""
    return Path(os.environ.get("TMPDIR") or "/tmp") / ".lock"  # noqa: S108 (the lock file's fixed place)


def duration_header(start: float) -> tuple[str, str]:
    return ("X-Duration-Seconds", f"{time.monotonic() - start:f}")


class Limiter:
    """faas-middleware's concurrency limiter: over `max_inflight` requests in the handler -> 429 at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def met(self) -> bool:
        return self.limit > 0 and self.active >= self.limit

    async def __call__(self, handler, request: Request) -> Response | Drop:
        if self.limit <= 0:
            return await handler(request)
        if self.active >= self.limit:
            return plain(429, f"Concurrent request limit exceeded. Max concurrent requests: {self.limit}\n",
                         [("X-OpenFaaS-Internal", "faas-middleware")])
        self.active += 1
        try:
            return await handler(request)
        finally:
            self.active -= 1


class Watchdog:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.accepting = False
        self.limiter = Limiter(config.max_inflight)
        self.server = Server(self.route, config.read_timeout, config.write_timeout)
        self.child: asyncio.subprocess.Process | None = None
        self.pool: UpstreamPool | None = None
        if config.mode == "http":
            host, port, _ = split_host_port(config.upstream_url)
            # of-watchdog's proxy client: 100 idle connections, kept 500 ms; dial timeout = exec_timeout.
            self.pool = UpstreamPool(host, port, max_idle=100, idle_timeout=0.5, dial_timeout=config.exec_timeout)

    # ------------------------------------------------------------------------------------------ routes
    async def route(self, request: Request) -> Response | Drop:
        path = request.path
        if path == "/_/health":
            return self.health(request)
        if path == "/_/ready" and self.config.mode == "http":
            return await self.ready(request)
        handler = self.proxy if self.config.mode == "http" else self.fork
        return await self.limiter(handler, request)

    def healthy(self) -> bool:
        return self.accepting and (self.config.suppress_lock or lock_path().exists())

    def health(self, request: Request) -> Response:
        if request.method != "GET":
            return Response(405)
        return plain(200, "OK") if self.healthy() else Response(503)

    async def ready(self, request: Request) -> Response | Drop:
        if request.method != "GET":
            return Response(405)
        if not self.healthy():
            return Response(503)
        if self.limiter.met():
            return Response(429)
        if self.config.ready_path:
            # of-watchdog sends the check through the function handler itself (not the limiter)
            probe = Request("GET", self.config.ready_path, request.version, list(request.headers), b"",
                            request.remote, request.headers_done)
            return await self.proxy(probe)
        return Response(200)

    # ---------------------------------------------------------------------------------- mode=http
    async def proxy(self, request: Request) -> Response:
        start = time.monotonic()
        timeout = self.config.exec_timeout
        override = parse_duration(request.header("X-Timeout"), -1.0)
        if 0 <= override <= timeout:
            timeout = override  # X-Timeout can only shorten exec_timeout
        internal = ("X-OpenFaaS-Internal", "of-watchdog")
        assert self.pool is not None
        try:
            async with asyncio.timeout(timeout or None):
                resp = await self.pool.request(request.method, request.target, request.headers, request.body)
        except TimeoutError:
            log(f"Upstream HTTP killed due to exec_timeout: {self.config.exec_timeout:g}s")
            return Response(504, [duration_header(start), internal])
        except UpstreamError as exc:
            log(f"Upstream HTTP request error: {exc}")
            return Response(500, [duration_header(start), internal])
        headers = [(k, v) for k, v in resp.headers if k.lower() != "x-duration-seconds"]
        headers.append(duration_header(start))
        if not request.header("User-Agent").startswith("kube-probe"):
            log(f"{request.method} {request.target} - {resp.status} - ContentLength: {len(resp.body)}B "
                f"({time.monotonic() - start:.4f}s)")
        return Response(resp.status, headers, resp.body)

    async def start_fprocess(self) -> None:
        """Start the upstream once, its stdout and stderr copied line by line to ours (prefixed like Go's log)."""
        parts = self.config.fprocess.split(" ")
        log(f"Forking: {parts[0]}, arguments: {parts[1:]}")
        self.child = await asyncio.create_subprocess_exec(
            *parts, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        asyncio.get_running_loop().create_task(self._copy_lines("stdout", self.child.stdout, sys.stdout))
        asyncio.get_running_loop().create_task(self._copy_lines("stderr", self.child.stderr, sys.stderr))
        asyncio.get_running_loop().create_task(self._reap_fprocess())

    async def _copy_lines(self, name: str, pipe: asyncio.StreamReader | None, out) -> None:
        if pipe is None:
            return
        log(f"Started logging: {name} from function.")
        while line := await pipe.readline():
            text = line.decode("utf-8", "replace").rstrip("\n")
            out.write((time.strftime("%Y/%m/%d %H:%M:%S ") + f"{name}: {text}\n") if self.config.prefix_logs
                      else text + "\n")
            out.flush()

    async def _reap_fprocess(self) -> None:
        assert self.child is not None
        code = await self.child.wait()
        if code != 0:
            reason = f"exit status {code}" if code > 0 else "signal: " + SIGNAL_TEXT.get(-code, str(-code))
            log(f"Forked function has terminated: {reason}")
            sys.stdout.flush()
            os._exit(1)

    # ------------------------------------------------------------------------------- mode=classic
    def _cgi_env(self, request: Request) -> dict[str, str] | None:
        if not self.config.cgi_headers:
            return None
        env = dict(os.environ)
        for name, value in request.headers:
            if name.lower() != "host":  # Go keeps Host apart from the other headers
                env["Http_" + "_".join(part.capitalize() for part in name.split("-"))] = value
        env["Http_Method"] = request.method
        length = request.header("Content-Length") or ("-1" if request.header("Transfer-Encoding") else "0")
        env["Http_ContentLength"] = env["Http_Content_Length"] = length
        if request.header("Transfer-Encoding"):
            env["Http_Transfer_Encoding"] = request.header("Transfer-Encoding")
        if request.query:
            env["Http_Query"] = request.query
        env["Http_Path"] = request.path
        if request.header("Host"):
            env["Http_Host"] = request.header("Host")
        return env

    async def fork(self, request: Request) -> Response:
        if request.method not in CLASSIC_METHODS:
            return Response(405)
        start = time.monotonic()
        log("Forking fprocess.")
        parts = self.config.fprocess.split(" ")
        combine = self.config.combine_output
        try:
            process = await asyncio.create_subprocess_exec(
                *parts, env=self._cgi_env(request), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if combine else asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return plain(500, f'exec: "{parts[0]}": {exc.strerror}\n')
        killed = False

        def kill() -> None:
            nonlocal killed
            log(f"Killing process: {self.config.fprocess}")
            killed = True
            if process.returncode is None:
                process.kill()

        timer = (asyncio.get_running_loop().call_later(self.config.exec_timeout, kill)
                 if self.config.exec_timeout > 0 else None)
        try:
            out, err = await process.communicate(request.body)
        except (BrokenPipeError, ConnectionResetError):
            out, err = b"", b""
            await process.wait()
        finally:
            if timer is not None:
                timer.cancel()
        if err:
            log(f"stderr: {err.decode('utf-8', 'replace').rstrip()}")
        if killed:
            return plain(408, "Killed process.\n")
        code = process.returncode
        if code != 0:
            reason = f"exit status {code}" if code and code > 0 else "signal: " + SIGNAL_TEXT.get(-code, str(-code))
            return Response(500, [("Content-Type", "text/plain; charset=utf-8")], f"{reason}\n".encode() + out)
        content_type = self.config.content_type or request.header("Content-Type")
        headers = [("Content-Type", content_type)] if content_type else []
        headers.append(duration_header(start))
        log(f"Wrote {len(out)} Bytes - Duration: {time.monotonic() - start:f}s")
        return Response(200, headers, out)

    # --------------------------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        log(f"Version: {VERSIONS[self.config.mode]} (kubeless-dl-eval stand-in)")
        if self.config.mode == "http":
            await self.start_fprocess()
        c = self.config
        log(f"Timeouts: read: {c.read_timeout:g}s write: {c.write_timeout:g}s hard: {c.exec_timeout:g}s "
            f"health: {c.healthcheck_interval:g}s")
        await self.server.start(c.bind, c.port)
        log(f"Listening on port: {c.port}")
        # The lock file goes down as soon as the server listens: not when the upstream does (the start-up race).
        if c.suppress_lock:
            log('Warning: "suppress_lock" is enabled. No automated health-checks will be in place for your function.')
        else:
            log(f"Writing lock-file to: {lock_path()}")
            lock_path().parent.mkdir(parents=True, exist_ok=True)
            lock_path().write_bytes(b"")
        self.accepting = True
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """SIGTERM: the upstream gets SIGTERM at once (of-watchdog); the lock file goes, and after
        healthcheck_interval the server stops and drains for up to write_timeout."""
        if self.child is not None and self.child.returncode is None:
            self.child.send_signal(signal.SIGTERM)
        log(f"SIGTERM: no new connections in {self.config.healthcheck_interval:g}s")
        self.accepting = False
        log(f"Removing lock-file : {lock_path()}")
        lock_path().unlink(missing_ok=True)
        await asyncio.sleep(self.config.healthcheck_interval)
        await self.server.close()
        deadline = time.monotonic() + self.config.write_timeout
        while self.server.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        log(f"Exiting. Active connections: {self.server.in_flight}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The OpenFaaS watchdog (of-watchdog mode=http, or the classic watchdog with mode=classic), "
        "configured by its environment variables: mode, fprocess, upstream_url, port, read_timeout, write_timeout, "
        "exec_timeout, healthcheck_interval, max_inflight, ready_path, suppress_lock, prefix_logs (http); "
        "content_type, combine_output, cgi_headers (classic). WATCHDOG_BIND_ADDRESS sets the listen address.")
    parser.add_argument("--run-healthcheck", action="store_true",
                        help="exit 0 if the lock file is present, 1 if not (an exec health check)")
    parser.add_argument("--version", action="store_true", help="print the upstream version followed and exit")
    args = parser.parse_args(argv)
    if args.run_healthcheck:
        if lock_path().exists():
            return 0
        sys.stderr.write("unable to find lock file.\n")
        return 1
    if args.version:
        print(" / ".join(VERSIONS.values()))
        return 0
    asyncio.run(Watchdog(Config.from_env(dict(os.environ))).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
