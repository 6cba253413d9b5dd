"""Apache OpenWhisk as one local container (function/openwhisk/): a front process with the controller's and the
invoker's rules, and the pool of action containers it starts, each a port of the Go action-loop proxy driving the
python runtime's launcher, so the model loads once per container, at its /init (the cold start).

No per-request server-time histogram: the front prints one JSON line per request (`"event": "request"`, with the
status and the `origin` layer that made it: controller, invoker, proxy or action) and one per activation
(`"event": "activation"`: cold or warm, wait, init and run times). Its warm-up is the action's WARMUP_CALLS, run at
import inside /init.
"""

import json
from collections import Counter

from analysis.bench.platforms import Kind, register


def error_origins(log: str) -> Counter[str]:
    """Failed POST replies by who made them, from the front's line for each request: `action` (the action's own
    4xx, reported as `function`), `controller` (429 namespace limits, 413 payload, 404), `invoker` (time limit, a
    container that failed to start or lost its connection) or `proxy` (the action proxy's own error answer)."""
    out: Counter[str] = Counter()
    for line in log.splitlines():
        if '"event": "request"' not in line:
            continue
        try:
            record = json.loads(line[line.index("{"):])
        except ValueError:
            continue
        if record.get("method") == "POST" and not 200 <= int(record.get("status", 0)) < 300:
            origin = str(record.get("origin", "controller"))
            out["function" if origin == "action" else origin] += 1
    return out


OPENWHISK = register(Kind(
    name="openwhisk",
    role="function",
    label="OpenWhisk python action (action-loop proxy), one activation per container",
    body_limit_check=True,
    warmup_env="WARMUP_CALLS",
    upstream="apache/openwhisk@1fae641 (controller, invoker rules) + openwhisk-runtime-python@9a873ec "
             "(action-python-v3.11, launcher.py) + openwhisk-runtime-go 1.23@1.25.0 (action-loop proxy)",
    error_origins=error_origins,
))
