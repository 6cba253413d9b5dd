#!/usr/bin/env python
"""The Fission python environment server: Flask on bjoern, one process = one pod's env container.

Follows fission/environments `python/server.py` at 45815b4 (2026; Flask 3.1.3 + bjoern 3.2.2 as that folder's
requirements.txt pins them), whose serving model has not changed since the switch to bjoern in 1d0d236 (2018-05):
a generic process that a pool manager later *specializes* with one function, then serves it from its one
single-threaded bjoern loop, one request at a time. What is kept and what is not: function/fission/README.md.

Settings (environment): RUNTIME_PORT (8888), USERFUNCVOL (/userfunc), both upstream names; RUNTIME_BIND
(0.0.0.0, as upstream hard-codes) is ours, so that several env processes of one container can listen on
127.0.0.1 side by side.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import signal
import sys

import bjoern
from flask import Flask, abort, request

USERFUNCVOL = os.environ.get("USERFUNCVOL", "/userfunc")
RUNTIME_PORT = int(os.environ.get("RUNTIME_PORT", "8888"))
RUNTIME_BIND = os.environ.get("RUNTIME_BIND", "0.0.0.0")
STATE_FILE = "state.json"
METHODS = ["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"]


def import_src(path: str):
    """Load a source file as module `mod` (upstream used SourceFileLoader.load_module, deprecated since 3.10)."""
    loader = importlib.machinery.SourceFileLoader("mod", path)  # any file name, e.g. /userfunc/user
    spec = importlib.util.spec_from_loader("mod", loader)
    if spec is None:
        raise ImportError(f"cannot load {path} as a python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mod"] = module
    loader.exec_module(module)
    return module


def _state_path() -> str:
    return os.path.join(USERFUNCVOL, STATE_FILE)


class FuncApp(Flask):
    """A generic env until /specialize or /v2/specialize gives it a function (`userfunc`)."""

    def __init__(self, name: str, loglevel: int = logging.DEBUG) -> None:
        super().__init__(name)
        self.userfunc = None
        root = logging.getLogger()
        root.setLevel(loglevel)
        handler = logging.StreamHandler(sys.stdout)
        handler.setLevel(loglevel)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
        self.logger.addHandler(handler)
        # Since b0cade9 (2022) the specialization survives a container restart (an OOM kill): the v2 request
        # is kept in USERFUNCVOL/state.json and replayed here, at start.
        if os.path.exists(_state_path()):
            with open(_state_path()) as state:
                info = json.load(state)
            self.logger.info("Found state.json")
            self.userfunc = self._load_v2(info)
            self.logger.info("Loaded user function %s", info)

    # ------------------------------------------------------------------------------------ routes
    def load(self):
        """v1: the package is one file, USERFUNCVOL/user, whose `main` is the function."""
        self.logger.info("/specialize called")
        self.userfunc = import_src(os.path.join(USERFUNCVOL, "user")).main
        return ""

    def loadv2(self):
        """v2: {filepath, functionName}; importing the module runs its module-level code (the model load)."""
        info = request.get_json()
        if os.path.exists(_state_path()):
            self.logger.warning("Found state.json, overwriting")
        self.userfunc = self._load_v2(info)
        with open(_state_path(), "w") as state:
            json.dump(info, state)
        return ""

    def healthz(self):
        return "", 200

    def userfunc_call(self, *args, **kwargs):
        # The path of the catch-all route arrives as a keyword and is dropped: the function takes no
        # arguments and reads flask.request.
        if self.userfunc is None:
            self.logger.error("userfunc is None")
            return abort(500)
        return self.userfunc(*args)

    # ---------------------------------------------------------------------------------- loading
    def _load_v2(self, info: dict):
        filepath = info["filepath"]
        handler = info["functionName"]
        self.logger.info('specialize called with filepath = "%s" handler = "%s"', filepath, handler)
        parts = handler.rsplit(".", 1)
        if not handler:
            module_name, func_name = "main", "main"
        elif len(parts) == 1:
            module_name, func_name = "main", parts[0]
        else:
            module_name, func_name = parts
        if os.path.isdir(filepath):
            # a package directory: appended (not prepended) to the module search path, then imported by name
            sys.path.append(filepath)
            module = importlib.import_module(module_name)
        else:
            module = import_src(filepath)
        return getattr(module, func_name)

    def on_signal(self, signum: int, _frame) -> None:
        """Forget the specialization, then die of the signal.

        Upstream raises SystemExit from here; under bjoern a Python handler only runs when the C loop next
        calls into Python, and raising through it crashes the process, so this re-delivers the signal with
        its default action instead (the process ends at once, as upstream intends)."""
        self.logger.info("Received signal %s", signal.strsignal(signum))
        if os.path.exists(_state_path()):
            os.remove(_state_path())
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def main() -> None:
    app = FuncApp(__name__, logging.DEBUG)
    signal.signal(signal.SIGINT, app.on_signal)
    signal.signal(signal.SIGTERM, app.on_signal)
    app.add_url_rule("/specialize", "load", app.load, methods=["POST"])
    app.add_url_rule("/v2/specialize", "loadv2", app.loadv2, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", app.healthz, methods=["GET"])
    app.add_url_rule("/", "userfunc_call", app.userfunc_call, methods=METHODS)
    app.add_url_rule("/<path:path>", "userfunc_call", app.userfunc_call, methods=METHODS)
    app.logger.info("Starting bjoern based server")
    bjoern.run(app, RUNTIME_BIND, RUNTIME_PORT, reuse_port=True)


if __name__ == "__main__":
    main()
