"""The hop in front of the watchdog: the OpenFaaS gateway 0.27.13 (CE) and, behind it, faas-netes 0.18.16's proxy
(both as the openfaas Helm chart 15.0.5 deploys them; see ../README.md).

Two roles of this program, each one process:

- `--role gateway` (the default) follows gateway/handlers/forwarding_proxy.go: `/function/<name>[/<path>]` is
  forwarded with the request's headers (less hop-by-hop ones) plus X-Forwarded-Host/-For and the call-id headers,
  over keep-alive connections; when the upstream cannot be reached, breaks off or outlasts `upstream_timeout`, the
  answer is an empty **502**. The gateway's own `read_timeout` / `write_timeout` apply to its clients.
  `OPENFAAS_GATEWAY_TOPOLOGY` says what the upstream is:
  - `provider` (what CE has done since gateway 0.26, and this image's default): the gateway sends every call to
    `functions_provider_url`, i.e. the faas-netes proxy (the next role), which calls the function;
  - `direct` (`direct_functions=true`: CE before 2023, and OpenFaaS Pro): the gateway calls the function itself.
- `--role provider` follows faas-provider's proxy/proxy.go as faas-netes 0.18.16 vendors it: it resolves the name,
  calls the function with a client whose timeout is its `read_timeout`, and answers **500** "Can't reach service
  for: <name>." when that call fails, **503** "No endpoints available for: <name>." for a name it cannot resolve.

Where a function lives (what Kubernetes' Service DNS gives the real ones) is `FUNCTION_UPSTREAMS`, e.g.
`predict=http://127.0.0.1:8000`: a setting of this stand-in, not of the upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import time
import uuid

from httpio import log, parse_duration, plain, split_host_port

from function.common.http1 import Pool as UpstreamPool
from function.common.http1 import Request, Response, Server, UpstreamError

GATEWAY_VERSION = "0.27.13"
PROVIDER_VERSION = "0.18.16"
_FUNCTION_ROUTE = re.compile(r"^/function/(?P<name>[-a-zA-Z_0-9.]+)(?:/(?P<params>.*))?$")


def function_upstreams(value: str) -> dict[str, tuple[str, int]]:
    """`name=http://host:port,other=...` -> {name: (host, port)}."""
    table = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, url = item.partition("=")
        if not sep:
            raise SystemExit(f"FUNCTION_UPSTREAMS: expected name=http://host:port, got {item!r}")
        host, port, _ = split_host_port(url, 8080)
        table[name.strip()] = (host, port)
    return table


class Pools:
    """One keep-alive pool per upstream host:port, as one Go http.Transport keeps them."""

    def __init__(self, max_idle: int, idle_timeout: float, dial_timeout: float) -> None:
        self.max_idle, self.idle_timeout, self.dial_timeout = max_idle, idle_timeout, dial_timeout
        self.pools: dict[tuple[str, int], UpstreamPool] = {}

    def get(self, host: str, port: int) -> UpstreamPool:
        pool = self.pools.get((host, port))
        if pool is None:
            pool = self.pools[(host, port)] = UpstreamPool(host, port, self.max_idle, self.idle_timeout,
                                                           self.dial_timeout)
        return pool


def forwarded_headers(request: Request) -> list[tuple[str, str]]:
    headers = list(request.headers)
    if request.header("Host") and not request.header("X-Forwarded-Host"):
        headers.append(("X-Forwarded-Host", request.header("Host")))
    if not request.header("X-Forwarded-For"):
        headers.append(("X-Forwarded-For", request.remote))
    return headers


class Gateway:
    def __init__(self, env: dict[str, str]) -> None:
        self.read_timeout = parse_duration(env.get("read_timeout"), 60.0)
        self.write_timeout = parse_duration(env.get("write_timeout"), 60.0)
        self.upstream_timeout = parse_duration(env.get("upstream_timeout"), 60.0)
        self.topology = env.get("OPENFAAS_GATEWAY_TOPOLOGY", "provider")
        if self.topology not in ("provider", "direct"):
            raise SystemExit(f"OPENFAAS_GATEWAY_TOPOLOGY must be provider or direct, got {self.topology!r}")
        self.provider = split_host_port(env.get("functions_provider_url", "http://127.0.0.1:8081/"))[:2]
        self.functions = function_upstreams(env.get("FUNCTION_UPSTREAMS", ""))
        max_idle = int(env.get("max_idle_conns_per_host") or 1024)
        # the gateway's client: keep-alive, 90 s idle, dial timeout = upstream_timeout (types/proxy_client.go)
        self.pools = Pools(max_idle, 90.0, self.upstream_timeout)
        self.server = Server(self.route, self.read_timeout, self.write_timeout)

    async def route(self, request: Request) -> Response:
        match = _FUNCTION_ROUTE.match(request.path)
        if match:
            return await self.function_call(request, match["name"], match["params"])
        if request.path == "/healthz":
            if request.method != "GET":
                return plain(405, "")
            if self.topology == "direct":
                return plain(200, "OK")
            return await self.forward(request, self.provider, "/healthz", call_headers=[])
        return plain(404, "404 page not found\n")

    async def function_call(self, request: Request, name: str, params: str | None) -> Response:
        """The call-id middleware, then the forwarding proxy."""
        start_ns = time.time_ns()
        call_id = request.header("X-Call-Id") or str(uuid.uuid4())
        call_headers = [("X-Call-Id", call_id), ("X-Start-Time", str(start_ns))]
        if self.topology == "provider":
            return await self.forward(request, self.provider, request.target, call_headers)
        target = "/" + (params or "") + (f"?{request.query}" if request.query else "")
        upstream = self.functions.get(name)
        if upstream is None:  # the Service name does not resolve: the client's dial fails
            log(f"error with upstream request to: {target}, lookup {name}: no such host")
            return Response(502, [*call_headers, ("X-Served-By", f"openfaas-ce/{GATEWAY_VERSION}")])
        return await self.forward(request, upstream, target, call_headers)

    async def forward(self, request: Request, upstream: tuple[str, int], target: str,
                      call_headers: list[tuple[str, str]]) -> Response:
        start = time.monotonic()
        headers = forwarded_headers(request)
        if call_headers and not request.header("X-Call-Id"):
            headers.append(call_headers[0])
        if call_headers:
            headers.append(call_headers[1])
        if not request.header("User-Agent"):
            headers.append(("User-Agent", f"openfaas-ce-gateway/{GATEWAY_VERSION}"))
        served = [*call_headers, ("X-Served-By", f"openfaas-ce/{GATEWAY_VERSION}")] if call_headers else []
        try:
            async with asyncio.timeout(self.upstream_timeout or None):
                resp = await self.pools.get(*upstream).request(request.method, target, headers, request.body)
        except (UpstreamError, TimeoutError) as exc:
            reason = str(exc) or f"context deadline exceeded ({self.upstream_timeout:g}s)"
            log(f"error with upstream request to: {target}, {reason}")
            log(f"Forwarded [{request.method}] to {request.target} - [502] - {time.monotonic() - start:.4f}s")
            return Response(502, served)
        log(f"Forwarded [{request.method}] to {request.target} - [{resp.status}] - {time.monotonic() - start:.4f}s")
        return Response(resp.status, [*resp.headers, *served], resp.body)


class Provider:
    """faas-netes's function proxy (faas-provider proxy/proxy.go)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.read_timeout = parse_duration(env.get("read_timeout"), 10.0)
        self.write_timeout = parse_duration(env.get("write_timeout"), 10.0)
        self.functions = function_upstreams(env.get("FUNCTION_UPSTREAMS", ""))
        # NewProxyClient: timeout = read_timeout for the whole call and the dial, 5 s idle connections
        self.pools = Pools(int(env.get("max_idle_conns_per_host") or 1024), 5.0, self.read_timeout)
        self.server = Server(self.route, self.read_timeout, self.write_timeout)

    async def route(self, request: Request) -> Response:
        if request.path == "/healthz":
            return Response(200)
        match = _FUNCTION_ROUTE.match(request.path)
        if not match:
            return plain(404, "404 page not found\n")
        if request.method not in ("POST", "PUT", "PATCH", "DELETE", "GET", "OPTIONS", "HEAD"):
            return Response(405)
        name, internal = match["name"], [("X-OpenFaaS-Internal", "proxy")]
        upstream = self.functions.get(name.split(".", 1)[0])
        if upstream is None:
            log(f"resolver error: no endpoints for {name}")
            return plain(503, f"No endpoints available for: {name}.\n", internal)
        target = "/" + (match["params"] or "") + (f"?{request.query}" if request.query else "")
        try:
            async with asyncio.timeout(self.read_timeout or None):
                resp = await self.pools.get(*upstream).request(request.method, target, forwarded_headers(request),
                                                               request.body)
        except (UpstreamError, TimeoutError) as exc:
            log(f"error with proxy request to: http://{upstream[0]}:{upstream[1]}{target}, {exc or 'timeout'}")
            return plain(500, f"Can't reach service for: {name}.\n", internal)
        headers = [(k, v) for k, v in resp.headers if k.lower() != "content-type"]
        content_type = resp.header("Content-Type") or request.header("Content-Type") or "text/plain"
        return Response(resp.status, [*headers, ("Content-Type", content_type)], resp.body)


async def serve(app: Gateway | Provider, host: str, port: int) -> None:
    await app.server.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await app.server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The OpenFaaS gateway hop: the gateway's forwarding proxy (502 on an upstream error or "
        "upstream_timeout) or faas-netes's function proxy (500 when the function cannot be reached). Settings are "
        "the upstream environment variables: read_timeout, write_timeout, upstream_timeout (gateway), "
        "functions_provider_url, max_idle_conns_per_host; plus FUNCTION_UPSTREAMS (name=http://host:port,...) and "
        "OPENFAAS_GATEWAY_TOPOLOGY (provider|direct).")
    parser.add_argument("--role", choices=("gateway", "provider"), default="gateway", help="which hop to run")
    parser.add_argument("--port", type=int, default=None, help="listen port (gateway 8080, provider 8081)")
    parser.add_argument("--bind", default=os.environ.get("GATEWAY_BIND_ADDRESS", "0.0.0.0"), help="listen address")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.role == "gateway":
        app: Gateway | Provider = Gateway(env)
        log(f"OpenFaaS CE gateway {GATEWAY_VERSION} (kubeless-dl-eval stand-in), topology: {app.topology}")
        log(f"Timeouts: read={app.read_timeout:g}s\twrite={app.write_timeout:g}s\tupstream={app.upstream_timeout:g}s")
    else:
        app = Provider(env)
        log(f"faas-netes {PROVIDER_VERSION} function proxy (kubeless-dl-eval stand-in), read_timeout "
            f"{app.read_timeout:g}s")
    port = args.port or (8080 if args.role == "gateway" else 8081)
    asyncio.run(serve(app, args.bind, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
