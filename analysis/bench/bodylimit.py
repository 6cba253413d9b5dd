"""One POST over the ingress's body-size limit through each function path, and which layer answered (issue 11).

ingress-nginx 0.16.2 caps bodies at proxy-body-size 1m: nginx answers 413 itself, before the function sees the
request. The step POSTs `bodylimit_bytes` (default 1,100,000: over 1 MiB, under the function's own 10 MiB) of a
JPEG (the payload, padded after its end-of-image marker) and records the status and the layer the evidence names:
nginx's access line with no upstream status, or the runtime's access line (analysis/bench/layers.py).
"""

from __future__ import annotations

import time

from analysis.bench import layers
from analysis.bench.logs import log_source
from analysis.bench.manifest import RunFolder, write_json
from analysis.bench.runner import StepError, StepResult, _finish, _position, _prepare


def bodylimit(folder: RunFolder, platform_name: str) -> StepResult:
    platform = folder.config.platforms.get(platform_name)
    if platform is None:
        raise StepError(f"platform {platform_name!r} is not in this run's configuration")
    knobs = folder.config.knobs
    run_key = f"bodylimit-{platform_name}"
    position = _position(folder, run_key)
    out = _prepare(folder, run_key)
    if out is None:
        return StepResult(run_key, True, f"{position} {run_key}: already done")
    payload = folder.payload_path.read_bytes()
    size = knobs["bodylimit_bytes"]
    body = payload + b"\0" * max(0, size - len(payload))
    logs = log_source(platform, folder.config.docker_host)
    ingress = layers.IngressLogs(platform.ingress_dir) if platform.ingress_dir else None
    mark, ingress_mark = logs.mark(), ingress.mark() if ingress else None
    started = time.time()
    from analysis.bench.client import request
    resp = request("POST", platform.url, body, "image/jpeg", timeout=knobs["request_timeout_s"])
    time.sleep(knobs["log_settle_s"])
    logs_info = logs.collect(mark, out)
    if ingress is not None and ingress_mark is not None:
        logs_info["ingress"] = ingress.collect(ingress_mark, out)
    layer, evidence = layers.who_answered(resp.status, resp.body, None, out)
    record = {"platform": platform_name, "bytes": len(body), "status": resp.status,
              "response_ms": round(resp.elapsed_ms, 3), "body_head": resp.body[:300].decode("utf-8", "replace"),
              "error": resp.error, "answered_by": layer, "evidence": evidence}
    write_json(out / layers.BODYLIMIT_FILE, record)
    _finish(folder, out, {"run_key": run_key, "step": "bodylimit", "platform": platform_name,
                          "started_epoch": started, "outcome": "ok",
                          "error": resp.error, "logs": logs_info})
    return StepResult(run_key, False, f"{position} {run_key}: {len(body)} bytes -> "
                                      f"{resp.status or resp.error}, answered by {layer} ({evidence})")
