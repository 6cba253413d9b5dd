"""The user container's entry point for the func-python function: what Knative Functions' Python scaffolding
does (the `main.py` that `func build` generates around a function), written for this kit.

The function is the package `function` in the working directory (function/knative/predict/ here, /workspace in
the image), as `func create -l python` lays it out; its `new()` factory goes to func_python.http.serve, which
runs it as an ASGI application on hypercorn: one process, one asyncio event loop, listening on LISTEN_ADDRESS.
"""

from __future__ import annotations

import logging
import os
import sys

sys.path.insert(0, os.getcwd())

from func_python.http import serve

logging.basicConfig(level=logging.INFO)


def main() -> None:
    from function import new

    logging.info("Functions middleware invoking user function")
    serve(new)


if __name__ == "__main__":
    main()
