"""What the two micro-benchmarks (`micro-function`, `micro-app`) share: one serving image started by `docker run`
with the local profile's caps and its port on 127.0.0.1 only, waiting until it answers, its log lines, and the
payload bench.yml POSTs.

They measure an image on this machine, outside bench.yml's run folders: their files go to their --out folder,
never to results/. Errors a user can fix (no docker command, an image that exits, a server that never answers)
raise MicroBenchError, which `python -m analysis.bench` prints as one `error:` line (exit status 1).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from analysis.bench.client import DockerError, Response, docker_inspect, request
from analysis.bench.logs import STDOUT_LOG, DockerLogs, Mark, prediction_records
from analysis.bench.runner import StepError

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180
DOCKER_TIMEOUT_S = 120
BUILD_TIMEOUT_S = 1800
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


class MicroBenchError(StepError):
    """A micro-benchmark cannot run; the message says what was wrong and what to do."""


def docker_host() -> str:
    """The engine the docker CLI talks to, for the Engine API calls (client.py) that go beside it."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def docker(*args: str, check: bool = True, timeout: float = DOCKER_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """The docker CLI. With `check`, a non-zero exit raises MicroBenchError quoting docker's stderr."""
    try:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise MicroBenchError("the docker command is not on PATH: install docker.io and start dockerd (see .ci/run)"
                              ) from None
    except subprocess.TimeoutExpired:
        raise MicroBenchError(f"docker {' '.join(args[:3])} took over {timeout:g} s") from None
    if check and done.returncode != 0:
        raise MicroBenchError(f"docker {' '.join(args[:3])} failed ({done.returncode}): "
                              f"{done.stderr.strip()[-1500:]}")
    return done


def build_image(dockerfile: str, tag: str, base_image: str, model_dir: str | None = None) -> None:
    """`docker build -f DOCKERFILE` from the repository root (the context the Dockerfiles expect).

    model_dir is the MODEL_DIR build argument, a model folder inside the repository (default: the Dockerfile's,
    build/model).
    """
    argv = ["build", "-f", dockerfile, "--build-arg", f"BASE_IMAGE={base_image}"]
    if model_dir is not None:
        argv += ["--build-arg", f"MODEL_DIR={model_dir}"]
    docker(*argv, "-t", tag, str(REPO_ROOT), timeout=BUILD_TIMEOUT_S)


@dataclass(frozen=True)
class Container:
    name: str
    url: str  # http://127.0.0.1:PORT, without a trailing slash

    def running(self) -> bool | None:
        """False once the container has exited; None when the Engine API cannot say."""
        try:
            return bool(docker_inspect(docker_host(), self.name)["State"]["Running"])
        except (DockerError, KeyError):
            return None

    def logs(self) -> subprocess.CompletedProcess[str]:
        return docker("logs", self.name, check=False)

    def mark(self) -> Mark:
        """Where a measurement starts in the container's output (see collect_logs)."""
        return self._log_source().mark()

    def collect_logs(self, since: Mark, out_dir: Path) -> list[str]:
        """Write the lines printed since `since` to out_dir/server.log (and server.stderr.log); return stdout's."""
        out_dir.mkdir(parents=True, exist_ok=True)
        info = self._log_source().collect(since, out_dir)
        if info.get("error"):
            raise MicroBenchError(f"cannot read {self.name}'s log: {info['error']}")
        return (out_dir / STDOUT_LOG).read_text(encoding="utf-8", errors="replace").splitlines()

    def _log_source(self) -> DockerLogs:
        return DockerLogs(self.name, docker_host())


@contextmanager
def capped_container(image: str, name: str, cpus: str, memory: str, env: dict[str, str], port: int | None = None,
                     volumes: Sequence[str] = ()) -> Iterator[Container]:
    """`docker run -d` the image capped at --cpus/--memory, port 8080 published on 127.0.0.1 only (on `port`, or
    one Docker picks); the container is removed on exit, however the block ends. A container of the same name
    left by an earlier run that was killed is removed first."""
    docker("rm", "-f", name, check=False)
    argv = ["run", "-d", "--name", name, "--cpus", cpus, "--memory", memory, "-p", f"127.0.0.1:{port or ''}:8080"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    for volume in volumes:
        argv += ["-v", volume]
    docker(*argv, image)
    try:
        published = docker("port", name, "8080/tcp").stdout.splitlines()[0].rsplit(":", 1)[1]
        yield Container(name, f"http://127.0.0.1:{published}")
    finally:
        docker("rm", "-f", name, check=False)


def wait_ready(url: str, ready: Callable[[Response], bool], container: Container | None = None,
               timeout_s: float = READY_TIMEOUT_S) -> float:
    """Seconds until GET `url` gave a response `ready` accepts. MicroBenchError with the container's last output
    as soon as it has exited, or after timeout_s."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if ready(request("GET", url, timeout=2)):
            return time.monotonic() - started
        if container is not None and container.running() is False:
            logs = container.logs()
            raise MicroBenchError(f"{container.name} exited:\n{(logs.stdout + logs.stderr)[-3000:]}")
        time.sleep(0.25)
    raise MicroBenchError(f"{url} did not answer as ready within {timeout_s:g} s")


def payload_file(given: Path | None, out: Path) -> Path:
    """The JPEG to POST: the user's --payload, else bench.yml's default payload, written into `out`."""
    if given is not None:
        if not given.is_file():
            raise MicroBenchError(f"--payload {given} is not a file")
        return given
    from analysis.bench import payloads  # numpy and Pillow: only when a payload is drawn

    return payloads.write(payloads.DEFAULT_PAYLOAD, out).path


def prediction_ms(run_dir: Path) -> list[float]:
    """prediction_ms of each `{"event": "prediction"}` line collected into run_dir."""
    values = (record.get("prediction_ms") for record in prediction_records(run_dir))
    return [float(v) for v in values if isinstance(v, int | float)]


def mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None
