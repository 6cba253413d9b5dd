"""Environment knobs of the model server, read in one place by the gunicorn config and the WSGI app.

Every knob is an environment variable so the same image runs under `docker run -e`, a Kubernetes
Deployment's `env:` and a test's subprocess without a config file. MODEL_DIR, MODEL_BACKEND and
MAX_PIXELS belong to the inference core (`model.inference.predictor_from_env`) and are read there.

The gunicorn master imports this module, so it imports nothing heavy (not even numpy): the master should stay a
small process that only forks and watches workers.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

# name: (default, meaning) — the table image/README.md shows.
KNOBS: dict[str, tuple[str, str]] = {
    "PORT": ("8080", "TCP port the server listens on"),
    "HOST": ("0.0.0.0", "address the server binds"),
    "WORKERS": ("the CPUs the container may use", "gunicorn workers, each with its own model (or WEB_CONCURRENCY)"),
    "TF_INTRA_OP_THREADS": ("max(1, CPUs // WORKERS)", "TensorFlow intra-op threads per worker (keras backend)"),
    "BACKLOG": ("2048", "listen backlog (the kernel caps it at net.core.somaxconn)"),
    "MAX_BODY_BYTES": ("10485760 (the core's DEFAULT_MAX_BODY_BYTES)", "largest image accepted; bigger bodies get 413"),
    "REQUEST_TIMEOUT_S": ("30", "a worker busy this long on one request is killed and replaced"),
    "GRACEFUL_TIMEOUT_S": ("8", "on SIGTERM, in-flight requests get this long to finish"),
    "WARMUP_CALLS": ("3", "predictions run on a synthetic JPEG before a worker reports ready"),
    "LOG_LEVEL": ("info", "gunicorn's log level (logs go to stderr; stdout carries prediction lines)"),
    "IMAGE_RUNTIME_DIR": ("$TMPDIR/kde-image-<master pid>", "scratch folder for metrics and readiness files"),
}


class SettingError(ValueError):
    """An environment variable holds a value the server cannot use."""


def env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not an integer; unset it to use {default}") from None
    if value < minimum:
        raise SettingError(f"{name}={value} is below the minimum {minimum}; unset it to use {default}")
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a number; unset it to use {default}") from None
    if value < minimum:
        raise SettingError(f"{name}={value} is below the minimum {minimum}; unset it to use {default}")
    return value


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup CPU quota (docker --cpus, a Kubernetes CPU limit), or None if unlimited."""
    v2 = root / "cpu.max"
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        for v1 in (root / "cpu", root / "cpu,cpuacct"):
            quota_file = v1 / "cpu.cfs_quota_us"
            if quota_file.is_file():
                quota_us = int(quota_file.read_text())
                period_us = int((v1 / "cpu.cfs_period_us").read_text())
                return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def cpu_limit() -> int:
    """The number of CPUs this process may use: CPU affinity, capped by the cgroup quota, rounded up."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota - 1e-9)))
    return max(1, cpus)


def workers() -> int:
    """WORKERS, else gunicorn's own WEB_CONCURRENCY, else one worker per CPU the container may use."""
    return env_int("WORKERS", env_int("WEB_CONCURRENCY", cpu_limit()))


def tf_intra_op_threads(worker_count: int) -> int:
    return env_int("TF_INTRA_OP_THREADS", max(1, cpu_limit() // max(1, worker_count)))


def max_body_bytes() -> int:
    from model.inference import DEFAULT_MAX_BODY_BYTES

    return env_int("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)


def warmup_calls() -> int:
    return env_int("WARMUP_CALLS", 3, minimum=1)


def runtime_dir() -> Path:
    """Scratch folder shared by the master and its workers (Prometheus files, readiness markers)."""
    raw = os.environ.get("IMAGE_RUNTIME_DIR", "").strip()
    return Path(raw) if raw else Path(tempfile.gettempdir()) / f"kde-image-{os.getpid()}"


def model_failure_file() -> Path:
    """Where the first process of a server that finds the model unloadable writes why (see image.server)."""
    return runtime_dir() / "model-failed"


def shared_model_failure() -> str | None:
    """The load failure a process of this server recorded, if any."""
    try:
        return model_failure_file().read_text()
    except FileNotFoundError:
        return None


def record_model_failure(error: str) -> None:
    """Publish a load failure to every worker at once (written aside, then renamed: readers see all or nothing)."""
    target = model_failure_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.{os.getpid()}")
    scratch.write_text(error)
    os.replace(scratch, target)
