"""`python -m analysis.bench micro-app`: benchmark the model server container and print the numbers its targets
are about.

    python -m analysis.bench micro-app --image kubeless-dl-eval/app    # start a capped container, measure, remove it
    python -m analysis.bench micro-app --url http://127.0.0.1:30081 --container kde-app    # measure a running one

What it does, in order:
1. the in-process floor: the same model and backend in this process, one TensorFlow thread (as each
   worker has), N predictions of the payload -> prediction time p50 and CPU time per request, hence the
   most requests/s `--cpus` cores could serve with no HTTP at all (cpus / CPU time per request);
2. ApacheBench at each concurrency (default 1, 5, 10, 20) after a warm-up run, POSTing bench.yml's payload
   (analysis.bench.payloads' 500x375 photo-like JPEG), with /metrics scraped around each run;
3. the container's memory: cgroup usage and peak, and the summed PSS of its processes;
4. the targets: c=1 p50 <= prediction p50 + 2 ms, c=20 throughput >= 80 % of the floor, zero non-2xx,
   memory < 1.5 GB.

Numbers taken on a shared machine are only as good as its idle cores: say so when you quote them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from analysis.bench.ab import AbCommand, run_ab
from analysis.bench.metrics import scrape, server_mean_ms
from analysis.bench.micro_harness import (
    Container,
    capped_container,
    docker,
    docker_host,
    payload_file,
    prediction_ms,
    wait_ready,
)
from analysis.bench.resources import CgroupSource, DockerStatsSource, ResourceError, ResourceSource

DESCRIPTION = "Benchmark the model server container and print the numbers its targets are about."
EPILOG = (
    "In order: the in-process floor (same model, one thread, no HTTP), ab at each concurrency after a warm-up "
    "with /metrics scraped around each run, the container's memory, then the targets: c=1 p50 <= prediction p50 "
    "+ 2 ms, c=20 throughput >= 80 % of the floor, zero non-2xx, memory < 1.5 GB. Numbers taken on a shared "
    "machine are only as good as its idle cores."
)
BENCH_CONTAINER_PREFIX = "kde-bench-"
SERVER_TIME_METRIC = "http_request_duration_seconds"
METRICS_TIMEOUT_S = 10
LOG_SETTLE_S = 0.5
MEMORY_TARGET_BYTES = 1.5e9
PSS_SCRIPT = r"""
import glob, json
total = 0
procs = 0
for path in glob.glob('/proc/[0-9]*/smaps_rollup'):
    try:
        for line in open(path):
            if line.startswith('Pss:'):
                total += int(line.split()[1]) * 1024
                procs += 1
    except OSError:
        pass
print(json.dumps({'pss_bytes': total, 'processes': procs}))
"""


# ----------------------------------------------------------------------------------------- the container
def docker_bytes(value: float) -> str:
    """A size as `docker stats` prints it (go-units BytesSize: 1024 steps, 4 significant digits): 412.3MiB."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    step = 0
    while value >= 1024 and step < len(units) - 1:
        value /= 1024
        step += 1
    return f"{value:.4g}{units[step]}"


class ContainerResources:
    """CPU time and memory of one container: its cgroup files where this machine sees them, else the Engine API."""

    def __init__(self, container: str) -> None:
        self.container = container
        self.stats = DockerStatsSource(container, docker_host())
        self.source: ResourceSource
        try:
            self.source = CgroupSource(container=container, docker_host=docker_host())
        except ResourceError:
            self.source = self.stats

    def cpu_seconds(self) -> float | None:
        """CPU time the container's cgroup has used so far, if readable here."""
        try:
            usage_ns = self.source.sample()["cpu_usage_ns"]
        except (ResourceError, OSError, ValueError, KeyError):
            return None
        return None if usage_ns is None else usage_ns / 1e9

    def peak_bytes(self) -> int | None:
        """The cgroup's memory high-water mark (v1 max_usage_in_bytes, v2 memory.peak), if readable here."""
        if not isinstance(self.source, CgroupSource):
            return None
        path = self.source.mem_dir / ("memory.peak" if self.source.v2 else "memory.max_usage_in_bytes")
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return None

    def memory(self) -> dict[str, Any]:
        """Memory now (as docker stats shows it), the cgroup peak, and the PSS of the container's processes."""
        result: dict[str, Any] = {}
        try:
            now = self.stats.sample()
            limit = now.get("mem_limit_bytes")
            result["docker_stats_usage"] = f"{docker_bytes(now['mem_bytes'])} / {docker_bytes(limit or 0)}"
        except ResourceError:
            result["docker_stats_usage"] = None
        peak = self.peak_bytes()
        if peak is not None:
            result["cgroup_peak_bytes"] = peak
        pss = docker("exec", self.container, "python3", "-c", PSS_SCRIPT, check=False, timeout=60).stdout.strip()
        if pss:
            result.update(json.loads(pss))
        return result


# ----------------------------------------------------------------------------------------- measurements
def in_process_floor(
    model_dir: Path, backend: str, payload: bytes, requests: int, cpus: float, rounds: int = 3
) -> dict[str, Any]:
    """The same model path as a worker (one TF thread), in this process, without HTTP.

    Measured in `rounds` rounds of `requests` predictions; the round with the lowest median CPU time counts, as
    other processes on a shared machine can only make a round slower (cache and core-sibling contention).
    """
    if backend == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from model.inference import Predictor  # the inference core both images copy: the model path they serve

    predictor = Predictor(model_dir, backend=backend)
    for _ in range(5):
        predictor.predict_bytes(payload)
    best: tuple[float, float] | None = None
    for _ in range(rounds):
        wall, cpu = [], []
        for _ in range(requests):
            w0, c0 = time.perf_counter(), time.process_time()
            predictor.predict_bytes(payload)
            wall.append((time.perf_counter() - w0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        candidate = (statistics.median(cpu), statistics.median(wall))
        best = candidate if best is None or candidate < best else best
    cpu_p50, wall_p50 = best
    return {
        "backend": backend,
        "requests": requests,
        "rounds": rounds,
        "prediction_p50_ms": round(wall_p50, 3),
        "cpu_per_request_p50_ms": round(cpu_p50, 3),
        "cpus": cpus,
        "floor_requests_per_s": round(cpus * 1000 / cpu_p50, 1),
    }


def _scrape(base_url: str, path: Path) -> None:
    """/metrics into `path` (absent when the scrape failed: the server time is then unknown, not zero)."""
    text, _ = scrape(f"{base_url}/metrics", METRICS_TIMEOUT_S)
    if text is not None:
        path.write_text(text, encoding="utf-8")


def run_concurrency(
    base_url: str, payload_path: Path, concurrency: int, requests: int, warmup: int, out: Path,
    container: Container | None, resources: ContainerResources | None,
) -> dict[str, Any]:
    url = f"{base_url}/predict"
    if warmup:
        run_ab(AbCommand(url, max(warmup, concurrency), concurrency, payload_path), out / f"c{concurrency}-warmup")
        if container is not None:
            time.sleep(LOG_SETTLE_S)  # the warm-up's last lines reach the log before the run's window opens
    run_dir = out / f"c{concurrency}"
    run_dir.mkdir(parents=True, exist_ok=True)
    cpu_before = resources.cpu_seconds() if resources else None
    _scrape(base_url, run_dir / "metrics.before.txt")
    mark = container.mark() if container else None
    result = run_ab(AbCommand(url, requests, concurrency, payload_path), run_dir, check=False)
    _scrape(base_url, run_dir / "metrics.after.txt")
    cpu_after = resources.cpu_seconds() if resources else None
    summary = result.summary
    row: dict[str, Any] = {"concurrency": concurrency, "requests": requests, "outcome": result.outcome}
    if summary is not None:
        row.update(
            completed=summary.completed,
            failed=summary.failures.total,  # ab's "Failed requests": one bad attempt may count up to 3 times
            failed_length=summary.failures.length,
            non_2xx=summary.non_2xx,
            requests_per_s=summary.requests_per_s,
            **{f"p{p}_ms": summary.percentiles_ms.get(p) for p in (50, 90, 99, 100)},
        )
    classes = result.classified
    if classes is not None:
        row["errors"] = classes.errors  # requests without a complete 2xx answer, each counted once
    if result.percentiles:
        row["p50_ms_fine"] = result.percentile(50)
    server = server_mean_ms(run_dir / "metrics.before.txt", run_dir / "metrics.after.txt", SERVER_TIME_METRIC)
    row["server_mean_ms"] = round(server, 3) if server is not None else None
    if cpu_before is not None and cpu_after is not None and result.wall_s:
        # CPU actually spent per request, and the cores the container got: on a shared machine the
        # container may get far less than its --cpus, so throughput alone says little.
        row["container_cpu_ms_per_request"] = round((cpu_after - cpu_before) * 1000 / requests, 3)
        row["container_cores_used"] = round((cpu_after - cpu_before) / result.wall_s, 2)
    if container is not None and mark is not None:
        container.collect_logs(mark, run_dir)
        values = prediction_ms(run_dir)
        if values:
            row["prediction_p50_ms"] = round(statistics.median(values), 3)
            row["prediction_lines"] = len(values)
    return row


# ----------------------------------------------------------------------------------------- the report
def check_targets(report: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    rows = {row["concurrency"]: row for row in report["ab"]}
    checks: list[tuple[str, bool | None, str]] = []
    c1 = rows.get(1)
    if c1 and c1.get("prediction_p50_ms") is not None and c1.get("p50_ms_fine") is not None:
        limit = c1["prediction_p50_ms"] + 2
        checks.append(
            (
                "c=1 p50 <= prediction p50 + 2 ms",
                c1["p50_ms_fine"] <= limit,
                f"{c1['p50_ms_fine']:.1f} ms vs {limit:.1f} ms",
            )
        )
    c20, floor = rows.get(20), report.get("in_process")
    if c20 and floor and c20.get("requests_per_s"):
        share = c20["requests_per_s"] / floor["floor_requests_per_s"]
        checks.append(
            (
                "c=20 throughput >= 80 % of the in-process floor",
                share >= 0.8,
                f"{c20['requests_per_s']:.1f} vs {floor['floor_requests_per_s']:.1f} req/s = {share:.0%}",
            )
        )
    if c20 and floor and c20.get("container_cpu_ms_per_request"):
        at_full_cores = floor["cpus"] * 1000 / c20["container_cpu_ms_per_request"]
        share = at_full_cores / floor["floor_requests_per_s"]
        checks.append(
            (
                "c=20 throughput >= 80 % of the floor, per CPU the container got",
                share >= 0.8,
                f"{c20['container_cpu_ms_per_request']:.1f} ms CPU/request in the container vs "
                f"{floor['cpu_per_request_p50_ms']:.1f} in-process = {share:.0%}",
            )
        )
    errors = sum(row.get("errors") or 0 for row in rows.values())
    checks.append(("zero non-2xx and failed requests", errors == 0, f"{errors}"))
    mem = report.get("memory") or {}
    measured = mem.get("cgroup_peak_bytes") or mem.get("pss_bytes")
    if measured:
        checks.append(("memory < 1.5 GB", measured < MEMORY_TARGET_BYTES, f"{measured / 2**20:.0f} MiB"))
    return checks


def print_report(report: dict[str, Any]) -> None:
    floor = report.get("in_process")
    if floor:
        print(
            f"in-process ({floor['backend']}, 1 thread, best of {floor['rounds']} x {floor['requests']}): "
            f"prediction p50 {floor['prediction_p50_ms']:.2f} ms, "
            f"CPU/request {floor['cpu_per_request_p50_ms']:.2f} ms -> "
            f"{floor['cpus']:g} CPUs can serve {floor['floor_requests_per_s']:.0f} req/s"
        )
    header = f"{'c':>3} {'req/s':>8} {'p50':>6} {'p50fine':>8} {'p90':>5} {'p99':>5} {'max':>5} "
    header += f"{'non2xx':>6} {'failed':>6} {'server_ms':>9} {'pred_p50':>8} {'cpu_ms/req':>10} {'cores':>5}"
    print(header)
    for row in report["ab"]:
        print(
            f"{row['concurrency']:>3} {row.get('requests_per_s') or 0:>8.1f} {row.get('p50_ms') or 0:>6} "
            f"{row.get('p50_ms_fine') or 0:>8.2f} {row.get('p90_ms') or 0:>5} {row.get('p99_ms') or 0:>5} "
            f"{row.get('p100_ms') or 0:>5} {row.get('non_2xx', '-'):>6} {row.get('failed', '-'):>6} "
            f"{row.get('server_mean_ms') or 0:>9.2f} {row.get('prediction_p50_ms') or 0:>8.2f} "
            f"{row.get('container_cpu_ms_per_request') or 0:>10.2f} {row.get('container_cores_used') or 0:>5.2f}"
        )
    mem = report.get("memory")
    if mem:
        peak = mem.get("cgroup_peak_bytes")
        print(
            f"memory: docker stats {mem.get('docker_stats_usage')}, cgroup peak "
            f"{peak / 2**20 if peak else float('nan'):.0f} MiB, PSS of {mem.get('processes')} processes "
            f"{mem.get('pss_bytes', 0) / 2**20:.0f} MiB"
        )
    for name, ok, detail in check_targets(report):
        print(f"target {name}: {'ok' if ok else 'MISSED'} ({detail})")


# ----------------------------------------------------------------------------------------- the command
def add_arguments(p: argparse.ArgumentParser) -> None:
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--image", help="start this image in a capped container (removed afterwards)")
    target.add_argument("--url", help="base URL of a running server, e.g. http://127.0.0.1:30081")
    p.add_argument("--container", help="with --url: the container's name, for its CPU, memory and prediction logs")
    p.add_argument("--mount-model", action="store_true", help="with --image: mount --model-dir at /model")
    p.add_argument("--model-dir", type=Path, default=Path("build/model"),
                   help="model for the in-process floor (default build/model)")
    p.add_argument(
        "--backend",
        default="keras",
        choices=("keras", "litert"),
        help="backend of the floor and, with --image, of the server (default keras)",
    )
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="with --image: a server setting (python -m image settings lists them); repeatable")
    p.add_argument("--cpus", default="2", help="docker --cpus, and the cores the floor assumes (default 2)")
    p.add_argument("--memory", default="2g", help="docker --memory (default 2g, the paper's VMs)")
    p.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 5, 10, 20],
                   help="ab -c values (default 1 5 10 20)")
    p.add_argument("-n", "--requests", type=int, default=200, help="ab -n per concurrency (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="requests of the unmeasured run before each (default 20)")
    p.add_argument(
        "--floor-requests", type=int, default=100, help="in-process predictions per round, best of 3 (0: no floor)"
    )
    p.add_argument("--payload", type=Path,
                   help="JPEG to POST (default: bench.yml's, analysis.bench.payloads' photo-500x375.jpg)")
    p.add_argument("--out", type=Path, help="folder for ab's files and report.json (default: a temp folder)")


def run(args: argparse.Namespace) -> int:
    out = args.out or Path(tempfile.mkdtemp(prefix="kde-image-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    payload_path = payload_file(args.payload, out)
    report: dict[str, Any] = {"payload": str(payload_path), "payload_bytes": payload_path.stat().st_size, "ab": []}
    if args.floor_requests:
        report["in_process"] = in_process_floor(
            args.model_dir, args.backend, payload_path.read_bytes(), args.floor_requests, float(args.cpus)
        )
    if args.image:
        env = {"MODEL_BACKEND": args.backend, **dict(item.split("=", 1) for item in args.env)}
        volumes = [f"{args.model_dir.resolve()}:/model:ro"] if args.mount_model else []
        name = f"{BENCH_CONTAINER_PREFIX}{int(time.time())}"
        with capped_container(args.image, name, args.cpus, args.memory, env, volumes=volumes) as container:
            report["server_env"] = env
            report["ready_after_s"] = round(wait_ready(f"{container.url}/readyz", lambda r: r.status == 200,
                                                       container), 2)
            measure(args, container.url, container, payload_path, out, report)
    else:
        container = Container(args.container, args.url.rstrip("/")) if args.container else None
        measure(args, args.url.rstrip("/"), container, payload_path, out, report)
    report["targets"] = [{"target": n, "ok": ok, "detail": d} for n, ok, d in check_targets(report)]
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print_report(report)
    print(f"ab files and report.json: {out}")
    return 0


def measure(args: argparse.Namespace, base_url: str, container: Container | None, payload_path: Path, out: Path,
            report: dict[str, Any]) -> None:
    """The ab sweep, then the memory, against a server that is ready."""
    resources = ContainerResources(container.name) if container else None
    for concurrency in args.concurrency:
        row = run_concurrency(base_url, payload_path, concurrency, args.requests, args.warmup, out, container,
                              resources)
        report["ab"].append(row)
    if resources is not None:
        report["memory"] = resources.memory()
