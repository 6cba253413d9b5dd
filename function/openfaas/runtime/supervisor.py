"""The image's entry point (PID 1): the gateway, faas-netes's proxy and the function's watchdog in one container.

On a cluster these are three containers in two pods; here they share the function's 2 CPU / 2 GB caps, as the
local ingress shares the Kubeless function's. OPENFAAS_MODE picks the function: `http` (of-watchdog + the
python3-http template, one warm process) or `classic` (the classic watchdog + the python3 template, a process per
request). OPENFAAS_GATEWAY_TOPOLOGY picks the hops: `provider` (gateway -> faas-netes proxy -> watchdog, as
OpenFaaS CE routes calls today; the default), `direct` (gateway -> watchdog, `direct_functions=true`), or `none`
(the watchdog alone on 8080: the function's container on a real cluster, k8s/). Each program gets its settings
under the upstream names; the gateway's and faas-netes's, whose names clash with the watchdog's, are read here from
`gateway_*` and `faasnetes_*` (the chart's gateway.readTimeout ... values).

As PID 1 it forwards SIGTERM and SIGINT to every child, kills what is left after STOP_GRACE_S, reaps orphans, and
exits when a child dies on its own (as a pod's container would restart), with that child's status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RUNTIME = Path(__file__).resolve().parent
APP_ROOT = Path(os.environ.get("OPENFAAS_APP_ROOT", "/home/app"))
WATCHDOG_PORT = os.environ.get("WATCHDOG_PORT", "8000")
PROVIDER_PORT = os.environ.get("PROVIDER_PORT", "8081")
GATEWAY_PORT = os.environ.get("GATEWAY_PORT", "8080")
FUNCTION_NAME = os.environ.get("OPENFAAS_FUNCTION_NAME", "predict")
STOP_GRACE_S = float(os.environ.get("STOP_GRACE_S", "8"))


def _with(env: dict[str, str], **values: str | None) -> dict[str, str]:
    out = dict(env)
    out.update({k: v for k, v in values.items() if v is not None})
    return out


def commands(env: dict[str, str]) -> list[tuple[str, list[str], dict[str, str], Path | None]]:
    """(name, argv, environment, working directory) of each program, in start order."""
    mode = env.get("OPENFAAS_MODE", "http")
    if mode not in ("http", "classic"):
        raise SystemExit(f"OPENFAAS_MODE must be http or classic, got {mode!r}")
    python = sys.executable
    if mode == "http":
        watchdog_env = _with(env, mode="http", fprocess=env.get("fprocess", "python3 index.py"), port=WATCHDOG_PORT,
                             upstream_url=env.get("upstream_url", "http://127.0.0.1:5000"))
    else:
        # combine_output=false keeps stderr (TensorFlow's messages, the log line) out of the reply;
        # content_type makes the reply JSON instead of echoing the request's image/jpeg.
        watchdog_env = _with(env, mode="classic", fprocess=env.get("fprocess", "python3 index.py"),
                             port=WATCHDOG_PORT, combine_output=env.get("combine_output", "false"),
                             content_type=env.get("content_type", "application/json"))
    function = f"{FUNCTION_NAME}=http://127.0.0.1:{WATCHDOG_PORT}"
    provider_env = _with(env, read_timeout=env.get("faasnetes_read_timeout", "65s"),
                         write_timeout=env.get("faasnetes_write_timeout", "65s"), FUNCTION_UPSTREAMS=function)
    gateway_env = _with(env, read_timeout=env.get("gateway_read_timeout", "65s"),
                        write_timeout=env.get("gateway_write_timeout", "65s"),
                        upstream_timeout=env.get("gateway_upstream_timeout", "60s"),
                        functions_provider_url=f"http://127.0.0.1:{PROVIDER_PORT}/", FUNCTION_UPSTREAMS=function)
    topology = env.get("OPENFAAS_GATEWAY_TOPOLOGY", "provider")
    if topology == "none":  # on a cluster: the real gateway is elsewhere, the watchdog is the container's server
        watchdog_env["port"] = GATEWAY_PORT
        return [("watchdog", [python, str(RUNTIME / "watchdog.py")], watchdog_env, APP_ROOT / mode)]
    programs = [("watchdog", [python, str(RUNTIME / "watchdog.py")], watchdog_env, APP_ROOT / mode)]
    if topology == "provider":
        programs.append(("faas-netes", [python, str(RUNTIME / "gateway.py"), "--role", "provider", "--port",
                                        PROVIDER_PORT], provider_env, None))
    programs.append(("gateway", [python, str(RUNTIME / "gateway.py"), "--role", "gateway", "--port", GATEWAY_PORT],
                     gateway_env, None))
    return programs


def main() -> int:
    children: dict[int, str] = {}
    stopping = False

    def stop(signum: int, _frame) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            for pid in children:
                os.kill(pid, signal.SIGTERM)
            signal.alarm(max(1, round(STOP_GRACE_S)))

    def kill_all(_signum: int, _frame) -> None:
        for pid in children:
            os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, kill_all)
    for name, argv, env, cwd in commands(dict(os.environ)):
        children[subprocess.Popen(argv, env=env, cwd=cwd).pid] = name
    status = 0
    while children:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            break
        name = children.pop(pid, None)
        if name is None:
            continue  # an orphan re-parented to PID 1: reaped, nothing else to do
        code = os.waitstatus_to_exitcode(raw)
        if not stopping:
            sys.stderr.write(time.strftime("%Y/%m/%d %H:%M:%S ") + f"supervisor: {name} exited ({code}); "
                             "stopping the others\n")
            status = code if code > 0 else 1
            stop(signal.SIGTERM, None)
    return status


if __name__ == "__main__":
    sys.exit(main())
