"""Production gunicorn configuration of the model server:

    gunicorn --config python:image.gunicorn_conf image.server:application

Sync workers, one per CPU the container may use: inference is CPU-bound, so more concurrency per worker
only queues inside Python, while idle workers take the next connection from the kernel's accept queue —
the fairest balancer there is. The master never imports TensorFlow and never loads the model
(`preload_app` stays off): TensorFlow does not survive fork once its thread pools run, so each worker loads
its own copy after fork. Settings come from environment variables (see image/settings.py);
GUNICORN_CMD_ARGS still overrides anything here.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from image import settings

_runtime = settings.runtime_dir()
_runtime_is_ours = not os.environ.get("IMAGE_RUNTIME_DIR")  # the default, per-master folder: removed at exit
# Set before any worker imports prometheus_client: workers inherit it and write their metric files there.
os.environ["IMAGE_RUNTIME_DIR"] = str(_runtime)
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_runtime / "metrics"))

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{settings.env_int('PORT', 8080)}"
workers = settings.workers()
worker_class = "sync"
backlog = settings.env_int("BACKLOG", 2048, minimum=128)
timeout = settings.env_int("REQUEST_TIMEOUT_S", 30)
graceful_timeout = settings.env_int("GRACEFUL_TIMEOUT_S", 8)
keepalive = 2
preload_app = False
# The heartbeat file lives in memory: on an overlay filesystem its writes can stall a worker (gunicorn's
# own advice for containers). The file is gunicorn's, private (mkstemp), and holds nothing.
_SHM = "/dev/shm"  # noqa: S108 - see above
worker_tmp_dir = _SHM if os.access(_SHM, os.W_OK) else None
proc_name = "kde-image"
accesslog = None  # stdout carries the one-JSON-line-per-prediction log; access lines would mix in
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
control_socket_disable = True  # no runtime management socket: nothing in a container uses it


def on_starting(server) -> None:
    """Start from empty metric and readiness folders (stale files of an earlier run would be summed in), and check
    the model files once, here, before any worker forks: a missing file is then reported by every worker alike."""
    for folder in (Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]), _runtime / "ready"):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    from model.inference import DEFAULT_BACKEND, ModelNotFound, check_model_files  # no TensorFlow import

    settings.model_failure_file().unlink(missing_ok=True)
    model_dir = Path(os.environ.get("MODEL_DIR", "/model"))
    try:
        check_model_files(model_dir, os.environ.get("MODEL_BACKEND", DEFAULT_BACKEND))
    except (ModelNotFound, ValueError) as exc:
        settings.record_model_failure(f"{type(exc).__name__}: {exc}")
        server.log.error("the model cannot load, every worker will report it: %s", exc)
    server.log.info(
        "model server: %d sync workers, backlog %d, timeout %d s, graceful timeout %d s, runtime dir %s",
        server.cfg.workers,
        server.cfg.backlog,
        server.cfg.timeout,
        server.cfg.graceful_timeout,
        _runtime,
    )


def post_fork(server, worker) -> None:
    # The worker count the master really runs (a command-line --workers included): /readyz waits for all.
    os.environ["IMAGE_EXPECTED_WORKERS"] = str(server.num_workers)


def post_worker_init(worker) -> None:
    from image import server as app

    app.start_loading()


def worker_exit(server, worker) -> None:
    """A worker that stopped normally (SIGTERM, max requests) skips Python's interpreter teardown.

    Tearing down TensorFlow takes seconds (measured 4-5 s per worker on 2 busy cores), which makes `docker stop`
    and pod deletion slow for nothing: every request is answered, the metric files are shared memory maps already
    written, and the master cleans up after the worker in child_exit. Boot failures and crashes exit as usual, so
    their exit codes still reach the master.
    """
    if worker.booted and not worker.alive:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def child_exit(server, worker) -> None:
    """A worker died (shutdown, crash, timeout kill): drop its live gauges and its readiness marker."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    (_runtime / "ready" / str(worker.pid)).unlink(missing_ok=True)


def on_exit(server) -> None:
    if _runtime_is_ours:
        shutil.rmtree(_runtime, ignore_errors=True)
