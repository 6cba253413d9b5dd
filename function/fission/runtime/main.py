"""A local Fission: the router hop on one port, the executor and its environment processes behind it.

One process runs the router (router.py) and the executor (poolmgr.py); the executor starts the environment
processes (environment/server.py) as children. Every flag has an environment variable, so the image is
configured with `docker run -e` alone; `python main.py --help` lists them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import signal
import sys
from pathlib import Path

from poolmgr import (
    Executor,
    Executor2018,
    ExecutorRequestsPerPod,
    GenericPool,
    PoolSettings,
    StaticExecutor,
    log_event,
)
from router import MODES, Router, RouterSettings

HERE = Path(__file__).resolve().parent
EXECUTORS = ("poolmgr-2018", "poolmgr", "static")
ROUTER_MODE_OF = {"poolmgr-2018": "2018", "poolmgr": "current", "static": "current"}
# Resident memory of one specialized environment process, MiB, measured on the 2-core dev machine (README):
# what sizes the default number of specialized processes that fit in the memory budget.
POD_MEMORY_MB = {"keras": 700, "litert": 150}
GENERIC_POD_MB = 40  # a generic (unspecialized) environment process: Python, Flask, bjoern
ROUTER_MB = 40  # this process


def go_duration(text: str) -> float:
    """A Go duration ("50ms", "1.5s", "2m") in seconds, as the router's ROUTER_* variables are written."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a Go duration such as 50ms or 1s")
    return sum(float(n) * units[u] for n, u in parts)


def boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "t", "yes"):
        return True
    if text.lower() in ("0", "false", "f", "no", ""):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true/false)")


def default_max_specialized(memory_limit_mb: int, pod_mb: int, poolsize: int) -> int:
    """How many specialized processes fit in the budget beside the router and a full generic pool (at least 1)."""
    return max(1, math.floor((memory_limit_mb - ROUTER_MB - poolsize * GENERIC_POD_MB) / pod_mb))


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        description="Fission's router, executor and python environment as local processes "
                    "(function/fission/README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--executor", choices=EXECUTORS, default=env("FISSION_EXECUTOR", "poolmgr-2018"),
                   help="FISSION_EXECUTOR. poolmgr-2018: one specialized process serves all traffic (0.11.0); "
                        "poolmgr: requestsPerPod, one more specialized process per concurrent request (current); "
                        "static: no pool, route to --function-address")
    p.add_argument("--router-mode", choices=MODES, default=env("FISSION_ROUTER_MODE"),
                   help="FISSION_ROUTER_MODE: the router's rules; default 2018 for poolmgr-2018, else current")
    p.add_argument("--bind", default=env("FISSION_BIND", "0.0.0.0"), help="FISSION_BIND: the router's address")
    p.add_argument("--port", type=int, default=int(env("FISSION_PORT", "8080")), help="FISSION_PORT")
    p.add_argument("--function-address", default=env("FISSION_FUNCTION_ADDRESS"),
                   help="FISSION_FUNCTION_ADDRESS: 127.0.0.1:PORT of a running environment (--executor static)")
    p.add_argument("--function-timeout", type=float, default=float(env("FISSION_FUNCTION_TIMEOUT", "60")),
                   help="FISSION_FUNCTION_TIMEOUT: the Function's functionTimeout, seconds (current router)")
    p.add_argument("--round-trip-timeout", type=go_duration, default=env("ROUTER_ROUND_TRIP_TIMEOUT", "50ms"),
                   help="ROUTER_ROUND_TRIP_TIMEOUT: first dial timeout and back-off")
    p.add_argument("--timeout-exponent", type=int, default=int(env("ROUTER_ROUNDTRIP_TIMEOUT_EXPONENT", "2")),
                   help="ROUTER_ROUNDTRIP_TIMEOUT_EXPONENT")
    p.add_argument("--max-retries", type=int, default=int(env("ROUTER_ROUND_TRIP_MAX_RETRIES", "10")),
                   help="ROUTER_ROUND_TRIP_MAX_RETRIES")
    p.add_argument("--disable-keep-alive", type=boolean, default=env("ROUTER_ROUND_TRIP_DISABLE_KEEP_ALIVE"),
                   help="ROUTER_ROUND_TRIP_DISABLE_KEEP_ALIVE; unset: the router mode's rule (2018 off, current on)")
    p.add_argument("--trigger-url", default=env("FISSION_TRIGGER_URL", "/"),
                   help="FISSION_TRIGGER_URL: the HTTPTrigger's relativeurl (also /fission-function/predict)")
    p.add_argument("--poolsize", type=int, default=int(env("FISSION_POOLSIZE", "3")),
                   help="FISSION_POOLSIZE: generic processes kept warm (the Environment's poolsize)")
    p.add_argument("--requests-per-pod", type=int, default=int(env("FISSION_REQUESTS_PER_POD", "1")),
                   help="FISSION_REQUESTS_PER_POD: the Function's requestsPerPod (poolmgr)")
    p.add_argument("--max-specialized", type=int, default=env("FISSION_MAX_SPECIALIZED"),
                   help="FISSION_MAX_SPECIALIZED: the Function's concurrency, i.e. how many specialized processes "
                        "may exist (poolmgr); default: what fits in --memory-limit-mb (see the README)")
    p.add_argument("--memory-limit-mb", type=int, default=int(env("FISSION_MEMORY_LIMIT_MB", "2048")),
                   help="FISSION_MEMORY_LIMIT_MB: the container's memory budget, all processes together")
    p.add_argument("--pod-memory-mb", type=int, default=env("FISSION_POD_MEMORY_MB"),
                   help="FISSION_POD_MEMORY_MB: one specialized process's memory; default by MODEL_BACKEND "
                        f"{POD_MEMORY_MB}")
    p.add_argument("--package-dir", type=Path, default=Path(env("FISSION_PACKAGE_DIR", str(HERE.parent / "package"))),
                   help="FISSION_PACKAGE_DIR: the function's package (handler.py)")
    p.add_argument("--model-dir", type=Path, default=env("MODEL_DIR"),
                   help="MODEL_DIR: the model folder, fetched with the package into each specialized process")
    p.add_argument("--function-name", default=env("FISSION_FUNCTION_NAME", "handler.main"),
                   help="FISSION_FUNCTION_NAME: the Function's entrypoint, module.function")
    p.add_argument("--specialize-api", choices=("v2", "v1"), default=env("FISSION_SPECIALIZE_API", "v2"),
                   help="FISSION_SPECIALIZE_API: POST /v2/specialize {filepath, functionName}, or v1 /specialize")
    p.add_argument("--work-dir", type=Path, default=Path(env("FISSION_WORK_DIR", "/tmp/fission")),  # noqa: S108 - the container's own /tmp
                   help="FISSION_WORK_DIR: where each process gets its /userfunc")
    p.add_argument("--idle-timeout", type=float, default=float(env("FISSION_IDLE_TIMEOUT_S", "120")),
                   help="FISSION_IDLE_TIMEOUT_S: specialized processes idle this long are deleted; 0: never")
    p.add_argument("--stop-grace", type=float, default=float(env("FISSION_STOP_GRACE_S", "1")),
                   help="FISSION_STOP_GRACE_S: SIGTERM to SIGKILL, per environment process, at shutdown")
    p.add_argument("--access-log", type=boolean, default=boolean(env("FISSION_ACCESS_LOG", "true")),
                   help="FISSION_ACCESS_LOG: one JSON line per request")
    return p


def build(args: argparse.Namespace) -> tuple[Router, Executor, GenericPool | None]:
    backend = os.environ.get("MODEL_BACKEND", "keras")
    pod_mb = int(args.pod_memory_mb or POD_MEMORY_MB.get(backend, POD_MEMORY_MB["keras"]))
    max_specialized = int(args.max_specialized or default_max_specialized(args.memory_limit_mb, pod_mb, args.poolsize))
    mode = args.router_mode or ROUTER_MODE_OF[args.executor]
    pool = None
    if args.executor == "static":
        if not args.function_address:
            raise SystemExit("--executor static needs --function-address 127.0.0.1:PORT (FISSION_FUNCTION_ADDRESS)")
        executor: Executor = StaticExecutor(args.function_address)
    else:
        handler = args.package_dir / f"{args.function_name.rsplit('.', 1)[0]}.py"
        if not handler.is_file():
            raise SystemExit(f"the package {args.package_dir} has no {handler.name} for entrypoint "
                             f"{args.function_name!r}; set FISSION_PACKAGE_DIR or FISSION_FUNCTION_NAME")
        pool = GenericPool(PoolSettings(
            env_server=HERE.parent / "environment" / "server.py", work_dir=args.work_dir,
            package_dir=args.package_dir, model_dir=args.model_dir, function_name=args.function_name,
            poolsize=args.poolsize, specialize_api=args.specialize_api, idle_timeout_s=args.idle_timeout,
            stop_grace_s=args.stop_grace))
        if args.executor == "poolmgr-2018":
            executor = Executor2018(pool)
        else:
            executor = ExecutorRequestsPerPod(pool, args.requests_per_pod, max_specialized)
    router = Router(RouterSettings(
        mode=mode, round_trip_timeout_s=args.round_trip_timeout, timeout_exponent=args.timeout_exponent,
        max_retries=args.max_retries, disable_keep_alive=args.disable_keep_alive,
        function_timeout_s=args.function_timeout, trigger_url=args.trigger_url, access_log=args.access_log),
        executor)
    log_event("start", executor=args.executor, router_mode=mode, keep_alive=router.s.keep_alive,
              port=args.port, poolsize=args.poolsize if pool else 0, requests_per_pod=args.requests_per_pod,
              max_specialized=max_specialized if args.executor == "poolmgr" else 1,
              pod_memory_mb=pod_mb, memory_limit_mb=args.memory_limit_mb, backend=backend,
              function_timeout_s=args.function_timeout if mode == "current" else None)
    return router, executor, pool


async def serve(args: argparse.Namespace) -> None:
    router, executor, pool = build(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if pool is not None:
        await pool.start()
    await router.start(args.bind, args.port)
    reaper = asyncio.create_task(executor.reap_idle(args.idle_timeout)) if pool is not None else None
    await stop.wait()
    log_event("stop")
    if reaper is not None:
        reaper.cancel()
    await router.close()
    if pool is not None:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if isinstance(args.round_trip_timeout, str):
        args.round_trip_timeout = go_duration(args.round_trip_timeout)
    if isinstance(args.disable_keep_alive, str):
        args.disable_keep_alive = boolean(args.disable_keep_alive)
    asyncio.run(serve(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
