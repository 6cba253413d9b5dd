"""Cold starts on a Kubernetes cluster through kubectl: the paper profile's `kubectl-scale` (the serving
Deployment scaled 0 -> 1) and `kubectl-redeploy` (the platform's objects deleted and applied again).

Every kubectl command names its cluster explicitly (`--kubeconfig`, `--context`, `--namespace` from the
platform's kubectl group, platforms.<name>.kubectl), so a cold start never acts on whatever context happens
to be current. A restart is written as an ordered list of actions (`stop_actions`, `start_actions`) before
anything runs; the runner executes them, times them, and records each command with its outcome in
coldstart.json. The list is also what the tests check, since no cluster runs on our machines.

Why the redeploy re-applies more than the Function: deleting a Function makes the http-trigger controller
delete every HTTPTrigger that points at it (kubeless/http-trigger v1.0.0-alpha.9,
pkg/controller/http_trigger_controller.go, `functionAddedDeletedUpdated` with deleted=true), and deleting an
HTTPTrigger deletes its Ingress (same file, `syncHTTPTrigger`: `DeleteIngress` on a trigger marked for
deletion). Re-creating only the Function leaves the function without a route: every probe gets 404. And
the order matters: `CreateIngress` (pkg/utils/k8sutil.go) first reads the function's Service and, when it
is not there yet, fails; `syncHTTPTrigger` only logs that error and does not retry, so an HTTPTrigger
applied before the controller made the Service gets no Ingress until the next resync. Hence: apply the
Function, wait for its Service, apply the HTTPTrigger, wait for its Ingress (named after the trigger).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analysis.bench.config import KUBECTL_RESTARTS, KubectlTarget, PlatformConfig

KUBECTL_TIMEOUT_S = 120
POLL_S = 0.2  # between two kubectl polls of a wait (each is a kubectl process of its own, ~0.1-0.3 s)
SAVED_DIR = "redeploy"  # raw/<run_key>/redeploy/<kind>-<name>.json: the objects applied again
# Metadata the API server owns; an object saved with them cannot be created again.
SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "selfLink", "generation", "finalizers",
                   "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "managedFields")
SERVER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)


class ClusterError(RuntimeError):
    """kubectl cannot do what the cold start needs (no kubeconfig, an object missing before the restart)."""


def kubectl_group(platform: PlatformConfig) -> KubectlTarget:
    """The platform's kubectl settings; a platform without the group cannot be reached through kubectl."""
    if platform.kubectl is None:
        raise ClusterError(f"platform {platform.name!r} has no kubectl settings (platforms.{platform.name}.kubectl)")
    return platform.kubectl


@dataclass(frozen=True)
class Kubectl:
    """kubectl bound to one cluster, context and namespace: `binary` and the global flags that name them."""

    binary: str
    cluster_flags: tuple[str, ...]

    @classmethod
    def for_platform(cls, platform: PlatformConfig) -> Kubectl:
        group = kubectl_group(platform)
        if not group.kubeconfig or not group.context:
            raise ClusterError(f"platform {platform.name!r}: kubectl needs 'kubectl.kubeconfig' and 'kubectl.context'")
        flags = ["--kubeconfig", group.kubeconfig, "--context", group.context]
        if group.namespace:
            flags += ["--namespace", group.namespace]
        return cls(group.bin, tuple(flags))

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *self.cluster_flags, *args]

    def run(self, *args: str, timeout: float = KUBECTL_TIMEOUT_S) -> CommandResult:
        argv = self.argv(*args)
        started = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError:
            return CommandResult(argv, None, "", f"{self.binary} is not on PATH (platforms.*.kubectl.bin)", 0.0)
        except subprocess.TimeoutExpired:
            return CommandResult(argv, None, "", f"took over {timeout:.0f} s", timeout * 1000.0)
        return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr,
                             (time.perf_counter() - started) * 1000.0)


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    elapsed_ms: float

    @property
    def error(self) -> str | None:
        if self.returncode == 0:
            return None
        return f"{' '.join(self.argv[5:])}: {self.stderr.strip()[-300:] or f'exit {self.returncode}'}"


# ----------------------------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Action:
    """One thing a restart does. verb: scale | delete | wait-gone | wait-no-pods | apply | wait-exists."""

    verb: str
    target: str  # "kind/name", or the label selector for wait-no-pods
    replicas: int | None = None  # scale
    why: str = ""

    def describe(self) -> str:
        extra = f" to {self.replicas}" if self.replicas is not None else ""
        return f"{self.verb} {self.target}{extra}"


def _kind(obj: str) -> str:
    """'httptriggers.kubeless.io/x' -> 'httptrigger'."""
    kind = obj.split("/", 1)[0].lower().split(".", 1)[0]
    return kind[:-1] if kind.endswith("s") else kind


def _name(obj: str) -> str:
    return obj.split("/", 1)[1]


def stop_actions(platform: PlatformConfig, restart: str) -> list[Action]:
    """What takes the platform down before the clock starts; it ends when no pod is left."""
    group = kubectl_group(platform)
    if restart == "kubectl-scale":
        return [Action("scale", f"deployment/{group.deployment}", replicas=0),
                Action("wait-no-pods", str(group.selector))]
    if restart == "kubectl-redeploy":
        objects = list(reversed(group.redeploy))  # the trigger before the function it points at
        actions = [Action("delete", obj) for obj in objects]
        actions += [Action("wait-gone", obj) for obj in objects]
        deployment = f"deployment/{group.deployment}"
        if deployment not in objects:  # the Function's Deployment, removed by the controller / garbage collector
            actions.append(Action("wait-gone", deployment))
        actions.append(Action("wait-no-pods", str(group.selector)))
        return actions
    raise ClusterError(f"restart {restart!r} is not a kubectl restart ({', '.join(KUBECTL_RESTARTS)})")


def start_actions(platform: PlatformConfig, restart: str, saved: dict[str, dict[str, Any]] | None = None
                  ) -> list[Action]:
    """What brings it back, timed from the first action to the first HTTP 200.

    For a redeploy `saved` holds the objects as they were before the delete (`save_objects`); an HTTPTrigger
    is applied only once the Service of its function exists, and is followed by a wait for its Ingress.
    """
    group = kubectl_group(platform)
    if restart == "kubectl-scale":
        return [Action("scale", f"deployment/{group.deployment}", replicas=1)]
    if restart != "kubectl-redeploy":
        raise ClusterError(f"restart {restart!r} is not a kubectl restart ({', '.join(KUBECTL_RESTARTS)})")
    saved = saved or {}
    actions = []
    for obj in group.redeploy:
        if _kind(obj) == "httptrigger":
            function = ((saved.get(obj) or {}).get("spec") or {}).get("function-name") or _name(obj)
            actions.append(Action("wait-exists", f"service/{function}",
                                  why="the http-trigger controller creates the Ingress only if the Service exists"))
            actions.append(Action("apply", obj))
            actions.append(Action("wait-exists", f"ingress/{_name(obj)}",
                                  why="the route: the Ingress the http-trigger controller makes of the trigger"))
        else:
            actions.append(Action("apply", obj))
    return actions


# --------------------------------------------------------------------------------------- saved objects
def clean_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A live object as it can be created again: no status, no server-owned metadata."""
    obj = json.loads(json.dumps(obj))
    obj.pop("status", None)
    meta = obj.get("metadata") or {}
    for key in SERVER_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    for key in SERVER_ANNOTATIONS:
        annotations.pop(key, None)
    if "annotations" in meta and not annotations:
        del meta["annotations"]
    return obj


def saved_path(out_dir: Path, obj: str) -> Path:
    return out_dir / SAVED_DIR / f"{_kind(obj)}-{_name(obj)}.json"


# ---------------------------------------------------------------------------------------------- executor
def check_kubeconfig(platform: PlatformConfig) -> None:
    """The kubeconfig must be there before a cold start touches anything."""
    kubeconfig = platform.kubectl.kubeconfig if platform.kubectl else None
    if not kubeconfig or not Path(kubeconfig).is_file():
        raise ClusterError(f"platform {platform.name!r}: kubeconfig {kubeconfig} does not exist (the paper "
                           "profile's deploy phase writes build/kubeconfig/<vm>.yaml: ansible-playbook -i "
                           "inventory/paper site.yml --tags deploy)")


@dataclass
class ClusterRestart:
    """Runs a kubectl restart's actions and keeps a record of every command."""

    platform: PlatformConfig
    restart: str
    out_dir: Path
    poll_s: float = POLL_S
    kubectl: Kubectl = field(init=False)
    saved: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)
    log: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kubectl = Kubectl.for_platform(self.platform)

    def save_objects(self) -> None:
        """Keep a redeploy's objects as they are now (raw/<run_key>/redeploy/), to apply them again after the
        delete; fail before anything is deleted when one is missing."""
        if self.restart != "kubectl-redeploy":
            return
        (self.out_dir / SAVED_DIR).mkdir(parents=True, exist_ok=True)
        for obj in kubectl_group(self.platform).redeploy:
            result = self._run("save", obj, "get", obj, "--output", "json")
            if result.returncode != 0:
                raise ClusterError(f"platform {self.platform.name!r}: cannot read {obj} before deleting it "
                                   f"({result.error}). Deploy it again first (the paper profile's deploy phase: "
                                   "ansible-playbook -i inventory/paper site.yml --tags deploy)")
            self.saved[obj] = clean_object(json.loads(result.stdout))
            saved_path(self.out_dir, obj).write_text(json.dumps(self.saved[obj], indent=2) + "\n", encoding="utf-8")

    def stop(self, timeout_s: float) -> tuple[float, str | None]:
        """(ms, first error) of taking the platform down; waits are bounded by timeout_s."""
        started = time.perf_counter()
        error = self._run_all(stop_actions(self.platform, self.restart), started + timeout_s)
        return (time.perf_counter() - started) * 1000.0, error

    def start(self, deadline: float) -> tuple[float, str | None]:
        """(ms, first error) of bringing it back. Every apply runs even after a wait failed, so the platform
        is left deployed and reachable whatever happened."""
        started = time.perf_counter()
        error = self._run_all(start_actions(self.platform, self.restart, self.saved), deadline)
        return (time.perf_counter() - started) * 1000.0, error

    def recover(self) -> None:
        """After an interruption: bring back what a stop took down (no waits)."""
        for action in start_actions(self.platform, self.restart, self.saved):
            if action.verb in ("scale", "apply") and action.target not in self.applied:
                self._do(action, time.perf_counter() + KUBECTL_TIMEOUT_S)

    def _run_all(self, actions: list[Action], deadline: float) -> str | None:
        first_error = None
        for action in actions:
            if first_error and action.verb.startswith("wait"):
                continue  # a wait after an error only delays the applies that follow
            error = self._do(action, deadline)
            first_error = first_error or error
        return first_error

    def _do(self, action: Action, deadline: float) -> str | None:
        if action.verb == "scale":
            result = self._run(action.describe(), action.target, "scale", action.target,
                               f"--replicas={action.replicas}")
            if result.returncode == 0 and action.replicas:
                self.applied.add(action.target)
            return result.error
        if action.verb == "delete":
            return self._run(action.describe(), action.target, "delete", action.target, "--ignore-not-found").error
        if action.verb == "apply":
            path = saved_path(self.out_dir, action.target)
            result = self._run(action.describe(), action.target, "apply", "--filename", str(path))
            if result.returncode == 0:
                self.applied.add(action.target)
            return result.error
        if action.verb in ("wait-gone", "wait-exists"):
            want = action.verb == "wait-exists"
            return self._wait(action, deadline, lambda: self._exists(action.target) == want)
        if action.verb == "wait-no-pods":
            return self._wait(action, deadline, lambda: self._no_pods(action.target))
        raise ClusterError(f"unknown action {action.verb!r}")

    def _wait(self, action: Action, deadline: float, done: Any) -> str | None:
        started = time.perf_counter()
        polls = 0
        while True:
            polls += 1
            if done():
                self.log.append({"action": action.describe(), "polls": polls,
                                 "ms": round((time.perf_counter() - started) * 1000.0, 3)})
                return None
            if time.perf_counter() >= deadline:
                error = f"{action.describe()}: still not so after {polls} polls ({action.why or 'timed out'})"
                self.log.append({"action": action.describe(), "polls": polls, "error": error,
                                 "ms": round((time.perf_counter() - started) * 1000.0, 3)})
                return error
            time.sleep(self.poll_s)

    def _exists(self, obj: str) -> bool | None:
        result = self.kubectl.run("get", obj, "--output", "name", "--ignore-not-found", timeout=30)
        return bool(result.stdout.strip()) if result.returncode == 0 else None

    def _no_pods(self, selector: str) -> bool:
        result = self.kubectl.run("get", "pods", "--selector", selector, "--output", "name", timeout=30)
        return result.returncode == 0 and not result.stdout.strip()

    def _run(self, what: str, target: str, *args: str) -> CommandResult:
        result = self.kubectl.run(*args)
        self.log.append({"action": what, "argv": result.argv, "returncode": result.returncode,
                         "ms": round(result.elapsed_ms, 3), "error": result.error})
        return result

    def record(self) -> dict[str, Any]:
        return {"restart": self.restart, "kubectl": asdict(self.kubectl), "commands": self.log,
                "saved_objects": sorted(str(saved_path(self.out_dir, o).relative_to(self.out_dir))
                                        for o in self.saved)}
