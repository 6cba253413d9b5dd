"""The action loop's child: imports the action's `main` once, then answers one JSON line per activation.

Follows apache/openwhisk-runtime-python core/python3Action/lib/launcher.py (at 9a873ec, the action-python-v3.11
image): compile.py copies this file next to the action as exec__.py, with the import below rewritten to the
action's entry point. The proxy (proxy.py) reads the acknowledgement and every result on file descriptor 3; the
action's own prints go to stdout and stderr, which the proxy shares, so they land in the container's log.

- Module-level code of the action (the model load) runs here, once, inside the proxy's /init.
- Each stdin line is the body of a /run: `value` becomes main's argument, every other key an `__OW_<KEY>`
  environment variable (activation id, namespace, deadline, ...).
- An exception in main is answered as {"error": "<message>"} (an application error), its traceback on stderr.
"""

import json
import os
import sys
import traceback

# A virtualenv shipped inside the action's zip is activated before the import, as upstream does.
_VENV = os.path.abspath("./virtualenv")
if os.path.isdir(_VENV):
    _activate = os.path.join(_VENV, "bin", "activate_this.py")
    if not os.path.exists(_activate):
        sys.stderr.write("Invalid virtualenv. Zip file does not include 'activate_this.py'.\n")
        sys.exit(1)
    with open(_activate) as _fh:
        exec(compile(_fh.read(), _activate, "exec"), {"__file__": _activate})  # noqa: S102 - upstream's activation

# compile.py rewrites the next line to the action's entry point, so it keeps upstream's exact spelling
from main__ import main as main  # noqa: E402, PLC0414

out = os.fdopen(3, "wb")
if os.environ.get("__OW_WAIT_FOR_ACK", ""):
    out.write(json.dumps({"ok": True}).encode() + b"\n")
    out.flush()

while True:
    line = sys.stdin.readline()
    if not line:
        break
    args = json.loads(line)
    payload = {}
    for key, value in args.items():
        if key == "value":
            payload = value
        else:
            os.environ[f"__OW_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    try:
        result = main(payload)
    except Exception as exc:  # the action's failure is its answer, as upstream's launcher makes it
        traceback.print_exc(file=sys.stderr)
        result = {"error": str(exc)}
    out.write(json.dumps(result, ensure_ascii=False).encode("utf-8") + b"\n")
    sys.stdout.flush()
    sys.stderr.flush()
    out.flush()
