"""What to run and against what: the configuration file `init` reads, and the plan derived from it.

The configuration is one JSON object (bench.yml renders it from its variables):

    {
      "profile": "local",
      "config": {"concurrency": [1, 5, 10, 20], "repetitions": 5, ...},   # knobs; omitted ones take DEFAULTS
      "platforms": {                                                      # in report order
        "function":  {"kind": "kubeless", "url": "http://127.0.0.1:30080/", "container": "kde-function", ...},
        "container": {"kind": "container", "url": "http://127.0.0.1:30081/predict", "container": "kde-app", ...}
      },
      "kinds": ["my_package.my_kind"],   # optional: kind modules to import besides analysis/bench/kinds/
      "versions": {"kubeless_runtime_image": "..."},   # optional: versions only the playbook knows
      "docker_host": "unix:///var/run/docker.sock"      # optional: else $DOCKER_HOST, else this default
    }

A platform reached through kubectl (the paper profile's clusters) has its kubectl settings in one group, which
no other platform has (KubectlTarget; the flat kubectl_* keys of older manifests are still read):

        "function": {"kind": "kubeless", "url": "http://192.168.150.10/predict", "log_source": "kubectl",
                     "restart": ["kubectl-scale", "kubectl-redeploy"],
                     "kubectl": {"kubeconfig": "build/kubeconfig/kde-kubeless.yaml", "context": "kde-kubeless",
                                 "namespace": "default", "target": "--selector function=kde-function",
                                 "deployment": "kde-function", "selector": "function=kde-function",
                                 "redeploy": ["function/kde-function", "httptrigger/kde-function"]}}

`python -m analysis.bench example-config` prints a complete one for the local profile. The plan orders
the steps so drift hits both platforms alike: a discarded warm-up per platform, then for each repetition
and each concurrency both platforms, their order alternating between repetitions; then the latency probe and
the paired step (every platform alternated request by request: the headline ratio); cold starts last,
because they restart the serving containers.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from analysis.bench import platforms as kinds

# The paper's values where it gives them (c = 1, 5, 10, 20; five repetitions; 10 probe requests).
DEFAULTS: dict[str, Any] = {
    "concurrency": [1, 5, 10, 20],
    "repetitions": 5,
    "requests_per_run": 140,  # ab -n per concurrency run; 5 x 140 = 700 >= the 662 served requests a cell's p99 needs
    "warmup_requests": 20,  # ab -n of the discarded warm-up run per platform
    "warmup_concurrency": None,  # None: the largest concurrency, so every worker/thread is warmed
    "probe_requests": 10,  # sequential requests of the Table 1 latency probe; 0 skips the probe
    # issue 24: the headline's paired step: rounds of one sequential request to every platform, the order rotated
    # from round to round (analysis/bench/runner.py `paired`); 0 skips the step
    "paired_requests": 100,
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
    # ingress path and overload (issue 11)
    "overload_concurrency": [50, 100],  # the overload region: one short run per platform at each ([] skips it)
    "overload_requests": 200,  # ab -n of each overload run
    "nowarmup_requests": 30,  # the function with WARMUP_CALLS=0: one run at c=1 in a temporary copy (0 skips it)
    "nowarmup_timeout_s": 120,  # wall-clock bound of that run (its ab is stopped there; what finished is kept)
    "bodylimit_bytes": 1100000,  # one POST this large through each function path: which layer answers (0 skips)
    # stability and samples (issue 14)
    "stability_cv_pct": 5.0,  # a cell whose repetitions' medians vary more than this (CV, %) is unstable
    "stability_max_extra_repetitions": 2,  # extra repetitions per unstable cell; 0 turns the stability step off
    "stability_budget_s": 60.0,  # wall-clock cap of all extra repetitions of a run together
    "busy_cpu_pct": 10.0,  # other processes (or CPU steal) above this % of one core make a run "busy"
    "quiet_check_s": 2.0,  # how long init looks at the machine before the benchmark starts
    "ab_cpus": "auto",  # taskset -c for ab: auto (disjoint from pinned serving containers on > 4 cores), none, or "4-7"
    # open-loop (issue 13): the `rate` experiment (analysis/bench/rate.py), after the closed-loop sweep and the probe
    "rate_capacity_pct": [25, 50, 75, 90, 100, 110],  # offered rates in % of each platform's closed-loop capacity
    "rate_rps": [],  # explicit offered rates (req/s) instead; when given, rate_capacity_pct is not used
    # "direct": every platform not reached via another (the through-ingress path's open loop would add ~1 min to
    # the default run); None: every configured platform; a list: those; [] skips the experiment
    "rate_platforms": "direct",
    "rate_duration_s": 10.0,  # seconds of arrivals per rate (6 rates x 2 platforms: ~2.5 min with the drains)
    # issue 24: runs per offered rate (each rate on every platform, then the next rate; repetition 1 keeps the old
    # run key, later ones end in -r<N>); capacity.py pools a rate's repetitions
    "rate_repetitions": 1,
    # issue 24: capacity at the objective by bisection (`python -m analysis.bench rate-search`): the starting bracket
    # in % of the closed-loop capacity, the bracket width to stop at (% of its lower end), and the probe budget
    "rate_search_bracket_pct": [25, 125],
    "rate_search_tolerance_pct": 5.0,
    "rate_search_max_probes": 8,
    # issue 24: the search as a plan step, after the grid: "direct", null, a list (as rate_platforms) or [] for none;
    # part of the open-loop experiment (a plan without rate steps has no search); each platform's search is bounded
    # by rate_search_budget_s of wall-clock time
    "rate_search_platforms": "direct",
    "rate_search_budget_s": 150.0,
    # issue 24: before each probe of the plan step's search, this many seconds of closed-loop load at the run's best
    # concurrency measure the platform's throughput now; the search bisects on the probe's rate as a share of it, so
    # that a machine that slows down during the search moves the rates with it (0: bisect on req/s, uncalibrated)
    "rate_search_calibrate_s": 3.0,
    "rate_arrivals": "poisson",  # poisson (seeded) or constant
    "rate_seed": 1,  # the Poisson schedule's seed: the same at every rate and platform (common random numbers)
    "rate_max_outstanding": 512,  # cap on requests in flight; one due above it is dropped, never delayed
    "rate_max_lag_ms": 5.0,  # a run whose p99 send lag exceeds this is invalid (the generator fell behind)
    "rate_realtime": True,  # send at SCHED_FIFO priority 1 when permitted, so a busy server cannot delay the sends
    "slo_p99_ms": 1000.0,  # the latency objective: capacity = highest rate with p99 <= this and errors <= 1 %
    # autoscaling (paper profile): ab load while the HPA scales (analysis/bench/autoscale.py)
    "autoscale_concurrency": 10,  # ab -c of the load
    "autoscale_duration_s": 300,  # seconds of load (ab is stopped then; run_timeout_s bounds it too)
    "autoscale_sample_interval_s": 5.0,  # seconds between two samples of the Deployment and its HPA
    "autoscale_tail_s": 60,  # sampling after the load, to see the scale-down start (the 1.10 HPA waits 5 min)
    "autoscale_platforms": [],  # platforms with a kubectl group to run on ([] skips it; the paper inventory sets both)
}

LOG_SOURCES = ("docker", "kubectl", "file", "none")
RESOURCE_SOURCES = ("auto", "cgroup", "docker", "proc", "none")
# How a cold start restarts a platform, and the `kind` each writes into coldstart.csv. The kubectl kinds are
# analysis/bench/cluster.py: scale the Deployment 0 -> 1, or delete the objects and apply them again.
COLDSTART_KINDS = {
    "docker": "container_restart",
    "kubectl-scale": "replicas_0_to_1",
    "kubectl-redeploy": "deploy_to_first_200",
}
RESTARTS = (*COLDSTART_KINDS, "none")
KUBECTL_RESTARTS = ("kubectl-scale", "kubectl-redeploy")


class ConfigError(ValueError):
    """The configuration file is wrong; the message names the key and what is expected."""


# Kind names written by runs made before platform kinds were plug-ins (they are read as the kinds they meant).
LEGACY_KINDS = {"kubeless-runtime": "kubeless", "gunicorn": "container",
                "kubeless-runtime+ingress-nginx": "ingress-nginx"}
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True)
class KubectlTarget:
    """How the driver reaches a platform through kubectl (the paper profile's clusters): platforms.<name>.kubectl.

    Every kubectl command names its cluster explicitly (`kubeconfig`, `context`, `namespace`), never the current
    context. target: what `kubectl logs` reads (log_source kubectl), e.g. "--selector function=kde-function";
    bin: the kubectl binary; deployment: the Deployment that serves the platform (kubectl-scale, the autoscaling
    run); selector: the label selector of its pods, e.g. "function=kde-function"; redeploy: the "kind/name"
    objects kubectl-redeploy deletes and applies again, in apply order.
    """

    target: str | None = None
    namespace: str | None = None
    context: str | None = None
    kubeconfig: str | None = None
    bin: str = "kubectl"
    deployment: str | None = None
    selector: str | None = None
    redeploy: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["redeploy"] = list(self.redeploy)
        return data


KUBECTL_KEYS = tuple(KubectlTarget.__dataclass_fields__)
# The flat keys platforms had before the kubectl group (issue 19); manifests of older runs carry them, every one of
# them, at their defaults on the platforms that did not use kubectl. They are read into the group.
LEGACY_KUBECTL_KEYS = {
    "kubectl_target": "target", "kubectl_namespace": "namespace", "kubectl_context": "context",
    "kubeconfig": "kubeconfig", "kubectl_bin": "bin", "kubectl_deployment": "deployment",
    "kubectl_selector": "selector", "kubectl_redeploy": "redeploy",
}


@dataclass(frozen=True)
class PlatformConfig:
    """One serving platform as the benchmark reaches and observes it.

    log_source: where its per-prediction stdout lines come from (`docker logs`, `kubectl logs`, a `file`
    the server appends to, or `none`). resource_source: `cgroup` (the cgroup files of the container's or
    `pid`'s cgroup), `docker` (Engine API stats, at most once a second), `auto` (cgroup if readable, else
    docker), `proc` (/proc of `pid` and its children), or `none`.
    restart: how a cold start restarts it: `docker` (`docker stop` + `docker start` of `container`),
    `kubectl-scale` (the Deployment `kubectl.deployment` scaled to 0 until no pod of `kubectl.selector` is
    left, then to 1), `kubectl-redeploy` (the objects of `kubectl.redeploy`, e.g. the Function and its
    HTTPTrigger, deleted and applied again), a list of kubectl kinds (each is its own cold-start series), or
    `none` (no cold starts). kubectl: the settings of a platform reached through kubectl (KubectlTarget), None
    for every other; kubectl always runs with its explicit `kubeconfig` and `context`.
    """

    name: str
    url: str
    kind: str = ""  # a registered kind (analysis/bench/platforms.py): kubeless, container, ingress-nginx, ...
    role: str = ""  # function or baseline; empty: the kind's
    via: str | None = None  # the platform this one reaches through another hop (its ingress), if any
    label: str = ""  # how the report names it; empty: the kind's label
    container: str | None = None
    server_time_metric: str | None = None
    metrics_url: str | None = None
    log_source: str = "none"
    log_file: str | None = None
    resource_source: str = "none"
    pid: int | None = None
    restart: str | tuple[str, ...] = "none"
    kubectl: KubectlTarget | None = None  # issue 19: only a platform reached through kubectl has the group
    # issue 11: the local ingress's folder (access.log, error.log, nginx.pid): its lines of each run are kept
    ingress_dir: str | None = None
    # A platform that cannot take the whole matrix (OpenFaaS's classic watchdog loads the model per request):
    # concurrency and overload runs above max_concurrency are not planned, nor its open loop (unbounded arrivals)
    # or extra repetitions; requests_per_run replaces the knob's for its concurrency runs (and caps its warm-up).
    max_concurrency: int | None = None
    requests_per_run: int | None = None
    # the URL that answers 200 once the platform can predict (bench.yml waits for it before any load; the nowarmup
    # step's copy is awaited on its path); None: the url's /healthz
    ready_url: str | None = None

    def runs_at(self, concurrency: int) -> bool:
        return self.max_concurrency is None or concurrency <= self.max_concurrency

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["name"]
        if isinstance(data["restart"], tuple):
            data["restart"] = list(data["restart"])
        if self.kubectl is None:  # a platform's settings hold only what applies to it
            del data["kubectl"]
        else:
            data["kubectl"] = self.kubectl.to_dict()
        return data

    @property
    def restart_kinds(self) -> tuple[str, ...]:
        """The restarts to run as cold starts, in order (empty for `none`)."""
        kinds = (self.restart,) if isinstance(self.restart, str) else self.restart
        return tuple(k for k in kinds if k != "none")


@dataclass(frozen=True)
class BenchConfig:
    profile: str
    knobs: dict[str, Any]
    platforms: dict[str, PlatformConfig]  # in the configuration's order, which is the report's order
    versions: dict[str, str] = field(default_factory=dict)
    docker_host: str = "unix:///var/run/docker.sock"
    kind_modules: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = {
            "profile": self.profile,
            "config": self.knobs,
            "platforms": {name: p.to_dict() for name, p in self.platforms.items()},
            "versions": self.versions,
            "docker_host": self.docker_host,
        }
        if self.kind_modules:
            data["kinds"] = list(self.kind_modules)
        return data

    def kind(self, name: str) -> kinds.Kind:
        """The kind of platform `name` (for a platform reached via another, the wrapping kind)."""
        return kinds.get(self.platforms[name].kind)

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
    unknown = set(data) - {"profile", "config", "platforms", "versions", "docker_host", "kinds"}
    if unknown:
        raise ConfigError(f"unknown top-level keys {sorted(unknown)}; expected profile, config, platforms, "
                          "versions, docker_host, kinds")
    modules = data.get("kinds") or []
    if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
        raise ConfigError(f"'kinds' must be a list of module names, got {modules!r}")
    try:
        kinds.load_modules(modules)
    except kinds.UnknownKind as exc:
        raise ConfigError(str(exc)) from None
    platforms_data = data.get("platforms")
    if not isinstance(platforms_data, dict) or not platforms_data:
        raise ConfigError("'platforms' must map platform names (e.g. function, container) to their settings")
    platforms = {}
    for name, settings in platforms_data.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ConfigError(f"platform name {name!r}: use lower-case letters, digits and _ (it goes into run keys "
                              "and file names)")
        platforms[name] = _platform(name, settings)
    _check_roles(platforms)
    knobs = _knobs(data.get("config") or {}, list(platforms))
    _check_kubectl_use(platforms, knobs)
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
        kind_modules=tuple(modules),
    )


def _check_roles(platforms: dict[str, PlatformConfig]) -> None:
    """One baseline at most (every function platform is compared with it); `via` names another platform."""
    baselines = [n for n, p in platforms.items() if p.role == "baseline"]
    if len(baselines) > 1:
        raise ConfigError(f"platforms {', '.join(baselines)} all have role 'baseline'; a run compares every function "
                          "platform with one baseline")
    for name, p in platforms.items():
        if p.via is not None and (p.via not in platforms or p.via == name or platforms[p.via].via is not None):
            raise ConfigError(f"platforms.{name}.via must name another platform of this run that is not itself "
                              f"reached via one, got {p.via!r}")


def _check_kubectl_use(platforms: dict[str, PlatformConfig], knobs: dict[str, Any]) -> None:
    """A kubectl group only where something uses it: kubectl logs, a kubectl restart or the autoscaling run."""
    for name, p in platforms.items():
        if p.kubectl is None or p.log_source == "kubectl" or name in knobs["autoscale_platforms"] or any(
                kind in KUBECTL_RESTARTS for kind in p.restart_kinds):
            continue
        raise ConfigError(f"platforms.{name}.kubectl: nothing of platform {name!r} uses kubectl (log_source "
                          f"{p.log_source!r}, restart {p.restart!r}, not in autoscale_platforms); leave the group "
                          f"out, or set log_source kubectl or a kubectl restart "
                          f"({', '.join(KUBECTL_RESTARTS)})")


def _coerce(name: str, value: Any) -> Any:
    """Text as `ansible-playbook -e bench_repetitions=3` passes it, read as the knob's type; anything else as is
    (the checks below then say what is wrong)."""
    if not isinstance(value, str):
        return value
    default = DEFAULTS[name]
    text = value.strip()
    try:
        if isinstance(default, bool) or (default is None and text.lower() in ("true", "false")):
            return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
                text.lower(), value)
        if isinstance(default, list):
            parsed = json.loads(text) if text.startswith("[") else [json.loads(v) for v in text.split(",") if v]
            return parsed if isinstance(parsed, list) else value
        if isinstance(default, int) or (default is None and text.isdigit()):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if default is None and text.lower() in ("none", "null", ""):
            return None
    except ValueError:
        return value
    return value


def _knobs(given: Any, platform_names: list[str]) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise ConfigError("'config' must be an object of knob -> value")
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown knobs {sorted(unknown)} in 'config' (bench.yml: bench_<knob> variables); "
                          f"known: {', '.join(DEFAULTS)}")
    knobs = {**DEFAULTS, **{name: _coerce(name, value) for name, value in given.items()}}
    conc = knobs["concurrency"]
    if not isinstance(conc, list) or not conc or not all(isinstance(c, int) and c >= 1 for c in conc):
        raise ConfigError(f"'concurrency' must be a non-empty list of integers >= 1, got {conc!r}")
    if len(set(conc)) != len(conc):
        raise ConfigError(f"'concurrency' lists a value twice: {conc!r}")
    for name in ("repetitions", "requests_per_run", "warmup_requests"):
        if not isinstance(knobs[name], int) or knobs[name] < 1:
            raise ConfigError(f"'{name}' must be an integer >= 1, got {knobs[name]!r}")
    for name in ("probe_requests", "paired_requests", "coldstart_repetitions"):
        if isinstance(knobs[name], bool) or not isinstance(knobs[name], int) or knobs[name] < 0:
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
    _overload_knobs(knobs)
    if not isinstance(knobs["payload"], str) or not knobs["payload"]:
        raise ConfigError("'payload' must be a payload name such as photo-500x375.jpg or a JPEG's path")
    # stability and samples (issue 14)
    for name in ("stability_cv_pct", "stability_budget_s", "busy_cpu_pct", "quiet_check_s"):
        if isinstance(knobs[name], bool) or not isinstance(knobs[name], int | float) or knobs[name] < 0:
            raise ConfigError(f"'{name}' must be a number >= 0, got {knobs[name]!r}")
    extra = knobs["stability_max_extra_repetitions"]
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
        raise ConfigError(f"'stability_max_extra_repetitions' must be an integer >= 0, got {extra!r}")
    cpus = knobs["ab_cpus"]
    if not isinstance(cpus, str) or not re.fullmatch(r"auto|none|\d+(-\d+)?(,\d+(-\d+)?)*", cpus):
        raise ConfigError(f"'ab_cpus' must be auto, none or a CPU list such as 4-7 or 2,3 (taskset -c), got {cpus!r}")
    _rate_knobs(knobs, platform_names)  # open-loop (issue 13)
    _autoscale_knobs(knobs, platform_names)  # autoscaling (paper profile)
    return knobs


def _rate_knobs(knobs: dict[str, Any], names: list[str]) -> None:
    """The open-loop experiment's knobs (issue 13); a comma-separated rate_platforms is read as a list."""
    for name in ("rate_capacity_pct", "rate_rps"):
        values = knobs[name]
        if not isinstance(values, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in values):
            raise ConfigError(f"'{name}' must be a list of numbers > 0 (or []), got {values!r}")
        if len(set(values)) != len(values):
            raise ConfigError(f"'{name}' lists a value twice: {values!r}")
    for knob in ("rate_platforms", "rate_search_platforms"):
        chosen = knobs[knob]
        if isinstance(chosen, str) and chosen != "direct":  # -e bench_rate_platforms=function,container
            chosen = knobs[knob] = [p.strip() for p in chosen.split(",") if p.strip()]
        if chosen not in (None, "direct") and (not isinstance(chosen, list) or not all(p in names for p in chosen)):
            raise ConfigError(f"'{knob}' must be \"direct\", null (every platform) or a list of this run's "
                              f"platforms ({', '.join(names)}), got {chosen!r}")
    budget = knobs["rate_search_budget_s"]
    if not isinstance(budget, int | float) or isinstance(budget, bool) or not budget > 0:
        raise ConfigError(f"'rate_search_budget_s' must be a number of seconds > 0, got {budget!r}")
    calibrate = knobs["rate_search_calibrate_s"]
    if isinstance(calibrate, bool) or not isinstance(calibrate, int | float) or calibrate < 0:
        raise ConfigError(f"'rate_search_calibrate_s' must be a number of seconds >= 0 (0: no calibration), "
                          f"got {calibrate!r}")
    for name in ("rate_duration_s", "rate_max_lag_ms", "slo_p99_ms"):
        if isinstance(knobs[name], bool) or not isinstance(knobs[name], int | float) or not knobs[name] > 0:
            raise ConfigError(f"'{name}' must be a number > 0, got {knobs[name]!r}")
    if not isinstance(knobs["rate_realtime"], bool):
        raise ConfigError(f"'rate_realtime' must be true or false, got {knobs['rate_realtime']!r}")
    if knobs["rate_arrivals"] not in ("poisson", "constant"):
        raise ConfigError(f"'rate_arrivals' must be poisson or constant, got {knobs['rate_arrivals']!r}")
    for name, low in (("rate_seed", 0), ("rate_max_outstanding", 1), ("rate_repetitions", 1),
                      ("rate_search_max_probes", 3)):
        if isinstance(knobs[name], bool) or not isinstance(knobs[name], int) or knobs[name] < low:
            raise ConfigError(f"'{name}' must be an integer >= {low}, got {knobs[name]!r}")
    bracket = knobs["rate_search_bracket_pct"]
    if (not isinstance(bracket, list) or len(bracket) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bracket)
            or not 0 < bracket[0] < bracket[1]):
        raise ConfigError(f"'rate_search_bracket_pct' must be [low, high] in % of the closed-loop capacity with "
                          f"0 < low < high, got {bracket!r}")
    tolerance = knobs["rate_search_tolerance_pct"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 < tolerance < 100:
        raise ConfigError(f"'rate_search_tolerance_pct' must be a number in (0, 100), got {tolerance!r}")



def _autoscale_knobs(knobs: dict[str, Any], names: list[str]) -> None:
    """The autoscaling experiment's knobs (paper profile); a comma-separated autoscale_platforms is read as a list."""
    conc = knobs["autoscale_concurrency"]
    if isinstance(conc, bool) or not isinstance(conc, int) or conc < 1:
        raise ConfigError(f"'autoscale_concurrency' must be an integer >= 1, got {conc!r}")
    for name in ("autoscale_duration_s", "autoscale_sample_interval_s"):
        if isinstance(knobs[name], bool) or not isinstance(knobs[name], int | float) or not knobs[name] > 0:
            raise ConfigError(f"'{name}' must be a number > 0, got {knobs[name]!r}")
    tail = knobs["autoscale_tail_s"]
    if isinstance(tail, bool) or not isinstance(tail, int | float) or tail < 0:
        raise ConfigError(f"'autoscale_tail_s' must be a number >= 0, got {tail!r}")
    chosen = knobs["autoscale_platforms"]
    if isinstance(chosen, str):  # -e bench_autoscale_platforms=function,container
        chosen = knobs["autoscale_platforms"] = [p.strip() for p in chosen.split(",") if p.strip()]
    if not isinstance(chosen, list) or not all(p in names for p in chosen) or len(set(chosen)) != len(chosen):
        raise ConfigError(f"'autoscale_platforms' must be a list of distinct platforms of this run "
                          f"({', '.join(names)}), got {chosen!r}")


def _overload_knobs(knobs: dict[str, Any]) -> None:
    """The overload runs and the WARMUP_CALLS=0 variant (issue 11)."""
    over = knobs["overload_concurrency"]
    if not isinstance(over, list) or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in over):
        raise ConfigError(f"'overload_concurrency' must be a list of integers >= 1 (or []), got {over!r}")
    if len(set(over)) != len(over):
        raise ConfigError(f"'overload_concurrency' lists a value twice: {over!r}")
    if not isinstance(knobs["overload_requests"], int) or knobs["overload_requests"] < 1:
        raise ConfigError(f"'overload_requests' must be an integer >= 1, got {knobs['overload_requests']!r}")
    if over and max(over) > knobs["overload_requests"]:
        raise ConfigError(f"'overload_requests' ({knobs['overload_requests']}) must be at least the largest "
                          f"overload concurrency ({max(over)})")
    if not isinstance(knobs["nowarmup_requests"], int) or knobs["nowarmup_requests"] < 0:
        raise ConfigError(f"'nowarmup_requests' must be an integer >= 0, got {knobs['nowarmup_requests']!r}")
    if not isinstance(knobs["bodylimit_bytes"], int) or knobs["bodylimit_bytes"] < 0:
        raise ConfigError(f"'bodylimit_bytes' must be an integer >= 0, got {knobs['bodylimit_bytes']!r}")
    timeout = knobs["nowarmup_timeout_s"]
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"'nowarmup_timeout_s' must be a number > 0, got {timeout!r}")


def _platform(name: str, settings: Any) -> PlatformConfig:
    if not isinstance(settings, dict):
        raise ConfigError(f"platforms.{name} must be an object with at least 'url'")
    known = set(PlatformConfig.__dataclass_fields__) - {"name"}
    unknown = set(settings) - known - set(LEGACY_KUBECTL_KEYS)
    if unknown:
        raise ConfigError(f"platforms.{name}: unknown keys {sorted(unknown)}; known: {', '.join(sorted(known))}")
    url = settings.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not parts.path:
        raise ConfigError(f"platforms.{name}.url must be an http URL with a path, e.g. "
                          f"http://127.0.0.1:30080/, got {url!r}")
    ready = settings.get("ready_url")
    if ready is not None and (not isinstance(ready, str) or urlsplit(ready).scheme not in ("http", "https")
                              or not urlsplit(ready).hostname):
        raise ConfigError(f"platforms.{name}.ready_url must be an http URL or null, got {ready!r}")
    kind_name = settings.get("kind")
    if not isinstance(kind_name, str) or not kind_name:
        raise ConfigError(f"platforms.{name} needs a 'kind', one of {', '.join(sorted(kinds.known()))}, "
                          f"got {kind_name!r}")
    try:
        kind = kinds.get(LEGACY_KINDS.get(kind_name, kind_name))
    except kinds.UnknownKind as exc:
        raise ConfigError(f"platforms.{name}.kind: {exc}") from None
    role = settings.get("role") or kind.role
    if role not in kinds.ROLES:
        raise ConfigError(f"platforms.{name}.role must be one of {', '.join(kinds.ROLES)}, got {role!r}")
    group = _kubectl_group(name, settings)
    settings = {**{k: v for k, v in settings.items() if k not in LEGACY_KUBECTL_KEYS},
                "kind": kind.name, "role": role, "label": settings.get("label") or kind.label,
                "server_time_metric": settings.get("server_time_metric", kind.server_time_metric), "kubectl": group}
    container = settings.get("container")
    defaults: dict[str, Any] = {
        "log_source": "docker" if container else "none",
        "resource_source": "auto" if container else "none",
        "restart": "docker" if container else "none",
        "metrics_url": f"{parts.scheme}://{parts.netloc}/metrics",
    }
    merged = {**defaults, **{k: v for k, v in settings.items() if v is not None or k == "metrics_url"}}
    merged["restart"] = _restart(name, merged["restart"])
    for key in ("max_concurrency", "requests_per_run"):
        value = merged.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"platforms.{name}.{key} must be an integer >= 1 or null, got {value!r}")
    if merged.get("max_concurrency") and merged.get("requests_per_run") and \
            merged["requests_per_run"] < merged["max_concurrency"]:
        raise ConfigError(f"platforms.{name}.requests_per_run must be at least its max_concurrency")
    platform = PlatformConfig(name=name, **merged)
    _check_choice(name, "log_source", platform.log_source, LOG_SOURCES)
    _check_choice(name, "resource_source", platform.resource_source, RESOURCE_SOURCES)
    needs = {
        ("log_source", "docker"): ("container", platform.container),
        ("log_source", "file"): ("log_file", platform.log_file),
        ("log_source", "kubectl"): ("kubectl.target", platform.kubectl and platform.kubectl.target),
        ("resource_source", "docker"): ("container", platform.container),
        ("resource_source", "auto"): ("container", platform.container),
        ("resource_source", "proc"): ("pid", platform.pid),
        ("restart", "docker"): ("container", platform.container),
    }
    for (key, value), (needed, present) in needs.items():
        if getattr(platform, key) == value and not present:
            raise ConfigError(f"platforms.{name}: {key} {value!r} needs '{needed}'")
    kubectl_needs = {
        "kubectl-scale": ("kubeconfig", "context", "deployment", "selector"),
        "kubectl-redeploy": ("kubeconfig", "context", "deployment", "selector", "redeploy"),
    }
    for kind in platform.restart_kinds:
        missing = [f"kubectl.{key}" for key in kubectl_needs.get(kind, ())
                   if platform.kubectl is None or not getattr(platform.kubectl, key)]
        if missing:
            raise ConfigError(f"platforms.{name}: restart {kind!r} needs {', '.join(repr(k) for k in missing)} "
                              "(kubectl runs only with an explicit kubeconfig and context, never the current one)")
    if platform.resource_source == "cgroup" and not (platform.container or platform.pid):
        raise ConfigError(f"platforms.{name}: resource_source 'cgroup' needs 'container' or 'pid'")
    return platform


def _restart(name: str, value: Any) -> str | tuple[str, ...]:
    """One restart kind, or a list of kubectl kinds (a one-element list is stored as its kind)."""
    if isinstance(value, str):
        _check_choice(name, "restart", value, RESTARTS)
        return value
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"platforms.{name}.restart must be one of {', '.join(RESTARTS)} or a list of "
                          f"{', '.join(KUBECTL_RESTARTS)}, got {value!r}")
    for kind in value:
        if kind not in KUBECTL_RESTARTS:
            raise ConfigError(f"platforms.{name}.restart: a list holds only {', '.join(KUBECTL_RESTARTS)}, "
                              f"got {kind!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"platforms.{name}.restart lists a kind twice: {list(value)!r}")
    return value[0] if len(value) == 1 else tuple(value)


def _kubectl_group(name: str, settings: dict[str, Any]) -> KubectlTarget | None:
    """The platform's kubectl group: the object under `kubectl`, or the flat kubectl_* keys and `kubeconfig` of
    configurations and manifests written before the group (LEGACY_KUBECTL_KEYS), never both."""
    flat = sorted(k for k in settings if k in LEGACY_KUBECTL_KEYS)
    nested = settings.get("kubectl")
    if nested is not None and flat:
        raise ConfigError(f"platforms.{name}: 'kubectl' and the flat key(s) {', '.join(flat)} are both given; put "
                          f"every kubectl setting into the group 'kubectl' ({', '.join(KUBECTL_KEYS)})")
    if nested is None:
        values = {LEGACY_KUBECTL_KEYS[k]: settings[k] for k in flat if settings[k] is not None}
        group = _kubectl_target(values, {LEGACY_KUBECTL_KEYS[k]: f"platforms.{name}.{k}" for k in flat})
        return None if group == KubectlTarget() else group  # an old manifest's platform that did not use kubectl
    if not isinstance(nested, dict):
        raise ConfigError(f"platforms.{name}.kubectl must be an object with the keys {', '.join(KUBECTL_KEYS)}, "
                          f"got {nested!r}")
    unknown = sorted(set(nested) - set(KUBECTL_KEYS))
    if unknown:
        hint = " (inside the group the keys have no kubectl_ prefix)" if any(
            k in LEGACY_KUBECTL_KEYS for k in unknown) else ""
        raise ConfigError(f"platforms.{name}.kubectl: unknown keys {unknown}; known: {', '.join(KUBECTL_KEYS)}"
                          f"{hint}")
    return _kubectl_target({k: v for k, v in nested.items() if v is not None},
                           {k: f"platforms.{name}.kubectl.{k}" for k in KUBECTL_KEYS})


def _kubectl_target(values: dict[str, Any], paths: dict[str, str]) -> KubectlTarget:
    """The group of `values` (group key -> value, nulls left out); `paths` names each key in messages."""
    for key in ("target", "namespace", "context", "kubeconfig", "bin", "deployment", "selector"):
        if key in values and (not isinstance(values[key], str) or not values[key].strip()):
            raise ConfigError(f"{paths[key]} must be a non-empty string or null, got {values[key]!r}")
    if "redeploy" in values:
        values = {**values, "redeploy": _kubectl_objects(paths["redeploy"], values["redeploy"])}
    return KubectlTarget(**values)


def _kubectl_objects(path: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(
            isinstance(v, str) and v.count("/") == 1 and all(v.split("/")) for v in value):
        raise ConfigError(f"{path} must be a list of 'kind/name' objects in the order "
                          f"they are applied, e.g. ['function/kde-function', 'httptrigger/kde-function'], "
                          f"got {value!r}")
    return tuple(value)


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
                "kind": "kubeless",
                "container": "kde-function",
            },
            "container": {
                "url": "http://127.0.0.1:30081/predict",
                "kind": "container",
                "container": "kde-app",
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
    step: str  # warmup | concurrency | extra-repetitions | probe | paired | rate | ... | coldstart
    platform: str
    concurrency: int | None
    repetition: int | None
    requests: int
    argv: list[str]
    # typed settings of the steps that have them, so the dispatcher never parses argv back
    capacity_pct: float | None = None  # rate: the offered rate in % of the closed-loop capacity
    rps: float | None = None  # rate: or the offered rate itself
    restart: str | None = None  # coldstart: which of the platform's restarts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ab_run_key(experiment: str, platform: str, concurrency: int, repetition: int) -> str:
    return f"{experiment}-{platform}-c{concurrency}-r{repetition}"


# The stability step (analysis/bench/stability.py): extra repetitions of the cells whose repetitions disagree. It
# runs right after the planned concurrency runs, while the servers are still warm, and is its own plan item.
EXTRA_REPETITIONS = "extra-repetitions"


def probe_run_key(platform: str) -> str:
    return f"probe-{platform}"


# The paired step (issue 24): one plan item for the whole run, right after the probes; its run key is its name.
PAIRED = "paired"


def paired_rounds(config: BenchConfig, rounds: int | None = None) -> list[list[str]]:
    """Which platforms each round of the paired step sends to, in sending order.

    Every platform of the run takes part (its position rotated by one from round to round, so with two platforms
    the order alternates and with k each platform goes first in every k-th round), except that a platform with
    requests_per_run set (a bounded, slow platform) takes part in at most that many rounds, spread evenly over the
    step so that its pairs span the same stretch of time as the others'. max_concurrency alone does not limit it:
    the step sends one request at a time."""
    total = config.knobs["paired_requests"] if rounds is None else rounds
    names = list(config.platforms)
    out: list[list[str]] = []
    for i in range(total):
        order = names[i % len(names):] + names[:i % len(names)]
        out.append([name for name in order if _takes_part(config.platforms[name], i, total)])
    return out


def _takes_part(platform: PlatformConfig, round_index: int, rounds: int) -> bool:
    cap = platform.requests_per_run
    if cap is None or cap >= rounds:
        return True
    return (round_index + 1) * cap // rounds > round_index * cap // rounds


def autoscale_run_key(platform: str, concurrency: int) -> str:
    """`autoscale-<platform>-c<C>`: one autoscaling run per platform (paper profile)."""
    return f"autoscale-{platform}-c{concurrency}"


def autoscale_platforms(config: BenchConfig) -> list[str]:
    """The platforms the autoscaling experiment runs on: chosen by autoscale_platforms and reachable by kubectl
    (a kubectl group with a kubeconfig, a context and the Deployment the HPA scales), in the configuration's order."""
    chosen = config.knobs["autoscale_platforms"]
    return [p for p in config.platforms if p in chosen and (group := config.platforms[p].kubectl) is not None
            and all((group.kubeconfig, group.context, group.deployment))]


def coldstart_run_key(platform: str, repetition: int, restart: str = "docker") -> str:
    """`coldstart-<platform>-r<R>`; a kubectl restart adds its kind: coldstart-function-replicas_0_to_1-r1."""
    if restart == "docker":
        return f"coldstart-{platform}-r{repetition}"
    return f"coldstart-{platform}-{COLDSTART_KINDS[restart]}-r{repetition}"


def rate_run_key(platform: str, capacity_pct: float | None, rps: float | None, repetition: int = 1) -> str:
    """`rate-<platform>-<P>pct` (P % of the closed-loop capacity) or `rate-<platform>-<R>rps` (issue 13); a
    repetition after the first adds `-r<N>` (issue 24), so run keys written before repetitions existed still read
    as repetition 1 (rate_repetition)."""
    if repetition < 1:
        raise ValueError(f"a rate run's repetition is >= 1, got {repetition}")
    key = f"rate-{platform}-{capacity_pct:g}pct" if rps is None else f"rate-{platform}-{rps:g}rps"
    return key if repetition == 1 else f"{key}-r{repetition}"


RATE_REPETITION = re.compile(r"-r([0-9]+)$")


def rate_repetition(run_key: str) -> int:
    """The repetition a rate run key carries: N for a key ending in -r<N>, else 1 (every key before issue 24)."""
    match = RATE_REPETITION.search(run_key)
    return int(match.group(1)) if match else 1


def rate_search_key(platform: str) -> str:
    """`rate-search-<platform>`: the capacity search's own folder (its bracket and probe list); each probe is an
    ordinary rate run with its own key."""
    return f"rate-search-{platform}"


def warmup_concurrency(knobs: dict[str, Any]) -> int:
    return knobs["warmup_concurrency"] or max(knobs["concurrency"])


def rate_platforms(config: BenchConfig, knob: str = "rate_platforms") -> list[str]:
    """The platforms of the open-loop experiment, in the configuration's order (the rate_platforms knob; the
    capacity search's with knob="rate_search_platforms")."""
    chosen = config.knobs[knob]
    bounded = {n for n, p in config.platforms.items() if p.max_concurrency is not None}
    if chosen == "direct":
        return [n for n, p in config.platforms.items() if p.via is None and n not in bounded]
    return [n for n in config.platforms if n not in bounded and (chosen is None or n in chosen)]


def nowarmup_platforms(config: BenchConfig) -> list[str]:
    """Platforms whose kind has a warm-up switch and whose container the step can copy (docker restart)."""
    return [n for n, p in config.platforms.items()
            if config.kind(n).warmup_env and p.via is None and p.container and p.restart == "docker"]


def make_plan(config: BenchConfig, run_dir: Path | str) -> list[PlanItem]:
    """Every step in the order bench.yml runs them; `argv` is what follows `python -m analysis.bench`."""
    run_dir = str(run_dir)
    knobs = config.knobs
    names = list(config.platforms)
    steps: list[tuple] = []  # PlanItem's fields after index, in order; a trailing dict holds the typed settings

    def ab_step(experiment: str, platform: str, conc: int, rep: int, requests: int) -> None:
        argv = ["run-one", run_dir, "--experiment", experiment, "--platform", platform,
                "--concurrency", str(conc), "--repetition", str(rep)]
        steps.append((ab_run_key(experiment, platform, conc, rep), experiment, platform, conc, rep, requests, argv))

    def limits(platform: str) -> PlatformConfig:
        return config.platforms[platform]

    for platform in names:
        bound = limits(platform)
        ab_step("warmup", platform, min(warmup_concurrency(knobs), bound.max_concurrency or 10**9), 0,
                min(knobs["warmup_requests"], bound.requests_per_run or 10**9))
    for rep in range(1, knobs["repetitions"] + 1):
        order = names if rep % 2 == 1 else list(reversed(names))
        for conc in knobs["concurrency"]:
            for platform in order:
                if limits(platform).runs_at(conc):
                    ab_step("concurrency", platform, conc, rep,
                            limits(platform).requests_per_run or knobs["requests_per_run"])
    if knobs["stability_max_extra_repetitions"] and knobs["repetitions"] >= 2:  # issue 14: before probe/cold starts
        steps.append((EXTRA_REPETITIONS, EXTRA_REPETITIONS, "", None, None, 0, [EXTRA_REPETITIONS, run_dir]))
    if knobs["probe_requests"]:
        for platform in names:
            argv = ["probe", run_dir, "--platform", platform, "--requests", str(knobs["probe_requests"])]
            steps.append((probe_run_key(platform), "probe", platform, None, None, knobs["probe_requests"], argv))
    if knobs["paired_requests"]:  # issue 24: the headline, every platform alternated request by request
        rounds = paired_rounds(config)
        steps.append((PAIRED, PAIRED, "", None, None, sum(len(r) for r in rounds),
                      [PAIRED, run_dir, "--rounds", str(knobs["paired_requests"])]))
    # open-loop (issue 13): offered rates per platform, taken from the capacity the sweep above measured. Rate-major
    # (issue 24): each rate on every platform before the next rate, the platforms' order rotated by one from rate to
    # rate and from repetition to repetition, so drift over the experiment falls on every platform alike
    rated = rate_platforms(config)
    levels = [(p, None) for p in ([] if knobs["rate_rps"] else knobs["rate_capacity_pct"])] + [
        (None, r) for r in knobs["rate_rps"]]
    turn = 0
    for rep in range(1, knobs["rate_repetitions"] + 1):
        for pct, rps in levels:
            shift = turn % len(rated) if rated else 0
            turn += 1
            for platform in rated[shift:] + rated[:shift]:
                argv = ["rate-step", run_dir, "--platform", platform,
                        *(["--capacity-pct", f"{pct:g}"] if rps is None else ["--rps", f"{rps:g}"]),
                        *(["--repetition", str(rep)] if rep > 1 else [])]
                steps.append((rate_run_key(platform, pct, rps, rep), "rate", platform, None, rep,
                              0 if rps is None else round(rps * knobs["rate_duration_s"]), argv,
                              {"capacity_pct": pct, "rps": rps}))
    # issue 24: capacity at the objective by search, one platform after the other (each search is its own
    # bisection; its probes are rate runs outside the plan, raw/rate-<platform>-<R>rps[-r<N>]/)
    for platform in rate_platforms(config, "rate_search_platforms") if rated and levels else []:
        steps.append((rate_search_key(platform), "rate-search", platform, None, None, 0,
                      ["rate-search", run_dir, "--platform", platform,
                       "--budget-s", f"{knobs['rate_search_budget_s']:g}"]))
    # issue 11: the overload region (one short run per platform and concurrency), then the WARMUP_CALLS=0 variant
    for conc in knobs["overload_concurrency"]:
        for platform in names:
            if limits(platform).runs_at(conc):
                ab_step("overload", platform, conc, 1, knobs["overload_requests"])
    if knobs["bodylimit_bytes"]:
        for platform in names:
            if config.kind(platform).body_limit_check:
                steps.append((f"bodylimit-{platform}", "bodylimit", platform, None, None, 1,
                              ["bodylimit", run_dir, "--platform", platform]))
    for platform in nowarmup_platforms(config) if knobs["nowarmup_requests"] else []:
        argv = ["nowarmup", run_dir, "--platform", platform]
        steps.append((ab_run_key("nowarmup", platform, 1, 1), "nowarmup", platform, 1, 1,
                      knobs["nowarmup_requests"], argv))
    for rep in range(1, knobs["coldstart_repetitions"] + 1):
        for platform in names:
            for restart in config.platforms[platform].restart_kinds:
                argv = ["coldstart", run_dir, "--platform", platform, "--repetition", str(rep)]
                if restart != "docker":
                    argv += ["--restart", restart]
                steps.append((coldstart_run_key(platform, rep, restart), "coldstart", platform, None, rep, 1, argv,
                              {"restart": restart}))
    # autoscaling (paper profile), last: the HPA leaves the platform with more replicas than the runs above had
    for platform in autoscale_platforms(config):
        conc = knobs["autoscale_concurrency"]
        steps.append((autoscale_run_key(platform, conc), "autoscale", platform, conc, None, 0,
                      ["autoscale", run_dir, "--platform", platform]))
    return [PlanItem(i, *step[:7], **(step[7] if len(step) > 7 else {})) for i, step in enumerate(steps, start=1)]
