"""Benchmark the model server container and print the numbers the issue's targets are about.

    python -m image.bench --image kubeless-dl-eval/app          # start a capped container, measure, remove it
    python -m image.bench --url http://127.0.0.1:30081 --container kde-app   # measure a running one

What it does, in order:
1. the in-process floor: the same model and backend in this process, one TensorFlow thread (as each
   worker has), N predictions of the payload -> prediction time p50 and CPU time per request, hence the
   most requests/s `--cpus` cores could serve with no HTTP at all (cpus / CPU time per request);
2. ApacheBench at each concurrency (default 1, 5, 10, 20) after a warm-up run, POSTing the project's
   benchmark payload (analysis.bench.payloads, a 500x375 photo-like JPEG), with /metrics scraped around each run;
3. the container's memory: cgroup usage and peak, and the summed PSS of its processes;
4. the targets: c=1 p50 <= prediction p50 + 2 ms, c=20 throughput >= 80 % of the floor, zero non-2xx,
   memory < 1.5 GB.

Numbers taken on a shared machine are only as good as its idle cores: say so when you quote them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from analysis.bench import payloads
from analysis.bench.ab import AbCommand, run_ab

BENCH_CONTAINER_PREFIX = "kde-bench-"
READY_TIMEOUT_S = 180
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


# ----------------------------------------------------------------------------------------- helpers
def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - user-given http URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(base_url: str, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Seconds until /readyz answered 200; RuntimeError after timeout_s."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if http_get(f"{base_url}/readyz", timeout=2)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{base_url}/readyz did not answer 200 within {timeout_s} s")


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(http_get(f"{base_url}/metrics")[1].decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _sum(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


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
    from model.inference import Predictor

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


def prediction_ms_from_logs(container: str, since: float) -> list[float]:
    logs = docker("logs", "--since", f"{since:.3f}", container, timeout=60)
    values = []
    for line in logs.splitlines():
        if line.startswith('{"event": "prediction"'):
            values.append(float(json.loads(line)["prediction_ms"]))
    return values


def container_cpu_seconds(container: str) -> float | None:
    """CPU time the container's cgroup has used so far (cgroup v1 cpuacct or v2 cpu.stat), if readable here."""
    cid = docker("inspect", "-f", "{{.Id}}", container).strip()
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
    if v1.is_file():
        return int(v1.read_text()) / 1e9
    v2_files = (
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat"),
        Path(f"/sys/fs/cgroup/docker/{cid}/cpu.stat"),
    )
    for v2 in v2_files:
        if v2.is_file():
            for line in v2.read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
    return None


def memory(container: str) -> dict[str, Any]:
    """Container memory now (as docker stats reports it), its cgroup peak, and the PSS of its processes."""
    result: dict[str, Any] = {}
    stats = json.loads(docker("stats", "--no-stream", "--format", "{{json .}}", container))
    result["docker_stats_usage"] = stats.get("MemUsage")
    cid = docker("inspect", "-f", "{{.Id}}", container).strip()
    for peak_file in (
        Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.max_usage_in_bytes"),  # cgroup v1, cgroupfs driver
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.peak"),  # cgroup v2, systemd driver
    ):
        if peak_file.is_file():
            result["cgroup_peak_bytes"] = int(peak_file.read_text())
            break
    pss = docker("exec", container, "python3", "-c", PSS_SCRIPT, check=False, timeout=60).strip()
    if pss:
        result.update(json.loads(pss))
    return result


def run_concurrency(
    base_url: str, payload_path: Path, concurrency: int, requests: int, warmup: int, out: Path, container: str | None
) -> dict[str, Any]:
    url = f"{base_url}/predict"
    if warmup:
        run_ab(AbCommand(url, max(warmup, concurrency), concurrency, payload_path), out / f"c{concurrency}-warmup")
    cpu_before = container_cpu_seconds(container) if container else None
    before, since = scrape(base_url), time.time()
    result = run_ab(AbCommand(url, requests, concurrency, payload_path), out / f"c{concurrency}", check=False)
    after = scrape(base_url)
    cpu_after = container_cpu_seconds(container) if container else None
    summary = result.summary
    row: dict[str, Any] = {"concurrency": concurrency, "requests": requests, "outcome": result.outcome}
    if summary is not None:
        row.update(
            completed=summary.completed,
            failed=summary.failures.total,
            failed_length=summary.failures.length,
            non_2xx=summary.non_2xx,
            requests_per_s=summary.requests_per_s,
            **{f"p{p}_ms": summary.percentiles_ms.get(p) for p in (50, 90, 99, 100)},
        )
    if result.percentiles:
        row["p50_ms_fine"] = result.percentile(50)
    count = _sum(after, "http_request_duration_seconds_count") - _sum(before, "http_request_duration_seconds_count")
    total = _sum(after, "http_request_duration_seconds_sum") - _sum(before, "http_request_duration_seconds_sum")
    row["server_mean_ms"] = round(total / count * 1000, 3) if count else None
    if cpu_before is not None and cpu_after is not None and result.wall_s:
        # CPU actually spent per request, and the cores the container got: on a shared machine the
        # container may get far less than its --cpus, so throughput alone says little.
        row["container_cpu_ms_per_request"] = round((cpu_after - cpu_before) * 1000 / requests, 3)
        row["container_cores_used"] = round((cpu_after - cpu_before) / result.wall_s, 2)
    if container:
        values = prediction_ms_from_logs(container, since)
        if values:
            row["prediction_p50_ms"] = round(statistics.median(values), 3)
            row["prediction_lines"] = len(values)
    return row


# ----------------------------------------------------------------------------------------- the run
def start_container(
    image: str, cpus: str, memory_limit: str, model_dir: Path | None, env: dict[str, str]
) -> tuple[str, str]:
    name = f"{BENCH_CONTAINER_PREFIX}{int(time.time())}"
    args = ["run", "-d", "--name", name, "--cpus", cpus, "--memory", memory_limit, "-p", "127.0.0.1::8080"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    if model_dir is not None:
        args += ["-v", f"{model_dir.resolve()}:/model:ro"]
    docker(*args, image)
    port = docker("port", name, "8080/tcp").splitlines()[0].rsplit(":", 1)[1]
    return name, f"http://127.0.0.1:{port}"


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
    non_2xx = sum((row.get("non_2xx") or 0) + (row.get("failed") or 0) for row in rows.values())
    checks.append(("zero non-2xx and failed requests", non_2xx == 0, f"{non_2xx}"))
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m image.bench", description=__doc__.split("\n\n")[0])
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--image", help="start this image in a capped container (removed afterwards)")
    target.add_argument("--url", help="base URL of a running server, e.g. http://127.0.0.1:30081")
    p.add_argument("--container", help="with --url: the container's name, for its memory and prediction logs")
    p.add_argument("--mount-model", action="store_true", help="with --image: mount --model-dir at /model")
    p.add_argument("--model-dir", type=Path, default=Path("build/model"), help="model for the in-process floor")
    p.add_argument(
        "--backend",
        default="keras",
        choices=("keras", "litert"),
        help="backend of the floor and, with --image, of the server",
    )
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="with --image: server setting")
    p.add_argument("--cpus", default="2", help="docker --cpus, and the cores the floor assumes (default 2)")
    p.add_argument("--memory", default="2g", help="docker --memory (default 2g, the paper's VMs)")
    p.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 5, 10, 20], help="ab -c values")
    p.add_argument("-n", "--requests", type=int, default=200, help="ab -n per concurrency (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="requests of the unmeasured run before each (20)")
    p.add_argument(
        "--floor-requests", type=int, default=100, help="in-process predictions per round, best of 3 (0: no floor)"
    )
    p.add_argument("--payload", type=Path, help="JPEG to POST (default: analysis.bench.payloads' photo-500x375.jpg)")
    p.add_argument("--out", type=Path, help="folder for ab's files and report.json (default: a temp folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="kde-image-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    payload_path = args.payload or payloads.write(payloads.DEFAULT_PAYLOAD, out).path
    report: dict[str, Any] = {"payload": str(payload_path), "payload_bytes": payload_path.stat().st_size, "ab": []}
    if args.floor_requests:
        report["in_process"] = in_process_floor(
            args.model_dir, args.backend, payload_path.read_bytes(), args.floor_requests, float(args.cpus)
        )
    container, base_url, started = args.container, (args.url or "").rstrip("/"), False
    try:
        if args.image:
            env = {"MODEL_BACKEND": args.backend, **dict(item.split("=", 1) for item in args.env)}
            container, base_url = start_container(
                args.image, args.cpus, args.memory, args.model_dir if args.mount_model else None, env
            )
            report["server_env"] = env
            started = True
            report["ready_after_s"] = round(wait_ready(base_url), 2)
        for concurrency in args.concurrency:
            row = run_concurrency(base_url, payload_path, concurrency, args.requests, args.warmup, out, container)
            report["ab"].append(row)
        if container:
            report["memory"] = memory(container)
    finally:
        if started:
            docker("rm", "-f", container, check=False)
    report["targets"] = [{"target": n, "ok": ok, "detail": d} for n, ok, d in check_targets(report)]
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print_report(report)
    print(f"ab files and report.json: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
