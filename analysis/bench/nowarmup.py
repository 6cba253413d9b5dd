"""The function with WARMUP_CALLS=0 (issue 11): what a naively written TensorFlow 2 function costs.

Under TensorFlow 1.x (2018) the graph and session built at import were inherited by every forked child; the
handler's default warm-up in the parent reproduces that. This step starts a temporary copy of the function
container (same image, environment, CPU and memory caps) with WARMUP_CALLS=0 on a free port on 127.0.0.1, waits
for the platform's readiness path (the path of its ready_url; /healthz without one), runs one ab run at c=1 on the
path of its url (experiment `nowarmup`, run_key nowarmup-function-c1-r1) bounded by
nowarmup_timeout_s, and removes the copy. A child that hangs or is slow is a result, recorded like any other run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from urllib.parse import urlsplit

from analysis.bench.client import DockerError, docker_inspect, request
from analysis.bench.manifest import RunFolder
from analysis.bench.runner import StepError, StepResult, run_one

STARTUP_FILE = "nowarmup.json"


def _docker(argv: list[str], docker_host: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "DOCKER_HOST": docker_host})


def nowarmup(folder: RunFolder, platform_name: str, requests: int | None = None) -> StepResult:
    platform = folder.config.platforms.get(platform_name)
    if platform is None or not platform.container:
        raise StepError(f"the nowarmup step needs platform {platform_name!r} with a container")
    knobs = folder.config.knobs
    requests = requests or knobs["nowarmup_requests"]
    if folder.is_done(f"nowarmup-{platform_name}-c1-r1"):
        return run_one(folder, "nowarmup", platform_name, 1, 1, requests)  # prints "already done"
    host = folder.config.docker_host
    try:
        info = docker_inspect(host, platform.container)
    except DockerError as exc:
        raise StepError(f"cannot inspect {platform.container}: {exc}") from None
    name = f"{platform.container}-nowarmup"
    # the copy serves what the original serves: the container port it publishes, its predict and readiness paths
    container_port = next(iter(info["HostConfig"].get("PortBindings") or {}), "8080/tcp")
    predict_path = _path(platform.url)
    ready_path = _path(platform.ready_url) if platform.ready_url else "/healthz"
    argv = _copy_argv(info, name, container_port)
    _docker(["rm", "-f", name], host)
    started = time.perf_counter()
    proc = _docker(argv, host)
    if proc.returncode != 0:
        raise StepError(f"docker run of the WARMUP_CALLS=0 copy failed: {proc.stderr.strip()[-300:]}")
    try:
        port = _docker(["port", name, container_port], host).stdout.split(":")[-1].strip()
        base = f"http://127.0.0.1:{port}"
        deadline = started + knobs["nowarmup_timeout_s"]
        ready_s = None
        while time.perf_counter() < deadline:
            if request("GET", f"{base}{ready_path}", timeout=5).status == 200:
                ready_s = time.perf_counter() - started
                break
            time.sleep(0.5)
        variant = dataclasses.replace(platform, url=f"{base}{predict_path}", container=name,
                                      metrics_url=f"{base}/metrics" if platform.metrics_url else None,
                                      restart="none", ingress_dir=None)
        remaining = max(10.0, deadline - time.perf_counter())
        result = run_one(folder, "nowarmup", platform_name, 1, 1, requests, platform=variant,
                         run_timeout_s=remaining)
        out = folder.run_dir(result.run_key)
        (out / STARTUP_FILE).write_text(json.dumps({
            "container": name, "image": info["Config"]["Image"], "env_changed": {"WARMUP_CALLS": "0"},
            "start_to_healthz_s": ready_s, "ready_path": ready_path, "predict_path": predict_path,
            "timeout_s": knobs["nowarmup_timeout_s"]}, indent=1) + "\n")
        return result
    finally:
        _docker(["rm", "-f", name], host)


def _path(url: str) -> str:
    """The path and query of a URL ("/" when it has none)."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

def _copy_argv(info: dict, name: str, container_port: str) -> list[str]:
    """`docker run` arguments for a copy of the inspected container with WARMUP_CALLS=0, its caps, mounts and
    entry point, publishing its container port on a free port of 127.0.0.1."""
    env = [e for e in info["Config"].get("Env") or [] if not e.startswith("WARMUP_CALLS=")] + ["WARMUP_CALLS=0"]
    hc = info["HostConfig"]
    argv = ["run", "-d", "--name", name, "--init", "-p", f"127.0.0.1::{container_port.partition('/')[0]}",
            "--label", "kubeless-dl-eval=serving-variant"]
    if hc.get("NanoCpus"):
        argv += ["--cpus", str(hc["NanoCpus"] / 1e9)]
    if hc.get("Memory"):
        argv += ["--memory", str(hc["Memory"]), "--memory-swap", str(hc.get("MemorySwap") or hc["Memory"])]
    for e in env:
        argv += ["-e", e]
    for bind in hc.get("Binds") or []:
        argv += ["-v", bind]
    entrypoint = info["Config"].get("Entrypoint") or []
    if entrypoint:
        argv += ["--entrypoint", entrypoint[0]]
    argv += [info["Config"]["Image"], *entrypoint[1:], *(info["Config"].get("Cmd") or [])]
    return argv
