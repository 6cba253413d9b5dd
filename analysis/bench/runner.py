"""The benchmark's steps: one ab run, the latency probe, the paired step, one cold start. Each writes
raw/<run_key>/ and done.json last; a step whose done.json exists is skipped, a folder without one is a leftover
of an interrupted step and is discarded before the step runs again (the paired step keeps the rounds it completed
and goes on from there).

A step that measured a failure (ab aborted, a request refused, a cold start that never answered) has
still done its job: it records the failure and returns normally. Only problems of the harness itself
(ab missing, the run folder broken) raise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.bench import ab, layers, reference, schema, system
from analysis.bench.client import DockerError, docker_inspect, request
from analysis.bench.cluster import ClusterError, ClusterRestart, check_kubeconfig, kubectl_group
from analysis.bench.config import (
    COLDSTART_KINDS,
    PAIRED,
    RESTARTS,
    PlatformConfig,
    ab_run_key,
    coldstart_run_key,
    paired_rounds,
    probe_run_key,
)
from analysis.bench.logs import LogSource, log_source, prediction_records
from analysis.bench.manifest import DONE, RunFolder, utc_now, write_json
from analysis.bench.metrics import scrape, server_mean_ms
from analysis.bench.resources import RESOURCES_FILE, ResourceError, ResourceSampler, resource_source
from analysis.bench.schema import SCHEMA_VERSION

PROBE_FILE = "probe.jsonl"
PAIRED_FILE = "paired.jsonl"  # issue 24: raw/paired/paired.jsonl, one line per request
COLDSTART_FILE = "coldstart.json"
METRICS_BEFORE = "metrics.before.txt"
METRICS_AFTER = "metrics.after.txt"
DOCKER_TIMEOUT_S = 120
# ab-run experiments: the discarded warm-up, the paper's matrix, and (issue 11) the overload region and the
# WARMUP_CALLS=0 variant
AB_EXPERIMENTS = ("warmup", "concurrency", "overload", "nowarmup")


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived; the step in progress is abandoned without a done.json."""


class StepError(RuntimeError):
    """The harness cannot run a step (bad arguments, a platform missing from the configuration)."""


@contextmanager
def interruptible():
    """Turn SIGTERM (what Ansible and timeouts send) into Interrupted, as SIGINT already is."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class StepResult:
    run_key: str
    skipped: bool
    line: str


def _epoch_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _position(folder: RunFolder, run_key: str) -> str:
    plan = folder.plan()
    for item in plan:
        if item.run_key == run_key:
            return f"[{item.index}/{len(plan)}]"
    return "[not in plan]"


def _platform(folder: RunFolder, name: str) -> PlatformConfig:
    try:
        return folder.config.platforms[name]
    except KeyError:
        raise StepError(f"platform {name!r} is not in this run's configuration "
                        f"(it has {', '.join(folder.config.platforms)})") from None


def ab_command(folder: RunFolder, url: str, requests: int, concurrency: int) -> ab.AbCommand:
    """ab as every closed-loop step runs it: the run's payload POSTed as image/jpeg, with the run's ab knobs."""
    knobs = folder.config.knobs
    return ab.AbCommand(url=url, requests=requests, concurrency=concurrency, post_file=folder.payload_path,
                        content_type="image/jpeg", socket_timeout_s=knobs["ab_timeout_s"],
                        keepalive=knobs["keepalive"], accept_variable_length=knobs["accept_variable_length"])


def _prepare(folder: RunFolder, run_key: str) -> Path | None:
    """The empty folder for a step, or None when the step is already done."""
    out = folder.run_dir(run_key)
    if (out / DONE).exists():
        return None
    if out.exists():
        print(f"{run_key}: discarding the unfinished attempt left by an interrupted run", flush=True)
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def _finish(folder: RunFolder, out: Path, record: dict[str, Any]) -> None:
    write_json(out / DONE, {"schema_version": SCHEMA_VERSION, **record})
    folder.update(runs_done=folder.count_done())


def _observers(folder: RunFolder, platform: PlatformConfig, out: Path
               ) -> tuple[LogSource, str | None, ResourceSampler | None, dict[str, Any]]:
    """What a step records around its load besides the load generator's output (ab runs here, open-loop runs in
    rate.py): the platform's log source, /metrics scraped before the load (its error for done.json), and the
    CPU/memory sampler, not started yet (None without a source), with its record so far."""
    knobs = folder.config.knobs
    logs = log_source(platform, folder.config.docker_host)
    metrics_before_error = _scrape(platform, out, METRICS_BEFORE, knobs["request_timeout_s"])
    sampler = None
    resources_info: dict[str, Any] = {"source": platform.resource_source}
    try:
        source = resource_source(platform, folder.config.docker_host)
        if source is not None:
            sampler = ResourceSampler(source, knobs["resource_interval_s"], out / RESOURCES_FILE)
    except ResourceError as exc:
        resources_info["error"] = str(exc)
    return logs, metrics_before_error, sampler, resources_info


def _scrape(platform: PlatformConfig, out: Path, name: str, timeout: float) -> str | None:
    """Write /metrics to `name`; return the error, if any, for done.json."""
    if not platform.metrics_url:
        return "no metrics_url configured"
    text, error = scrape(platform.metrics_url, timeout)
    if text is not None:
        (out / name).write_text(text, encoding="utf-8")
    return error


# ------------------------------------------------------------------------------------------- ab runs
def run_one(folder: RunFolder, experiment: str, platform_name: str, concurrency: int, repetition: int,
            requests: int | None = None, platform: PlatformConfig | None = None,
            run_timeout_s: float | None = None) -> StepResult:
    """One ab run with /metrics before and after, resource sampling during, and the server's log lines.

    `platform` replaces the configured one (the WARMUP_CALLS=0 variant's temporary container, issue 11)."""
    if experiment not in AB_EXPERIMENTS:
        raise StepError(f"experiment must be one of {', '.join(AB_EXPERIMENTS)}, got {experiment!r}")
    if (experiment == "warmup") != (repetition == 0):
        raise StepError("a warm-up run has repetition 0 and only a warm-up run has")
    platform = platform or _platform(folder, platform_name)
    knobs = folder.config.knobs
    if requests is None:
        requests = (min(knobs["warmup_requests"], platform.requests_per_run or knobs["warmup_requests"])
                    if experiment == "warmup" else platform.requests_per_run or knobs["requests_per_run"])
    run_key = ab_run_key(experiment, platform_name, concurrency, repetition)
    position = _position(folder, run_key)
    out = _prepare(folder, run_key)
    if out is None:
        return StepResult(run_key, True, f"{position} {run_key}: already done")
    command = ab_command(folder, platform.url, requests, concurrency)
    serving, placement = system.where(folder.config, platform)  # issue 14: what serves, and where ab runs
    command = replace(command, cpus=placement["load_generator_cpus"])
    ab.find_ab(command.ab)  # a missing ab is the harness's problem: fail before touching the service
    speed = reference.measure()  # issue 14: how fast the machine itself is right now, apart from the servers
    logs, metrics_before_error, sampler, resources_info = _observers(folder, platform, out)
    mark = logs.mark()
    ingress = layers.IngressLogs(platform.ingress_dir) if platform.ingress_dir else None  # issue 11
    sync_error = layers.sync_endpoint(platform.ingress_dir) if platform.ingress_dir else None
    ingress_mark = ingress.mark() if ingress else None
    if sampler is not None:
        sampler.start()  # its baseline sample is taken before the load starts
    started = time.time()
    watch = system.Watch(out, knobs["busy_cpu_pct"], serving, placement).start()
    try:
        result = ab.run_ab(command, out, timeout_s=run_timeout_s or knobs["run_timeout_s"], check=False)
    finally:
        system_info = watch.stop()
        if sampler is not None:
            resources_info = sampler.stop()
    finished = time.time()
    metrics_after_error = _scrape(platform, out, METRICS_AFTER, knobs["request_timeout_s"])
    time.sleep(knobs["log_settle_s"])
    logs_info = logs.collect(mark, out)
    if ingress is not None and ingress_mark is not None:
        logs_info["ingress"] = {**ingress.collect(ingress_mark, out), "sync_error": sync_error}

    summary = _run_summary(result, out, platform)
    _finish(folder, out, {
        "run_key": run_key, "step": "ab", "experiment": experiment, "platform": platform_name,
        "concurrency": concurrency, "repetition": repetition, "requests": requests,
        "started_utc": _epoch_utc(started), "finished_utc": _epoch_utc(finished),
        "started_epoch": started, "finished_epoch": finished,
        "outcome": result.outcome, "error": result.error,
        "ab": {"argv": result.argv, "returncode": result.returncode, "wall_s": result.wall_s,
               "completed_before_abort": result.completed_before_abort},
        "metrics": {"url": platform.metrics_url, "before_error": metrics_before_error,
                    "after_error": metrics_after_error},
        "logs": logs_info, "resources": resources_info, "summary": summary,
        "system": system_info,  # issue 14: what competed during the run (raw/<run_key>/system.json in full)
        "reference": speed,  # issue 14: the machine's speed on a fixed workload just before the run
    })
    return StepResult(run_key, False, f"{position} {run_key}: {_progress(result, summary)}"
                      + (f" — BUSY: {'; '.join(system_info['reasons'])}" if system_info.get("busy") else ""))


def _run_summary(result: ab.AbResult, out: Path, platform: PlatformConfig) -> dict[str, Any]:
    s = result.summary
    predictions = [r.get("prediction_ms") for r in prediction_records(out)]
    predictions = [p for p in predictions if isinstance(p, int | float)]
    return {
        "completed": s.completed if s else None,
        "errors": result.classified.errors if result.classified else None,
        "non_2xx": s.non_2xx if s else None,
        "requests_per_s": s.requests_per_s if s else None,
        "p50_ms": result.percentile(50),
        "server_mean_ms": server_mean_ms(out / METRICS_BEFORE, out / METRICS_AFTER, platform.server_time_metric),
        "predictions_logged": len(predictions),
        "prediction_mean_ms": sum(predictions) / len(predictions) if predictions else None,
    }


def _progress(result: ab.AbResult, summary: dict[str, Any]) -> str:
    s, c = result.summary, result.classified
    if s is None or c is None:
        return f"ABORTED: {result.error}"
    causes = ", ".join(f"{name.replace('_', ' ')} {getattr(c, name)}" for name in schema.ERROR_CAUSES
                       if getattr(c, name))
    text = (f"{s.requests_per_s or 0:.1f} req/s, p50 {_ms(result.percentile(50))}, "
            f"errors {c.errors}" + (f" ({causes})" if causes else ""))
    if c.length_mismatch:
        text += f", {c.length_mismatch} 2xx of another length (served)"
    if summary.get("server_mean_ms") is not None:
        text += f", server mean {summary['server_mean_ms']:.1f} ms"
    if summary.get("prediction_mean_ms") is not None:
        text += f", prediction mean {summary['prediction_mean_ms']:.1f} ms"
    if result.error:
        text += f" — {result.outcome.upper()}: {result.error}"
    return text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


# --------------------------------------------------------------------------------------------- probe
def _timed_post(platform: PlatformConfig, body: bytes, timeout: float) -> dict[str, Any]:
    """One POST of the payload on its own connection, timed by the client: the probe's and the paired step's
    line (without its position), with the prediction_ms the service reported and why it failed, if it did."""
    sent = time.time()
    resp = request("POST", platform.url, body, "image/jpeg", timeout=timeout)
    prediction_ms, error, model_sha256 = None, resp.error, None
    if resp.status == 200:
        try:
            prediction_ms = float(resp.json()["prediction_ms"])
            model_sha256 = resp.json().get("model_sha256")  # which model answered (compare checks it)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            error = f"no prediction_ms in the 200 response: {exc}"
    elif resp.status is not None:
        error = f"HTTP {resp.status}: {resp.body[:200].decode('utf-8', 'replace')}"
    return {"sent_utc": _epoch_utc(sent), "status": resp.status, "response_ms": round(resp.elapsed_ms, 3),
            "prediction_ms": prediction_ms, "response_bytes": len(resp.body), "model_sha256": model_sha256,
            "error": error}


def probe(folder: RunFolder, platform_name: str, requests: int | None = None) -> StepResult:
    """N sequential requests, each on its own connection, timed by the client (paper Table 1)."""
    platform = _platform(folder, platform_name)
    knobs = folder.config.knobs
    requests = knobs["probe_requests"] if requests is None else requests
    if requests < 1:
        raise StepError(f"--requests must be at least 1, got {requests}")
    run_key = probe_run_key(platform_name)
    position = _position(folder, run_key)
    out = _prepare(folder, run_key)
    if out is None:
        return StepResult(run_key, True, f"{position} {run_key}: already done")
    body = folder.payload_path.read_bytes()
    logs = log_source(platform, folder.config.docker_host)
    metrics_before_error = _scrape(platform, out, METRICS_BEFORE, knobs["request_timeout_s"])
    mark = logs.mark()
    started = time.time()
    rows = []
    with open(out / PROBE_FILE, "w", encoding="utf-8") as f:
        for seq in range(1, requests + 1):
            row = {"seq": seq, **_timed_post(platform, body, knobs["request_timeout_s"])}
            f.write(json.dumps(row) + "\n")
            f.flush()
            rows.append(row)
    finished = time.time()
    metrics_after_error = _scrape(platform, out, METRICS_AFTER, knobs["request_timeout_s"])
    time.sleep(knobs["log_settle_s"])
    logs_info = logs.collect(mark, out)
    ok = [r for r in rows if r["status"] == 200 and r["error"] is None]
    server = server_mean_ms(out / METRICS_BEFORE, out / METRICS_AFTER, platform.server_time_metric)
    summary = {
        "requests": requests, "ok": len(ok),
        "response_mean_ms": sum(r["response_ms"] for r in ok) / len(ok) if ok else None,
        "prediction_mean_ms": sum(r["prediction_ms"] for r in ok) / len(ok) if ok else None,
        "server_mean_ms": server,
    }
    _finish(folder, out, {
        "run_key": run_key, "step": "probe", "platform": platform_name, "requests": requests,
        "started_utc": _epoch_utc(started), "finished_utc": _epoch_utc(finished),
        "started_epoch": started, "finished_epoch": finished,
        "outcome": "ok" if len(ok) == requests else "errors", "error": None if ok else "no request succeeded",
        "metrics": {"url": platform.metrics_url, "before_error": metrics_before_error,
                    "after_error": metrics_after_error},
        "logs": logs_info, "summary": summary,
    })
    if ok:
        line = (f"{len(ok)}/{requests} ok, response mean {summary['response_mean_ms']:.1f} ms "
                f"(min {min(r['response_ms'] for r in ok):.1f}, max {max(r['response_ms'] for r in ok):.1f}), "
                f"prediction mean {summary['prediction_mean_ms']:.1f} ms")
    else:
        line = f"0/{requests} ok — first error: {rows[0]['error']}"
    return StepResult(run_key, False, f"{position} {run_key}: {line}")


# --------------------------------------------------------------------------------------- paired (issue 24)
def paired(folder: RunFolder, rounds: int | None = None) -> StepResult:
    """The headline's measurement: `rounds` rounds, each one sequential request to every platform of the run on
    its own connection (the probe's request), the order rotated from round to round (config.paired_rounds, which
    also says which rounds a bounded platform takes part in). The two requests of a pair are sent moments apart,
    so a slow drift of the machine's speed hits both alike and cancels in their ratio, which the block probe (ten
    requests to one platform, then ten to the other) cannot do.

    Every request is one line of raw/paired/paired.jsonl, written and flushed as it is measured. An interrupted
    step keeps its complete rounds: run again, it drops the round that was cut short and goes on from there (a
    pair is only ever compared within its round); done.json records where it resumed.
    """
    knobs = folder.config.knobs
    rounds = knobs["paired_requests"] if rounds is None else rounds
    if rounds < 1:
        raise StepError(f"--rounds must be at least 1, got {rounds}")
    schedule = paired_rounds(folder.config, rounds)
    run_key = PAIRED
    position = _position(folder, run_key)
    if folder.is_done(run_key):
        return StepResult(run_key, True, f"{position} {run_key}: already done")
    out = folder.run_dir(run_key)
    kept = _complete_rounds(out / PAIRED_FILE, schedule) if out.exists() else []
    if out.exists():
        print(f"{run_key}: resuming after round {len(kept) and kept[-1]['round']} (the rounds an interrupted run "
              "completed are kept)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    body = folder.payload_path.read_bytes()
    timeout = knobs["request_timeout_s"]
    started = time.time()
    rows = list(kept)
    with open(out / PAIRED_FILE, "w", encoding="utf-8") as f:
        for row in kept:  # rewritten without the round that was cut short
            f.write(json.dumps(row) + "\n")
        f.flush()
        for index in range(len({r["round"] for r in kept}), rounds):
            for pos, name in enumerate(schedule[index], start=1):
                row = {"round": index + 1, "position": pos, "platform": name,
                       **_timed_post(folder.config.platforms[name], body, timeout)}
                f.write(json.dumps(row) + "\n")
                f.flush()
                rows.append(row)
    finished = time.time()
    summary = _paired_summary(folder, rows)
    failed = sum(s["requests"] - s["ok"] for s in summary["platforms"].values())
    # platforms with requests_per_run below the rounds take part in that many rounds only (config.paired_rounds)
    bounded = {name: sum(name in r for r in schedule) for name in folder.config.platforms
               if sum(name in r for r in schedule) < rounds}
    _finish(folder, out, {
        "run_key": run_key, "step": PAIRED, "platform": None, "rounds": rounds, "requests": len(rows),
        "started_utc": _epoch_utc(started), "finished_utc": _epoch_utc(finished),
        "started_epoch": started, "finished_epoch": finished,
        "resumed_after_round": len({r["round"] for r in kept}) if kept else None,
        "outcome": "ok" if not failed else "errors", "error": None if not failed else f"{failed} request(s) failed",
        "bounded_rounds": bounded, "summary": summary,
    })
    parts = [f"{name} {s['ok']}/{s['requests']} ok" for name, s in summary["platforms"].items()]
    parts += [f"{name}/{summary['baseline']} median ratio {r['median_ratio']:.2f} over {r['pairs']} pairs"
              for name, r in summary["ratios"].items() if r["median_ratio"] is not None]
    return StepResult(run_key, False, f"{position} {run_key}: {rounds} rounds, {'; '.join(parts)}")


def _complete_rounds(path: Path, schedule: list[list[str]]) -> list[dict[str, Any]]:
    """The lines of the rounds an interrupted paired step finished, in order; nothing after the first round that
    is not whole (a line cut off mid-write included)."""
    if not path.exists():
        return []
    by_round: dict[int, list[dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        by_round.setdefault(int(row["round"]), []).append(row)
    kept: list[dict[str, Any]] = []
    for index, names in enumerate(schedule, start=1):
        got = by_round.get(index, [])
        if [r["platform"] for r in got] != names:
            break
        kept.extend(got)
    return kept


def _paired_summary(folder: RunFolder, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests and successes per platform, and, for the progress line and done.json only, each other platform's
    median per-round ratio to the baseline (the report's statistics are analysis/headline.py's, from paired.csv)."""
    platforms = folder.config.platforms
    ok = {(r["round"], r["platform"]): r["response_ms"] for r in rows if r["status"] == 200 and r["error"] is None}
    per = {name: {"requests": sum(1 for r in rows if r["platform"] == name),
                  "ok": sum(1 for (_, p) in ok if p == name)} for name in platforms}
    baseline = next((n for n, p in platforms.items() if p.role == "baseline"), None)
    ratios: dict[str, dict[str, Any]] = {}
    for name in platforms:
        if baseline is None or name == baseline:
            continue
        values = sorted(ok[(rnd, name)] / ok[(rnd, baseline)] for (rnd, p) in ok
                        if p == name and (rnd, baseline) in ok and ok[(rnd, baseline)] > 0)
        median = None
        if values:
            mid = len(values) // 2
            median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
        ratios[name] = {"pairs": len(values), "median_ratio": median}
    return {"platforms": per, "baseline": baseline, "ratios": ratios}


# ---------------------------------------------------------------------------------------- cold start
def _docker(argv: list[str], docker_host: str) -> tuple[float, str | None]:
    """Run a docker CLI command; (milliseconds it took, error or None)."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=DOCKER_TIMEOUT_S,
                              env={**os.environ, "DOCKER_HOST": docker_host}, check=False)
    except FileNotFoundError:
        return 0.0, "the docker command is not on PATH"
    except subprocess.TimeoutExpired:
        return DOCKER_TIMEOUT_S * 1000.0, f"docker {' '.join(argv)} took over {DOCKER_TIMEOUT_S} s"
    elapsed = (time.perf_counter() - started) * 1000.0
    if proc.returncode != 0:
        return elapsed, f"docker {' '.join(argv)}: {proc.stderr.strip()[-300:]}"
    return elapsed, None


def _poll_first_200(platform: PlatformConfig, body: bytes, t0: float, knobs: dict[str, Any]
                    ) -> tuple[int, Counter[str], dict[str, Any] | None]:
    """POST until an HTTP 200 or the deadline; (attempts, what each failed attempt got, the 200's timings)."""
    attempts = 0
    outcomes: Counter[str] = Counter()
    deadline = t0 + knobs["coldstart_timeout_s"]
    max_attempts = int(knobs["coldstart_timeout_s"] / max(knobs["coldstart_poll_interval_s"], 0.01)) + 100
    while time.perf_counter() < deadline and attempts < max_attempts:
        attempts += 1
        remaining = max(0.5, deadline - time.perf_counter())
        resp = request("POST", platform.url, body, "image/jpeg", timeout=min(knobs["request_timeout_s"], remaining))
        if resp.status == 200:
            elapsed = (time.perf_counter() - t0) * 1000.0
            try:
                prediction_ms = float(resp.json()["prediction_ms"])
            except (ValueError, KeyError, TypeError):
                prediction_ms = None
            outcomes["200"] += 1
            return attempts, outcomes, {"start_to_first_200_ms": round(elapsed, 3), "epoch": time.time(),
                                        "response_ms": round(resp.elapsed_ms, 3), "prediction_ms": prediction_ms}
        outcomes[str(resp.status) if resp.status is not None else (resp.error or "error").split(":")[0]] += 1
        time.sleep(knobs["coldstart_poll_interval_s"])
    return attempts, outcomes, None


def coldstart(folder: RunFolder, platform_name: str, repetition: int, restart: str | None = None) -> StepResult:
    """One cold start of a platform by its configured restart: `docker` (container_restart) or a kubectl
    restart on a cluster (`kubectl-scale`: replicas_0_to_1, `kubectl-redeploy`: deploy_to_first_200).

    `restart` picks one when the platform has several; with one it may be left out.
    """
    platform = _platform(folder, platform_name)
    kinds = platform.restart_kinds
    if not kinds:
        raise StepError(f"platform {platform_name!r} has restart 'none': no cold starts configured (set restart "
                        f"to one of {', '.join(k for k in RESTARTS if k != 'none')})")
    if restart is None:
        if len(kinds) > 1:
            raise StepError(f"platform {platform_name!r} has several restarts ({', '.join(kinds)}): choose one "
                            "with --restart")
        restart = kinds[0]
    if restart not in kinds:
        raise StepError(f"platform {platform_name!r} is configured with restart {', '.join(kinds)}, "
                        f"not {restart!r}")
    if repetition < 1:
        raise StepError(f"--repetition must be at least 1, got {repetition}")
    if restart == "docker":
        return _container_restart(folder, platform, repetition)
    return _kubectl_restart(folder, platform, repetition, restart)


def _finish_coldstart(folder: RunFolder, out: Path, position: str, record: dict[str, Any], error: str | None,
                      logs_info: dict[str, Any], timings: str, restart: str | None = None) -> StepResult:
    """Write a cold start's coldstart.json (`record`) and done.json and make its progress line, whichever restart
    made it; a start that brought no HTTP 200 within coldstart_timeout_s failed. `timings`: the stop and start
    times as the line shows them. `restart`: a kubectl restart, named in done.json and, by its kind, in the line
    (None for docker, the only restart a container has)."""
    run_key, first_200 = out.name, record["first_200"]
    if error is None and first_200 is None:
        error = f"no HTTP 200 within {folder.config.knobs['coldstart_timeout_s']} s ({record['attempts']} attempts)"
    write_json(out / COLDSTART_FILE, record)
    _finish(folder, out, {
        "run_key": run_key, "step": "coldstart", "platform": record["platform"], "repetition": record["repetition"],
        **({"restart": restart} if restart else {}), "started_utc": _epoch_utc(record["start_epoch"]),
        "finished_utc": utc_now(), "outcome": "ok" if first_200 else "failed", "error": error, "logs": logs_info,
    })
    kind = f"{record['kind']}: " if restart else ""
    if first_200:
        line = (f"{kind}first 200 after {first_200['start_to_first_200_ms'] / 1000:.2f} s "
                f"({record['attempts']} attempts; {timings})")
    else:
        line = f"{kind}FAILED: {error}"
    return StepResult(run_key, False, f"{position} {run_key}: {line}")


def _container_restart(folder: RunFolder, platform: PlatformConfig, repetition: int) -> StepResult:
    """Stop the platform's container, start it, and time `docker start` -> first HTTP 200 prediction.

    The clock starts just before `docker start`, so it covers container start, the server's start-up and
    model load, and the first inference — what a user waits for after a restart. docker's own StartedAt is
    recorded too, to split process start from the rest. Polls are bounded by coldstart_timeout_s.
    """
    platform_name = platform.name
    knobs = folder.config.knobs
    run_key = coldstart_run_key(platform_name, repetition)
    position = _position(folder, run_key)
    out = _prepare(folder, run_key)
    if out is None:
        return StepResult(run_key, True, f"{position} {run_key}: already done")
    docker_host = folder.config.docker_host
    body = folder.payload_path.read_bytes()
    logs = log_source(platform, docker_host)

    try:
        stop_ms, stop_error = _docker(["stop", platform.container], docker_host)
        mark = logs.mark()
        t0 = time.perf_counter()
        start_epoch = time.time()
        start_ms, start_error = _docker(["start", platform.container], docker_host)
    except BaseException:  # interrupted around stop/start: never leave the service stopped
        _docker(["start", platform.container], docker_host)
        raise
    attempts, outcomes, first_200 = (0, Counter(), None) if start_error else _poll_first_200(
        platform, body, t0, knobs)
    started_at = None
    try:
        started_at = docker_inspect(docker_host, platform.container, timeout=5)["State"]["StartedAt"]
    except (DockerError, KeyError) as exc:
        outcomes[f"inspect: {exc}"] += 1
    time.sleep(knobs["log_settle_s"])
    logs_info = logs.collect(mark, out)

    record = {
        "platform": platform_name, "repetition": repetition, "kind": "container_restart",
        "container": platform.container, "stop_ms": round(stop_ms, 3), "start_command_ms": round(start_ms, 3),
        "start_epoch": start_epoch, "docker_started_at": started_at, "attempts": attempts,
        "attempt_outcomes": dict(outcomes), "first_200": first_200,
    }
    return _finish_coldstart(folder, out, position, record, stop_error or start_error, logs_info,
                             f"docker stop {stop_ms / 1000:.1f} s, docker start {start_ms / 1000:.2f} s")


def _kubectl_restart(folder: RunFolder, platform: PlatformConfig, repetition: int, restart: str) -> StepResult:
    """Take the platform down with kubectl (analysis/bench/cluster.py), bring it back, and time the first
    kubectl command of the start -> the first HTTP 200 prediction.

    kubectl-scale: Deployment scaled to 0 until no pod is left (stop_ms), then to 1 (start_command_ms: the
    scale command). kubectl-redeploy: the objects of kubectl.redeploy saved, deleted and waited gone (stop_ms),
    then applied again in order with the waits the http-trigger controller needs (start_command_ms: applies
    and waits, inside the clock). Polls and waits are bounded by coldstart_timeout_s. The platform is left
    deployed whatever happened, interruptions included.
    """
    platform_name = platform.name
    knobs = folder.config.knobs
    kind = COLDSTART_KINDS[restart]
    run_key = coldstart_run_key(platform_name, repetition, restart)
    position = _position(folder, run_key)
    if folder.is_done(run_key):
        return StepResult(run_key, True, f"{position} {run_key}: already done")
    try:
        check_kubeconfig(platform)  # before anything is written or touched
        out = _prepare(folder, run_key)
        assert out is not None
        cluster = ClusterRestart(platform, restart, out)
        cluster.save_objects()
    except ClusterError as exc:
        raise StepError(str(exc)) from None
    body = folder.payload_path.read_bytes()
    logs = log_source(platform, folder.config.docker_host)

    try:
        stop_ms, stop_error = cluster.stop(knobs["coldstart_timeout_s"])
        mark = logs.mark()
        t0 = time.perf_counter()
        start_epoch = time.time()
        start_ms, start_error = cluster.start(t0 + knobs["coldstart_timeout_s"])
    except BaseException:  # interrupted between stop and start: never leave the platform down
        cluster.recover()
        raise
    attempts, outcomes, first_200 = (0, Counter(), None) if stop_error or start_error else _poll_first_200(
        platform, body, t0, knobs)
    time.sleep(knobs["log_settle_s"])
    logs_info = logs.collect(mark, out)

    record = {
        "platform": platform_name, "repetition": repetition, "kind": kind,
        "stop_ms": round(stop_ms, 3), "start_command_ms": round(start_ms, 3), "start_epoch": start_epoch,
        "attempts": attempts, "attempt_outcomes": dict(outcomes), "first_200": first_200, **cluster.record(),
    }
    return _finish_coldstart(folder, out, position, record, stop_error or start_error, logs_info,
                             f"stop {stop_ms / 1000:.1f} s, start commands {start_ms / 1000:.2f} s", restart)


# --------------------------------------------------------------------------------- autoscaling (paper profile)
def autoscale(folder: RunFolder, platform_name: str) -> StepResult:
    """ab load on a cluster platform while its HorizontalPodAutoscaler scales it; replicas sampled over time.

    From the control node: look for the platform's HPA (bounded; the playbook applies it, playbooks/paper/
    autoscale.yml), sample the Deployment and the HPA through kubectl every autoscale_sample_interval_s into
    raw/<run_key>/autoscale.jsonl (analysis/bench/autoscale.py), run ab at autoscale_concurrency for
    autoscale_duration_s (never longer than run_timeout_s), then keep sampling for autoscale_tail_s. Without the
    HPA the step does not run and leaves no folder, so it stays pending until the HPA is there.
    """
    from analysis.bench import autoscale as autoscaling
    from analysis.bench.cluster import Kubectl
    from analysis.bench.config import autoscale_run_key

    platform = _platform(folder, platform_name)
    knobs = folder.config.knobs
    run_key = autoscale_run_key(platform_name, knobs["autoscale_concurrency"])
    position = _position(folder, run_key)
    if folder.is_done(run_key):
        return StepResult(run_key, True, f"{position} {run_key}: already done")
    try:
        deployment = kubectl_group(platform).deployment
    except ClusterError as exc:
        raise StepError(f"{exc}: the autoscaling run needs the Deployment its HPA scales") from None
    if not deployment:
        raise StepError(f"platform {platform_name!r} has no kubectl.deployment: the autoscaling run needs the "
                        "Deployment its HPA scales")
    try:
        check_kubeconfig(platform)
        kubectl = Kubectl.for_platform(platform)
    except ClusterError as exc:
        raise StepError(str(exc)) from None
    hpa, hpa_error = autoscaling.find_hpa(kubectl, deployment, autoscaling.HPA_WAIT_S)
    if hpa is None:
        return StepResult(run_key, True, f"{position} {run_key}: NOT RUN, no HorizontalPodAutoscaler "
                          f"{deployment} ({hpa_error}); playbooks/paper/autoscale.yml applies it "
                          "and runs this step")
    out = _prepare(folder, run_key)
    assert out is not None
    write_json(out / autoscaling.HPA_FILE, hpa)
    command = ab_command(folder, platform.url, autoscaling.MAX_REQUESTS, knobs["autoscale_concurrency"])
    ab.find_ab(command.ab)
    limit_s = min(float(knobs["autoscale_duration_s"]), float(knobs["run_timeout_s"]))
    sampler = autoscaling.ReplicaSampler(kubectl, deployment, knobs["autoscale_sample_interval_s"],
                                         out / autoscaling.AUTOSCALE_FILE)
    sampler.start()  # the first sample, before the load
    try:
        sampler.phase = "load"
        started = time.time()
        result = ab.run_ab(command, out, timeout_s=limit_s, check=False)
        finished = time.time()
        sampler.phase = "tail"
        time.sleep(knobs["autoscale_tail_s"])
    finally:
        samples_info = sampler.stop()
    s = result.summary
    scale = autoscaling.scale_up(autoscaling.read_samples(out / autoscaling.AUTOSCALE_FILE), started)
    error = None if s is not None else result.error
    if error is None and samples_info["samples"] == samples_info["errors"]:
        error = f"no sample could be read: {samples_info['first_error']}"
    _finish(folder, out, {
        "run_key": run_key, "step": "autoscale", "platform": platform_name,
        "concurrency": knobs["autoscale_concurrency"], "duration_s": knobs["autoscale_duration_s"],
        "limit_s": limit_s, "tail_s": knobs["autoscale_tail_s"],
        "started_utc": _epoch_utc(started), "finished_utc": _epoch_utc(finished),
        "started_epoch": started, "finished_epoch": finished,
        "outcome": "ok" if error is None else "failed", "error": error,
        "ab": {"argv": result.argv, "returncode": result.returncode, "wall_s": result.wall_s,
               "note": result.error, "completed": s.completed if s else None,
               "requests_per_s": s.requests_per_s if s else None},
        "samples": samples_info, "scale_up": scale,
        "hpa": {k: (hpa.get("spec") or {}).get(k) for k in ("minReplicas", "maxReplicas",
                                                            "targetCPUUtilizationPercentage")},
    })
    if error:
        return StepResult(run_key, False, f"{position} {run_key}: FAILED: {error}")
    line = (f"{s.requests_per_s or 0:.1f} req/s for {result.wall_s:.0f} s at c={knobs['autoscale_concurrency']}; "
            f"ready replicas {scale['ready_before']} -> max {scale['ready_max']}; "
            + (f"scale-up decided after {scale['decided_s']:.0f} s" if scale["decided_s"] is not None
               else "no scale-up decided")
            + (f", replica ready after {scale['ready_s']:.0f} s" if scale["ready_s"] is not None else "")
            + f"; {samples_info['samples']} samples ({samples_info['errors']} failed)")
    return StepResult(run_key, False, f"{position} {run_key}: {line}")
