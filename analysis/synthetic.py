"""Write a *synthetic* results folder in the schema of analysis/RESULTS.md.

Two users: the summarization benchmark (``python -m analysis benchmark``: a million per-request rows) and the
generator of the small committed test fixtures (tests/fixtures/results/generate.py). The numbers imitate what
this project measures on two cores (see what-runs-here.md): a container answering in ~10 ms at c=1 and a
fork-per-request Kubeless function in ~40 ms, both CPU-bound on two cores, with the function's listen backlog of
5 producing ~1 s SYN-retransmit outliers at c >= 10. They are not measurements and the report says so in its
header (manifest ``profile`` is ``synthetic``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.bench import schema

MIB = 1024**2
T0_US = 1_796_385_600_000_000  # 2026-12-04T12:00:00Z in µs


@dataclass
class PlatformModel:
    """Per-request times in ms at c=1; queueing on ``cores`` cores stretches them as concurrency grows."""

    network_ms: float
    runtime_ms: float  # server time minus prediction time
    prediction_ms: float
    jitter: float  # lognormal sigma
    workers: int  # requests the server runs at once; the rest queue before its timer starts
    mem_base_bytes: float
    mem_per_inflight_bytes: float
    syn_outliers_from_c: int | None = None  # concurrency from which a full backlog causes 1 s retransmits


MODELS = {
    "function": PlatformModel(network_ms=2.0, runtime_ms=27.0, prediction_ms=9.0, jitter=0.18, workers=10,
                              mem_base_bytes=640 * MIB, mem_per_inflight_bytes=28 * MIB, syn_outliers_from_c=10),
    "container": PlatformModel(network_ms=1.5, runtime_ms=2.5, prediction_ms=6.0, jitter=0.15, workers=2,
                               mem_base_bytes=520 * MIB, mem_per_inflight_bytes=2 * MIB),
}


@dataclass
class Fault:
    """Failed requests to plant in one run, by cause, and served replies of another length."""

    non_2xx: int = 0
    reset: int = 0
    refused: int = 0
    empty_reply: int = 0  # connections closed with no reply
    length_mismatch: int = 0  # 2xx replies of another length: served, not errors

    @property
    def no_reply(self) -> int:
        return self.reset + self.refused + self.empty_reply

    @property
    def errors(self) -> int:
        return self.non_2xx + self.no_reply


@dataclass
class Plan:
    concurrency: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    repetitions: int = 5
    requests_per_run: int = 100
    warmup_requests: int = 20
    probe_requests: int = 10
    coldstart_repetitions: int = 3
    cores: int = 2
    seed: int = 1
    faults: dict[tuple[str, int, int], Fault] = field(default_factory=dict)  # (platform, c, rep) -> fault
    # sigma of a lognormal factor that scales all of one ab run's times: the repetition-to-repetition drift of a
    # real machine (its host's clock and neighbours), which requests of one run share
    rep_jitter: float = 0.0
    # sigma of a lognormal factor on the slow-mode share of each run: 0 plants exactly n/50 SYN-retry outliers per
    # run at c >= syn_outliers_from_c; above 0 each run draws its share (median 2 %) and then a binomial count, as a
    # real run's backlog overflows come and go with its moment
    slow_share_jitter: float = 0.0
    stop_after: int | None = None  # number of ab runs (warm-up included) after which the bench "died"
    # issue 24: rounds of the paired step (paired.csv; 0 writes none), and the sigma of the machine's slow speed
    # drift it sees: a lognormal factor that wanders from round to round (AR(1), PAIRED_DRIFT_RHO) and that both
    # requests of a round share
    paired_requests: int = 100
    paired_drift: float = 0.1


def _request_times(rng: np.random.Generator, m: PlatformModel, c: int, n: int, cores: int,
                   rep_jitter: float = 0.0, slow_share_jitter: float = 0.0) -> dict[str, np.ndarray]:
    service = m.runtime_ms + m.prediction_ms
    # Closed-loop ab keeps c requests in flight on `cores` CPUs: each takes ~c/cores services in all. Up to
    # `workers` of them share the CPUs inside the server (its timer runs); the rest wait in the accept queue
    # (the Kubeless runtime's thread pool, gunicorn's backlog), which the client sees and the server does not.
    stretch = max(c / cores, 1.0)
    cpu_stretch = max(min(c, m.workers) / cores, 1.0)
    noise = rng.lognormal(0.0, m.jitter, n)
    prediction = m.prediction_ms * rng.lognormal(0.0, m.jitter / 2, n) * min(cpu_stretch, 1.6)
    server = (service * noise * cpu_stretch) + (prediction - m.prediction_ms)
    queue = service * noise * (stretch - cpu_stretch)
    network = m.network_ms * rng.lognormal(0.0, 0.3, n) + queue
    syn = np.zeros(n)
    if m.syn_outliers_from_c is not None and c >= m.syn_outliers_from_c:
        if slow_share_jitter:  # a random count per run (Plan.slow_share_jitter)
            share = min(0.02 * float(rng.lognormal(0.0, slow_share_jitter)), 1.0)
            count = int(rng.binomial(n, share))
        else:
            count = max(1, n // 50)
        syn[rng.choice(n, size=count, replace=False)] = 1000.0  # SYN retransmit after a full backlog
    connect_raw = m.network_ms * 0.3 * noise
    if rep_jitter:  # one factor for the whole run: the machine's drift its requests share (Plan.rep_jitter)
        f = float(rng.lognormal(0.0, rep_jitter))
        server, prediction, network, connect_raw = server * f, prediction * f, network * f, connect_raw * f
    # the SYN retry after it: a kernel timer of fixed length, which neither the machine's drift nor its speed moves
    network += syn
    connect_raw += syn
    total = np.rint(server + network)
    connect = np.minimum(np.rint(connect_raw), total)
    processing = total - connect
    wait = np.maximum(processing - 1, 0)
    return {"total": total, "connect": connect, "processing": processing, "wait": wait, "server": server,
            "prediction": prediction}


def write_results(folder: Path, plan: Plan, *, run_id: str = "20261204T120000Z") -> Path:
    """Write the folder and return it (vectorised numpy/pandas: a million rows take 10-20 s on two cores)."""
    rng = np.random.default_rng(plan.seed)
    folder.mkdir(parents=True, exist_ok=True)
    platforms = list(MODELS)
    order: list[tuple[str, str, int, int, int]] = []  # experiment, platform, c, rep, n
    for p in platforms:  # warm-up at the largest concurrency, so every worker is warm
        order.append(("warmup", p, max(plan.concurrency), 0, plan.warmup_requests))
    for rep in range(1, plan.repetitions + 1):  # platforms interleaved per repetition, as bench.yml does
        for c in plan.concurrency:
            for p in platforms:
                order.append(("concurrency", p, c, rep, plan.requests_per_run))
    done = order if plan.stop_after is None else order[: plan.stop_after]

    runs, requests, predictions, resources = [], [], [], []
    clock_us = T0_US
    for experiment, p, c, rep, n in done:
        run, tables, duration_s = _ab_run(rng, plan, experiment, p, c, rep, n, clock_us)
        runs.append(run)
        requests.append(tables["requests"])
        predictions.append(tables["predictions"])
        resources.append(tables["resources"])
        clock_us += int(duration_s * 1e6) + 2_000_000

    stopped = plan.stop_after is not None
    _write(folder, schema.RUNS, pd.DataFrame(runs))
    _write(folder, schema.REQUESTS, pd.concat(requests, ignore_index=True))
    _write(folder, schema.PREDICTIONS, pd.concat(predictions, ignore_index=True))
    _write(folder, schema.RESOURCES, pd.concat(resources, ignore_index=True))
    probe, coldstart = _probe_and_coldstart(rng, plan)
    _write(folder, schema.PROBE, probe)
    if not stopped:  # cold starts run last, after the concurrency experiment
        _write(folder, schema.COLDSTART, coldstart)
    manifest = _manifest(plan, run_id, len(order), len(done), None if stopped else clock_us)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if not stopped and plan.paired_requests:  # issue 24: the paired step runs after the concurrency sweep
        _write_paired(folder, plan)
    return folder


def _write(folder: Path, table: schema.Table, frame: pd.DataFrame) -> None:
    """In the schema's column order; columns this generator does not model are left empty."""
    frame.reindex(columns=table.names).to_csv(folder / table.file, index=False)


def _ab_run(rng: np.random.Generator, plan: Plan, experiment: str, p: str, c: int, rep: int, n: int,
            clock_us: int) -> tuple[dict, dict[str, pd.DataFrame], float]:
    """One ab run: its runs.csv row, its rows of the per-request tables, and how long it took."""
    m = MODELS[p]
    fault = plan.faults.get((p, c, rep), Fault())
    t = _request_times(rng, m, c, n, plan.cores, plan.rep_jitter, plan.slow_share_jitter)
    key = f"{experiment}-{p}-c{c}-r{rep}"
    total = t["total"]
    order_idx = np.argsort(total, kind="stable")  # ab -g rows are sorted by ttime
    rounds = np.arange(n) // c
    start = clock_us + (rounds * total.mean() * 1000 + rng.uniform(0, 500, n)).astype(np.int64)
    duration_s = float(total.sum() / c / 1000 + 0.01)
    served = np.ones(n, dtype=np.int64)
    served[rng.choice(n, size=fault.no_reply, replace=False)] = 0  # failed attempts: no first byte
    wait = np.where(served == 1, t["wait"], 0)
    requests = pd.DataFrame({
        "run_key": key, "experiment": experiment, "platform": p, "concurrency": c, "repetition": rep,
        "start_s": start[order_idx] // 1_000_000, "connect_ms": t["connect"][order_idx],
        "processing_ms": t["processing"][order_idx], "total_ms": total[order_idx], "wait_ms": wait[order_idx],
        "served": served[order_idx],
    })
    ok_times = total[served == 1]
    pct = {q: (float(np.percentile(ok_times, q)) if ok_times.size >= schema.samples_needed(q) else None)
           for q in (50, 90, 95, 99)}
    ok = n - fault.errors
    ts = (clock_us / 1e6) + np.sort(rng.uniform(0, duration_s, ok))
    predictions = pd.DataFrame({"run_key": key, "platform": p, "ts": np.round(ts, 6),
                                "prediction_ms": np.round(t["prediction"][:ok], 3), "backend": "litert"})
    n_samples = max(1, int(duration_s / 0.5))
    cpu = np.clip(rng.normal(min(c, plan.cores) * 92.0 if c > 1 else 70.0, 6.0, n_samples), 1, 100 * plan.cores)
    mem = np.round(m.mem_base_bytes + m.mem_per_inflight_bytes * min(c, 10) * rng.uniform(0.6, 1.0, n_samples))
    limit = float(2 * 1024 * MIB)
    resources = pd.DataFrame({"run_key": key, "platform": p, "t_s": 0.5 * np.arange(1, n_samples + 1),
                              "cpu_pct": np.round(cpu, 1), "mem_bytes": mem, "mem_limit_bytes": limit})
    run = {
        "run_key": key, "experiment": experiment, "platform": p, "concurrency": c, "repetition": rep,
        "requests": n, "completed": n, "served": n - fault.errors, "errors": fault.errors,
        "non_2xx": fault.non_2xx, "reset": fault.reset, "refused": fault.refused, "empty_reply": fault.empty_reply,
        "timeout": 0, "length_mismatch": fault.length_mismatch,
        "failed_receive": fault.reset + fault.refused, "time_taken_s": round(duration_s, 3),
        "requests_per_s": round(n / duration_s, 2), "served_per_s": round((n - fault.errors) / duration_s, 2),
        "mean_ms": round(float(ok_times.mean()), 3), "min_ms": float(ok_times.min()), "max_ms": float(ok_times.max()),
        **{f"p{q}_ms": v for q, v in pct.items()},
        "server_mean_ms": round(float(t["server"][:ok].mean()), 3),
        "prediction_mean_ms": round(float(t["prediction"][:ok].mean()), 3),
        "cpu_mean_pct": round(float(cpu.mean()), 1), "cpu_max_pct": round(float(cpu.max()), 1),
        "mem_max_bytes": float(mem.max()), "mem_limit_bytes": limit,
        "started_utc": pd.Timestamp(clock_us, unit="us", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return run, {"requests": requests, "predictions": predictions, "resources": resources}, duration_s


def _probe_and_coldstart(rng: np.random.Generator, plan: Plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    probe, coldstart = [], []
    for p, m in MODELS.items():
        pred = m.prediction_ms * rng.lognormal(0, 0.08, plan.probe_requests)
        resp = pred + m.runtime_ms * rng.lognormal(0, 0.12, plan.probe_requests) + m.network_ms + 1.0
        probe.append(pd.DataFrame({"platform": p, "seq": np.arange(1, plan.probe_requests + 1), "status": 200,
                                   "response_ms": np.round(resp, 3), "prediction_ms": np.round(pred, 3)}))
        base = 3800.0 if p == "function" else 3100.0
        ms = base * rng.lognormal(0, 0.06, plan.coldstart_repetitions)
        coldstart.append(pd.DataFrame({"platform": p, "repetition": np.arange(1, plan.coldstart_repetitions + 1),
                                       "kind": "container_restart", "start_to_first_200_ms": np.round(ms, 1),
                                       "attempts": (ms // 250 + 1).astype(int)}))
    return pd.concat(probe, ignore_index=True), pd.concat(coldstart, ignore_index=True)


def _manifest(plan: Plan, run_id: str, planned: int, done: int, finished_us: int | None) -> dict:
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "schema_version": schema.SCHEMA_VERSION, "run_id": run_id,
        "status": "complete" if finished_us else "incomplete",
        "started_utc": pd.Timestamp(T0_US, unit="us", tz="UTC").strftime(stamp),
        "finished_utc": pd.Timestamp(finished_us, unit="us", tz="UTC").strftime(stamp) if finished_us else None,
        "profile": "synthetic",
        "config": {"concurrency": plan.concurrency, "repetitions": plan.repetitions,
                   "requests_per_run": plan.requests_per_run, "warmup_requests": plan.warmup_requests,
                   "probe_requests": plan.probe_requests, "coldstart_repetitions": plan.coldstart_repetitions,
                   "payload": "photo-500x375.jpg", "ab_timeout_s": 30, "keepalive": False,
                   "resource_interval_s": 0.5},
        "platforms": {
            "function": {"url": "http://127.0.0.1:30080/", "kind": "kubeless-runtime", "container": "kde-function",
                         "server_time_metric": "function_duration_seconds"},
            "container": {"url": "http://127.0.0.1:30081/predict", "kind": "gunicorn", "container": "kde-app",
                          "server_time_metric": "http_request_duration_seconds"},
        },
        "versions": {"ab": "2.3", "python": "3.11.7"},
        "host": {"cpu_model": "synthetic", "cores": plan.cores, "memory_bytes": 25_000_000_000},
        "git_commit": None,
        "runs_planned": planned, "runs_done": done,
    }


PAIRED_DRIFT_RHO = 0.95  # round-to-round correlation of the machine's log speed in the paired step


def paired_times(rng: np.random.Generator, plan: Plan) -> pd.DataFrame:
    """The paired step's requests (issue 24): in each round one request to every modelled platform, the order
    rotated from round to round, each timed like a probe request of that platform (prediction + runtime + network
    + 1 ms for the fresh connection) and scaled by the machine's speed in that round, which drifts slowly and which
    both requests of a round share."""
    names = list(MODELS)
    rows = []
    log_speed = 0.0
    keep = float(np.sqrt(1 - PAIRED_DRIFT_RHO**2))
    for i in range(plan.paired_requests):
        log_speed = PAIRED_DRIFT_RHO * log_speed + keep * plan.paired_drift * float(rng.standard_normal())
        for pos, p in enumerate(names[i % len(names):] + names[:i % len(names)], start=1):
            m = MODELS[p]
            pred = m.prediction_ms * float(rng.lognormal(0, 0.08))
            resp = (pred + m.runtime_ms * float(rng.lognormal(0, 0.12)) + m.network_ms + 1.0) * np.exp(log_speed)
            rows.append({"round": i + 1, "position": pos, "platform": p, "status": 200,
                         "response_ms": round(float(resp), 3), "prediction_ms": round(pred * np.exp(log_speed), 3)})
    return pd.DataFrame(rows)


def _write_paired(folder: Path, plan: Plan) -> None:
    """paired.csv, from its own random stream (the seed and 24) so that every other table stays as it was, and
    the knob in the manifest's configuration."""
    _write(folder, schema.PAIRED, paired_times(np.random.default_rng([plan.seed, 24]), plan))
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["config"]["paired_requests"] = plan.paired_requests
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
