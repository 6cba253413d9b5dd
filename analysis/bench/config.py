"""What to run and against what: the configuration file `init` reads, and the plan derived from it.

The configuration is one JSON object (bench.yml renders it from its variables):

    {
      "profile": "local",
      "config": {"concurrency": [1, 5, 10, 20], "repetitions": 5, ...},   # knobs; omitted ones take DEFAULTS
      "platforms": {
        "function":  {"url": "http://127.0.0.1:30080/", "container": "kde-function", ...},
        "container": {"url": "http://127.0.0.1:30081/predict", "container": "kde-app", ...}
      },
      "versions": {"kubeless_runtime_image": "..."},   # optional: versions only the playbook knows
      "docker_host": "unix:///var/run/docker.sock"      # optional: else $DOCKER_HOST, else this default
    }

`python -m analysis.bench example-config` prints a complete one for the local profile. The plan orders
the steps so drift hits both platforms alike: a discarded warm-up per platform, then for each repetition
and each concurrency both platforms, their order alternating between repetitions; then the latency probe;
cold starts last, because they restart the serving containers.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from analysis.bench import PLATFORMS

# The paper's values where it gives them (c = 1, 5, 10, 20; five repetitions; 10 probe requests).
DEFAULTS: dict[str, Any] = {
    "concurrency": [1, 5, 10, 20],
    "repetitions": 5,
    "requests_per_run": 100,  # ab -n per concurrency run
    "warmup_requests": 20,  # ab -n of the discarded warm-up run per platform
    "warmup_concurrency": None,  # None: the largest concurrency, so every worker/thread is warmed
    "probe_requests": 10,  # sequential requests of the Table 1 latency probe; 0 skips the probe
    "coldstart_repetitions": 3,  # 0 skips cold starts
    "payload": "photo-500x375.jpg",  # a name from analysis.bench.payloads, or the path of your own JPEG
    "ab_timeout_s": 30,  # ab -s: per-socket timeout; a request slower than this aborts the ab run
    "run_timeout_s": 900,  # wall-clock limit of one ab run; ab is stopped (partial statistics kept)
    "keepalive": False,  # ab -k
    "accept_variable_length": False,  # ab -l (then Length failures are not counted at all)
    "resource_interval_s": 0.5,  # CPU/memory sampling period during each ab run
    "request_timeout_s": 30,  # per-request timeout of the probe, the cold-start polls and /metrics
    "coldstart_timeout_s": 300,  # give up waiting for the first 200 after a restart after this long
    "coldstart_poll_interval_s": 0.1,  # pause between cold-start polls that did not get a 200
    "log_settle_s": 0.5,  # wait after a run before collecting the container's log lines
}

LOG_SOURCES = ("docker", "kubectl", "file", "none")
RESOURCE_SOURCES = ("auto", "cgroup", "docker", "proc", "none")
RESTARTS = ("docker", "none")


class ConfigError(ValueError):
    """The configuration file is wrong; the message names the key and what is expected."""


@dataclass(frozen=True)
class PlatformConfig:
    """One serving platform as the benchmark reaches and observes it.

    log_source: where its per-prediction stdout lines come from (`docker logs`, `kubectl logs`, a `file`
    the server appends to, or `none`). resource_source: `cgroup` (the cgroup files of the container's or
    `pid`'s cgroup), `docker` (Engine API stats, at most once a second), `auto` (cgroup if readable, else
    docker), `proc` (/proc of `pid` and its children), or `none`.
    restart: how a cold start restarts it (`docker stop` + `docker start`, or `none`: no cold starts).
    """

    name: str
    url: str
    kind: str = ""
    container: str | None = None
    server_time_metric: str | None = None
    metrics_url: str | None = None
    log_source: str = "none"
    log_file: str | None = None
    kubectl_target: str | None = None  # e.g. "deployment/yelp-classifier" or "-l function=yelp"
    kubectl_namespace: str | None = None
    kubectl_context: str | None = None
    resource_source: str = "none"
    pid: int | None = None
    restart: str = "none"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["name"]
        return data


@dataclass(frozen=True)
class BenchConfig:
    profile: str
    knobs: dict[str, Any]
    platforms: dict[str, PlatformConfig]
    versions: dict[str, str] = field(default_factory=dict)
    docker_host: str = "unix:///var/run/docker.sock"

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "config": self.knobs,
            "platforms": {name: p.to_dict() for name, p in self.platforms.items()},
            "versions": self.versions,
            "docker_host": self.docker_host,
        }

    def knob(self, name: str) -> Any:
        return self.knobs[name]


def load_config(path: Path | str) -> BenchConfig:
    """Read and validate a configuration file; errors name the file and the key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_dict(data: Any) -> BenchConfig:
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a JSON object")
    unknown = set(data) - {"profile", "config", "platforms", "versions", "docker_host"}
    if unknown:
        raise ConfigError(f"unknown top-level keys {sorted(unknown)}; expected profile, config, platforms, "
                          "versions, docker_host")
    knobs = _knobs(data.get("config") or {})
    platforms_data = data.get("platforms")
    if not isinstance(platforms_data, dict) or not platforms_data:
        raise ConfigError(f"'platforms' must map platform names ({', '.join(PLATFORMS)}) to their settings")
    platforms = {}
    for name, settings in platforms_data.items():
        if name not in PLATFORMS:
            raise ConfigError(f"platform {name!r} is not one of {', '.join(PLATFORMS)}")
        platforms[name] = _platform(name, settings)
    versions = data.get("versions") or {}
    if not isinstance(versions, dict):
        raise ConfigError("'versions' must be an object of name -> version string")
    docker_host = data.get("docker_host") or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not str(docker_host).startswith("unix://"):
        raise ConfigError(f"docker_host {docker_host!r}: only unix:// sockets are supported")
    return BenchConfig(
        profile=str(data.get("profile") or "local"),
        knobs=knobs,
        platforms=platforms,
        versions={str(k): str(v) for k, v in versions.items()},
        docker_host=str(docker_host),
    )


def _knobs(given: Any) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise ConfigError("'config' must be an object of knob -> value")
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown knobs {sorted(unknown)} in 'config'; known: {', '.join(DEFAULTS)}")
    knobs = {**DEFAULTS, **given}
    conc = knobs["concurrency"]
    if not isinstance(conc, list) or not conc or not all(isinstance(c, int) and c >= 1 for c in conc):
        raise ConfigError(f"'concurrency' must be a non-empty list of integers >= 1, got {conc!r}")
    if len(set(conc)) != len(conc):
        raise ConfigError(f"'concurrency' lists a value twice: {conc!r}")
    for name in ("repetitions", "requests_per_run", "warmup_requests"):
        if not isinstance(knobs[name], int) or knobs[name] < 1:
            raise ConfigError(f"'{name}' must be an integer >= 1, got {knobs[name]!r}")
    for name in ("probe_requests", "coldstart_repetitions"):
        if not isinstance(knobs[name], int) or knobs[name] < 0:
            raise ConfigError(f"'{name}' must be an integer >= 0, got {knobs[name]!r}")
    if max(conc) > knobs["requests_per_run"]:
        raise ConfigError(f"'requests_per_run' ({knobs['requests_per_run']}) must be at least the largest "
                          f"concurrency ({max(conc)}): ab cannot run more concurrent requests than requests")
    warm_c = knobs["warmup_concurrency"]
    if warm_c is not None and (not isinstance(warm_c, int) or not 1 <= warm_c <= knobs["warmup_requests"]):
        raise ConfigError(f"'warmup_concurrency' must be null or an integer in 1..warmup_requests, got {warm_c!r}")
    if warm_c is None and max(conc) > knobs["warmup_requests"]:
        raise ConfigError(f"'warmup_requests' ({knobs['warmup_requests']}) must be at least the largest "
                          f"concurrency ({max(conc)}), or set 'warmup_concurrency'")
    for name in ("ab_timeout_s", "run_timeout_s", "resource_interval_s", "request_timeout_s",
                 "coldstart_timeout_s", "coldstart_poll_interval_s", "log_settle_s"):
        if not isinstance(knobs[name], int | float) or knobs[name] < 0:
            raise ConfigError(f"'{name}' must be a number >= 0, got {knobs[name]!r}")
    if not isinstance(knobs["ab_timeout_s"], int) or knobs["ab_timeout_s"] < 1:
        raise ConfigError(f"'ab_timeout_s' is ab -s and must be a whole number of seconds >= 1, "
                          f"got {knobs['ab_timeout_s']!r}")
    if knobs["resource_interval_s"] < 0.05:
        raise ConfigError("'resource_interval_s' must be at least 0.05 s")
    for name in ("keepalive", "accept_variable_length"):
        if not isinstance(knobs[name], bool):
            raise ConfigError(f"'{name}' must be true or false, got {knobs[name]!r}")
    if not isinstance(knobs["payload"], str) or not knobs["payload"]:
        raise ConfigError("'payload' must be a payload name such as photo-500x375.jpg or a JPEG's path")
    return knobs


def _platform(name: str, settings: Any) -> PlatformConfig:
    if not isinstance(settings, dict):
        raise ConfigError(f"platforms.{name} must be an object with at least 'url'")
    known = set(PlatformConfig.__dataclass_fields__) - {"name"}
    unknown = set(settings) - known
    if unknown:
        raise ConfigError(f"platforms.{name}: unknown keys {sorted(unknown)}; known: {', '.join(sorted(known))}")
    url = settings.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not parts.path:
        raise ConfigError(f"platforms.{name}.url must be an http URL with a path, e.g. "
                          f"http://127.0.0.1:30080/, got {url!r}")
    container = settings.get("container")
    defaults: dict[str, Any] = {
        "log_source": "docker" if container else "none",
        "resource_source": "auto" if container else "none",
        "restart": "docker" if container else "none",
        "metrics_url": f"{parts.scheme}://{parts.netloc}/metrics",
    }
    merged = {**defaults, **{k: v for k, v in settings.items() if v is not None or k == "metrics_url"}}
    platform = PlatformConfig(name=name, **merged)
    _check_choice(name, "log_source", platform.log_source, LOG_SOURCES)
    _check_choice(name, "resource_source", platform.resource_source, RESOURCE_SOURCES)
    _check_choice(name, "restart", platform.restart, RESTARTS)
    needs = {
        ("log_source", "docker"): ("container", platform.container),
        ("log_source", "file"): ("log_file", platform.log_file),
        ("log_source", "kubectl"): ("kubectl_target", platform.kubectl_target),
        ("resource_source", "docker"): ("container", platform.container),
        ("resource_source", "auto"): ("container", platform.container),
        ("resource_source", "proc"): ("pid", platform.pid),
        ("restart", "docker"): ("container", platform.container),
    }
    for (key, value), (needed, present) in needs.items():
        if getattr(platform, key) == value and not present:
            raise ConfigError(f"platforms.{name}: {key} {value!r} needs '{needed}'")
    if platform.resource_source == "cgroup" and not (platform.container or platform.pid):
        raise ConfigError(f"platforms.{name}: resource_source 'cgroup' needs 'container' or 'pid'")
    return platform


def _check_choice(platform: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"platforms.{platform}.{key} must be one of {', '.join(choices)}, got {value!r}")


def example_config() -> dict[str, Any]:
    """The local profile as inventory/local/group_vars/all.yml sets it up."""
    return {
        "profile": "local",
        "config": dict(DEFAULTS),
        "platforms": {
            "function": {
                "url": "http://127.0.0.1:30080/",
                "kind": "kubeless-runtime",
                "container": "kde-function",
                "server_time_metric": "function_duration_seconds",
            },
            "container": {
                "url": "http://127.0.0.1:30081/predict",
                "kind": "gunicorn",
                "container": "kde-app",
                "server_time_metric": "http_request_duration_seconds",
            },
        },
        "versions": {},
    }


# ----------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class PlanItem:
    """One step of the benchmark: one ab run, one probe, or one cold-start repetition."""

    index: int
    run_key: str
    step: str  # warmup | concurrency | probe | coldstart
    platform: str
    concurrency: int | None
    repetition: int | None
    requests: int
    argv: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ab_run_key(experiment: str, platform: str, concurrency: int, repetition: int) -> str:
    return f"{experiment}-{platform}-c{concurrency}-r{repetition}"


def probe_run_key(platform: str) -> str:
    return f"probe-{platform}"


def coldstart_run_key(platform: str, repetition: int) -> str:
    return f"coldstart-{platform}-r{repetition}"


def warmup_concurrency(knobs: dict[str, Any]) -> int:
    return knobs["warmup_concurrency"] or max(knobs["concurrency"])


def make_plan(config: BenchConfig, run_dir: Path | str) -> list[PlanItem]:
    """Every step in the order bench.yml runs them; `argv` is what follows `python -m analysis.bench`."""
    run_dir = str(run_dir)
    knobs = config.knobs
    names = [p for p in PLATFORMS if p in config.platforms]
    steps: list[tuple[str, str, str, int | None, int | None, int, list[str]]] = []

    def ab_step(experiment: str, platform: str, conc: int, rep: int, requests: int) -> None:
        argv = ["run-one", run_dir, "--experiment", experiment, "--platform", platform,
                "--concurrency", str(conc), "--repetition", str(rep)]
        steps.append((ab_run_key(experiment, platform, conc, rep), experiment, platform, conc, rep, requests, argv))

    for platform in names:
        ab_step("warmup", platform, warmup_concurrency(knobs), 0, knobs["warmup_requests"])
    for rep in range(1, knobs["repetitions"] + 1):
        order = names if rep % 2 == 1 else list(reversed(names))
        for conc in knobs["concurrency"]:
            for platform in order:
                ab_step("concurrency", platform, conc, rep, knobs["requests_per_run"])
    if knobs["probe_requests"]:
        for platform in names:
            argv = ["probe", run_dir, "--platform", platform, "--requests", str(knobs["probe_requests"])]
            steps.append((probe_run_key(platform), "probe", platform, None, None, knobs["probe_requests"], argv))
    for rep in range(1, knobs["coldstart_repetitions"] + 1):
        for platform in names:
            if config.platforms[platform].restart == "none":
                continue
            argv = ["coldstart", run_dir, "--platform", platform, "--repetition", str(rep)]
            steps.append((coldstart_run_key(platform, rep), "coldstart", platform, None, rep, 1, argv))
    return [PlanItem(i, *step) for i, step in enumerate(steps, start=1)]
