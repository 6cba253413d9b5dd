"""Autoscaling on a cluster (the paper profile): what the HorizontalPodAutoscaler does while ab loads a platform.

The sampler runs on the control node, beside ab, and reads the cluster through the platform's own kubectl
(analysis/bench/cluster.py `Kubectl`: explicit --kubeconfig, --context, --namespace). Each sample is one kubectl
process that gets the serving Deployment and its HPA together, so both counts come from the same instant:

    kubectl ... get deployment/<d> horizontalpodautoscalers.v1.autoscaling/<d> --output json

The HPA is read as autoscaling/v1 whatever version created it: the Function's HPA is an autoscaling/v2beta1 object
made by the Kubeless controller from the Function's spec, the app's an autoscaling/v1 one (roles/app_kubernetes);
the API server converts, and v1 has the one CPU figure both need (`status.currentCPUUtilizationPercentage`). Both
HPAs are named after the Deployment they scale (Kubeless names it after the function, which names its Deployment).
Field names follow the Kubernetes 1.10 API reference (DeploymentStatus, HorizontalPodAutoscalerStatus v1); the
fields marked omitempty there are absent when zero or unknown, and are read as 0 (replica counts) or empty (CPU).

Each sample is one JSON line of raw/<run_key>/autoscale.jsonl: the parsed counts, the phase (`before` the load,
`load`, `tail` after it), the epoch, and the Deployment's and HPA's `status` (and the HPA's `spec`) as kubectl
returned them; finalize turns the lines into autoscale.csv with t_s counted from the start of the load.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.bench.cluster import Kubectl

AUTOSCALE_FILE = "autoscale.jsonl"
HPA_FILE = "hpa.json"  # the HPA as it was found before the load
SAMPLE_TIMEOUT_S = 10.0  # one kubectl get; a slower one is recorded as an error and the next sample goes on
HPA_WAIT_S = 20.0  # how long the step looks for the HPA before it says the experiment cannot run
# ab -n of the load: ab's own value for -t (ab.c MAX_REQUESTS); the load is stopped by time (autoscale_duration_s),
# and -n only sizes ab's per-request table (-g), which -n 10^7 would make half a gigabyte.
MAX_REQUESTS = 50000


def hpa_resource(deployment: str) -> str:
    """The HPA of a Deployment, pinned to autoscaling/v1 (resource.version.group/name)."""
    return f"horizontalpodautoscalers.v1.autoscaling/{deployment}"


def sample_args(deployment: str) -> list[str]:
    """kubectl's arguments after the cluster flags: the Deployment and its HPA in one List."""
    return ["get", f"deployment/{deployment}", hpa_resource(deployment), "--output", "json"]


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_objects(doc: dict[str, Any]) -> dict[str, Any]:
    """The counts of one sample from `kubectl get ... --output json` (a List of the Deployment and the HPA, or one
    object alone). A missing object leaves its fields empty."""
    items = doc.get("items", []) if doc.get("kind") == "List" else [doc]
    deployment = next((i for i in items if i.get("kind") == "Deployment"), None)
    hpa = next((i for i in items if i.get("kind") == "HorizontalPodAutoscaler"), None)
    row: dict[str, Any] = dict.fromkeys(
        ("spec_replicas", "status_replicas", "ready_replicas", "hpa_min_replicas", "hpa_max_replicas",
         "hpa_target_cpu_pct", "hpa_current_replicas", "hpa_desired_replicas", "hpa_cpu_pct", "hpa_last_scale_utc"))
    if deployment is not None:
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        row["spec_replicas"] = _int(spec.get("replicas"))
        row["status_replicas"] = _int(status.get("replicas")) or 0  # omitempty: absent = 0
        row["ready_replicas"] = _int(status.get("readyReplicas")) or 0
    if hpa is not None:
        spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
        row.update(hpa_min_replicas=_int(spec.get("minReplicas")), hpa_max_replicas=_int(spec.get("maxReplicas")),
                   hpa_target_cpu_pct=_int(spec.get("targetCPUUtilizationPercentage")),
                   hpa_current_replicas=_int(status.get("currentReplicas")) or 0,
                   hpa_desired_replicas=_int(status.get("desiredReplicas")) or 0,
                   hpa_cpu_pct=_int(status.get("currentCPUUtilizationPercentage")),  # absent until metrics arrive
                   hpa_last_scale_utc=status.get("lastScaleTime"))
    return row


def raw_parts(doc: dict[str, Any]) -> dict[str, Any]:
    """What a sample keeps of kubectl's answer: each object's status, and the HPA's spec."""
    items = doc.get("items", []) if doc.get("kind") == "List" else [doc]
    kept: dict[str, Any] = {}
    for item in items:
        kind = str(item.get("kind", "?")).lower()
        kept[kind] = {"status": item.get("status")}
        if item.get("kind") == "HorizontalPodAutoscaler":
            kept[kind]["spec"] = item.get("spec")
    return kept


def find_hpa(kubectl: Kubectl, deployment: str, wait_s: float = HPA_WAIT_S, poll_s: float = 2.0
             ) -> tuple[dict[str, Any] | None, str | None]:
    """(the HPA object, None), or (None, why) when it is not there within wait_s (the Kubeless controller creates
    the function's HPA shortly after the Function is applied)."""
    deadline = time.monotonic() + wait_s
    while True:
        result = kubectl.run("get", hpa_resource(deployment), "--output", "json", timeout=SAMPLE_TIMEOUT_S)
        if result.returncode == 0:
            try:
                return json.loads(result.stdout), None
            except json.JSONDecodeError as exc:
                error = f"kubectl printed no JSON for {hpa_resource(deployment)} ({exc})"
        else:
            error = result.error or "kubectl failed"
        if time.monotonic() >= deadline:
            return None, error
        time.sleep(poll_s)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReplicaSampler:
    """Samples the Deployment and its HPA every `interval_s` seconds into a JSON-lines file, on a thread of its own.

    `start` takes the first sample before it returns (the state before the load); `phase` is written into each
    sample and set by the step (`load`, `tail`); `stop` ends the thread within one kubectl timeout.
    """

    def __init__(self, kubectl: Kubectl, deployment: str, interval_s: float, path: Path) -> None:
        self.kubectl = kubectl
        self.deployment = deployment
        self.interval_s = interval_s
        self.path = path
        self.phase = "before"
        self.count = 0
        self.errors = 0
        self.first_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="replica-sampler", daemon=True)
        self._file = None

    def argv(self) -> list[str]:
        return self.kubectl.argv(*sample_args(self.deployment))

    def start(self) -> ReplicaSampler:
        self._file = open(self.path, "a", encoding="utf-8")  # closed by stop()
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> dict[str, Any]:
        epoch = time.time()
        result = self.kubectl.run(*sample_args(self.deployment), timeout=SAMPLE_TIMEOUT_S)
        line: dict[str, Any] = {"epoch": round(epoch, 3), "utc": _utc(epoch), "phase": self.phase,
                                "kubectl_ms": round(result.elapsed_ms, 1)}
        error = result.error
        if result.returncode == 0:
            try:
                doc = json.loads(result.stdout)
                line.update(parse_objects(doc), objects=raw_parts(doc))
            except (json.JSONDecodeError, AttributeError) as exc:
                error = f"kubectl printed no JSON object ({exc})"
        if error:
            line["error"] = error
            self.errors += 1
            self.first_error = self.first_error or error
        self.count += 1
        if self._file is not None:
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
        return line

    def _loop(self) -> None:
        next_at = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self.sample()
            next_at += self.interval_s
            if next_at < time.monotonic():  # kubectl took longer than the interval: no burst to catch up
                next_at = time.monotonic() + self.interval_s

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(SAMPLE_TIMEOUT_S + 5)
        if self._file is not None:
            self._file.close()
            self._file = None
        return {"samples": self.count, "errors": self.errors, "first_error": self.first_error,
                "interval_s": self.interval_s, "argv": self.argv()}


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The lines of autoscale.jsonl; a line cut short by a kill is skipped."""
    if not path.exists():
        return []
    samples = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            samples.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return samples


def table_rows(run_dir: Path, done: dict[str, Any]) -> list[dict[str, Any]]:
    """autoscale.csv's rows of one finished autoscale step: t_s from the start of the load (negative before it)."""
    origin = done.get("started_epoch")
    rows = []
    for s in read_samples(run_dir / AUTOSCALE_FILE):
        if "epoch" not in s:
            continue
        t_s = round(s["epoch"] - origin, 3) if isinstance(origin, int | float) else None
        rows.append({"run_key": done["run_key"], "platform": done["platform"], "t_s": t_s,
                     **{k: s.get(k) for k in ("spec_replicas", "ready_replicas", "hpa_current_replicas",
                                             "hpa_desired_replicas", "hpa_cpu_pct")}})
    return rows


def scale_up(samples: list[dict[str, Any]], origin: float) -> dict[str, Any]:
    """When the HPA decided to scale up (desired > replicas before the load) and when the extra replica was ready,
    in seconds from the load's start; None when it never did. Resolution: the sample interval."""
    before = [s for s in samples if s.get("phase") == "before" and s.get("ready_replicas") is not None]
    start_ready = before[-1]["ready_replicas"] if before else None
    after = [s for s in samples if s.get("phase") != "before" and "epoch" in s]
    decided = next((s for s in after if start_ready is not None and (s.get("hpa_desired_replicas") or 0) > start_ready),
                   None)
    ready = next((s for s in after if start_ready is not None and (s.get("ready_replicas") or 0) > start_ready), None)
    return {"ready_before": start_ready,
            "ready_max": max((s.get("ready_replicas") or 0 for s in after), default=None),
            "decided_s": round(decided["epoch"] - origin, 3) if decided else None,
            "ready_s": round(ready["epoch"] - origin, 3) if ready else None}
