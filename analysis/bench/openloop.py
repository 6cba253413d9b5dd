"""The open-loop load generator: each request leaves at its scheduled time whether or not earlier ones have
returned, and its latency is counted from that scheduled time, so a server that stalls is charged for the queue
it builds. ApacheBench (closed loop) waits for a reply before it sends the next request and so never sees that
queue: coordinated omission. The same model as wrk2 -R, k6's arrival-rate executors and MLPerf LoadGen's Server
scenario.

- Arrivals: `constant` (one every 1/rate s), `poisson` (exponential gaps from a seeded generator: the same seed
  gives the same schedule, request for request) or `trace` (offsets in seconds read from a file).
- A cap on outstanding requests: a request due while the cap is reached is *dropped* and counted, never
  delayed (delaying it would hide exactly the queueing this module measures).
- Per request: scheduled, sent and completed times; send lag = sent - scheduled. A run whose p99 lag exceeds
  `max_lag_ms` had a generator that fell behind: it is marked invalid and the report never plots it.
- A request that did not get a complete 2xx answer is counted once, under one cause of
  analysis.bench.schema.ERROR_CAUSES; latency statistics cover served requests only, and a percentile is only
  given with the samples schema.samples_needed asks for.

asyncio + aiohttp on one event loop; HdrHistogram (3 significant digits) for the percentiles. A timer wakes the
loop at the next due time; epoll sleeps in whole milliseconds, so a send can leave up to ~1 ms late, which is
measured, not hidden. The garbage collector is paused during a run so a collection never stalls a send, and the
GIL switch interval is shortened so the resource sampler's thread never holds a send back for 5 ms.
"""

from __future__ import annotations

import asyncio
import csv
import errno
import gc
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from hdrh.histogram import HdrHistogram

from analysis.bench.schema import ERROR_CAUSES, samples_needed

ARRIVALS = ("constant", "poisson", "trace")
OUTCOMES = ("served", *ERROR_CAUSES, "dropped")
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
DEFAULT_MAX_LAG_MS = 5.0
DEFAULT_MAX_OUTSTANDING = 512
SWITCH_INTERVAL_S = 0.0002  # GIL hand-over bound during a run (Python's default is 5 ms)
LEAD_S = 0.1  # the schedule starts this long after the session is ready, so the first sends are not late
HDR_MAX_US = 3_600_000_000  # one hour, in microseconds
HDR_DIGITS = 3
RAW_CSV = "openloop.csv"
RAW_JSON = "openloop.json"
RAW_COLUMNS = ("seq", "scheduled_s", "sent_s", "done_s", "lag_ms", "latency_ms", "status", "outcome", "bytes",
               "error")


class OpenLoopError(ValueError):
    """Bad arguments for a run (rate, duration, trace file); the message says which and what to do."""


# ------------------------------------------------------------------------------------------- arrivals
def schedule(arrivals: str, rate_rps: float | None, duration_s: float | None, seed: int | None = None,
             trace: Path | str | None = None) -> np.ndarray:
    """Scheduled send times in seconds from the start of the run, non-decreasing.

    constant: k / rate for k = 0, 1, ... while < duration. poisson: cumulative exponential gaps of mean 1 / rate
    from numpy's PCG64 seeded with `seed`, while < duration. trace: the file's offsets; with `rate_rps` they are
    stretched in time so the trace's mean rate is `rate_rps`; with `duration_s`, cut there.
    """
    if arrivals not in ARRIVALS:
        raise OpenLoopError(f"arrivals must be one of {', '.join(ARRIVALS)}, got {arrivals!r}")
    if arrivals == "trace":
        if trace is None:
            raise OpenLoopError("arrivals 'trace' needs a trace file (--trace FILE)")
        offsets = read_trace(trace)
        if rate_rps is not None:
            if rate_rps <= 0:
                raise OpenLoopError(f"rate must be > 0 req/s, got {rate_rps}")
            span = offsets[-1] if offsets[-1] > 0 else 1.0
            offsets = offsets * ((len(offsets) / span) / rate_rps)
        if duration_s is not None:
            offsets = offsets[offsets < duration_s]
        return offsets
    if rate_rps is None or not rate_rps > 0 or not math.isfinite(rate_rps):
        raise OpenLoopError(f"rate must be a number > 0 req/s, got {rate_rps!r}")
    if duration_s is None or not duration_s > 0 or not math.isfinite(duration_s):
        raise OpenLoopError(f"duration must be a number of seconds > 0, got {duration_s!r}")
    if arrivals == "constant":
        return np.arange(math.ceil(rate_rps * duration_s - 1e-9), dtype=float) / rate_rps
    rng = np.random.default_rng(seed)
    expected = rate_rps * duration_s
    gaps = rng.exponential(1.0 / rate_rps, size=int(expected + 10 * math.sqrt(expected) + 20))
    times = np.cumsum(gaps) - gaps[0]  # the first request at t = 0, like the constant schedule
    while times[-1] < duration_s:  # extremely unlikely: draw more from the same stream
        more = rng.exponential(1.0 / rate_rps, size=len(gaps))
        times = np.concatenate([times, times[-1] + np.cumsum(more)])
    return times[times < duration_s]


def read_trace(path: Path | str) -> np.ndarray:
    """A trace file: one send time per line, seconds from the start (blank lines and # comments skipped)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise OpenLoopError(f"trace file {path}: {exc.strerror or exc}") from None
    values = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            value = float(text.split(",")[0])
        except ValueError:
            raise OpenLoopError(f"trace file {path} line {number}: {text!r} is not a number of seconds") from None
        if not math.isfinite(value) or value < 0:
            raise OpenLoopError(f"trace file {path} line {number}: send times must be >= 0 s, got {value}")
        values.append(value)
    if not values:
        raise OpenLoopError(f"trace file {path} holds no send times (one number of seconds per line)")
    offsets = np.array(values, dtype=float)
    if np.any(np.diff(offsets) < 0):
        raise OpenLoopError(f"trace file {path}: send times must not decrease")
    return offsets - offsets[0]


# ------------------------------------------------------------------------------------------ the run
@dataclass(frozen=True)
class Target:
    """What every request of a run is: the URL, the method and the body."""

    url: str
    method: str = "POST"
    body: bytes = b""
    content_type: str | None = "image/jpeg"
    timeout_s: float = 30.0
    keepalive: bool = False  # False: a new connection per request, as ab without -k


@dataclass
class OpenLoopRun:
    """Every scheduled request of one run; times in seconds from the schedule's start (t = 0)."""

    target: Target
    scheduled_s: np.ndarray
    sent_s: np.ndarray  # NaN when dropped
    done_s: np.ndarray  # NaN when dropped
    status: np.ndarray  # HTTP status, 0 when no HTTP reply arrived
    outcome: list[str]
    nbytes: np.ndarray
    errors: dict[int, str]
    started_epoch: float  # the wall-clock time of t = 0
    max_outstanding: int
    peak_outstanding: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, scheduled in enumerate(self.scheduled_s):
            sent, done = self.sent_s[i], self.done_s[i]
            dropped = self.outcome[i] == "dropped"
            out.append({
                "seq": i + 1, "scheduled_s": round(float(scheduled), 6),
                "sent_s": None if dropped else round(float(sent), 6),
                "done_s": None if dropped else round(float(done), 6),
                "lag_ms": None if dropped else round((sent - scheduled) * 1000.0, 4),
                "latency_ms": None if dropped else round((done - scheduled) * 1000.0, 4),
                "status": int(self.status[i]), "outcome": self.outcome[i], "bytes": int(self.nbytes[i]),
                "error": self.errors.get(i),
            })
        return out

    def write_csv(self, path: Path) -> None:
        write_rows(path, self.rows())


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=RAW_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in RAW_COLUMNS})
    tmp.replace(path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """openloop.csv back as typed rows (empty cells -> None)."""
    def num(text: str, kind: type) -> Any:
        return None if text == "" else kind(text)

    with open(path, newline="", encoding="utf-8") as fh:
        return [{"seq": int(r["seq"]), "scheduled_s": float(r["scheduled_s"]), "sent_s": num(r["sent_s"], float),
                 "done_s": num(r["done_s"], float), "lag_ms": num(r["lag_ms"], float),
                 "latency_ms": num(r["latency_ms"], float), "status": int(r["status"] or 0), "outcome": r["outcome"],
                 "bytes": int(r["bytes"] or 0), "error": r["error"] or None} for r in csv.DictReader(fh)]


def classify(exc: BaseException) -> str:
    """The one error cause of a request that raised (schema.ERROR_CAUSES)."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # aiohttp's timeouts subclass it
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        code = exc.os_error.errno if exc.os_error is not None else None
        if code in (errno.ETIMEDOUT,):
            return "timeout"
        if code in (errno.ECONNRESET, errno.EPIPE):
            return "reset"
        return "refused"  # ECONNREFUSED, or any other failure to open the connection
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # closed before a whole status line and headers: with no byte of reply aiohttp keeps its default message
        return "empty_reply" if isinstance(exc.message, str) else "reset"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientOSError | aiohttp.ClientError | OSError):
        return "reset"  # RST (ECONNRESET), a broken pipe, or a reply cut short
    raise exc


class _Generator:
    def __init__(self, target: Target, offsets: np.ndarray, max_outstanding: int) -> None:
        self.target = target
        self.offsets = offsets
        self.cap = max_outstanding
        n = len(offsets)
        self.sent = np.full(n, np.nan)
        self.done = np.full(n, np.nan)
        self.status = np.zeros(n, dtype=np.int32)
        self.nbytes = np.zeros(n, dtype=np.int64)
        self.outcome = ["dropped"] * n
        self.errors: dict[int, str] = {}
        self.outstanding = 0
        self.peak = 0
        self.t0 = 0.0
        self.headers = {"Content-Type": target.content_type} if target.content_type else {}
        self.session: aiohttp.ClientSession | None = None

    async def _one(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        self.sent[i] = loop.time() - self.t0
        assert self.session is not None
        try:
            async with self.session.request(self.target.method, self.target.url, data=self.target.body or None,
                                            headers=self.headers, allow_redirects=False) as resp:
                body = await resp.read()
                self.status[i] = resp.status
                self.nbytes[i] = len(body)
                self.outcome[i] = "served" if 200 <= resp.status < 300 else "non_2xx"
        except Exception as exc:  # every failure is classified and kept; classify() re-raises a harness bug
            self.outcome[i] = classify(exc)
            self.errors[i] = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self.done[i] = loop.time() - self.t0
            self.outstanding -= 1

    async def run(self) -> float:
        loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=0, force_close=not self.target.keepalive)
        timeout = aiohttp.ClientTimeout(total=self.target.timeout_s)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self.session = session
            self.t0 = loop.time() + LEAD_S
            started_epoch = time.time() + LEAD_S
            offsets, n, i = self.offsets, len(self.offsets), 0
            while i < n:
                now = loop.time() - self.t0
                if offsets[i] > now:
                    await asyncio.sleep(offsets[i] - now)
                    continue
                while i < n and offsets[i] <= now:  # everything due by now leaves now: late sends show as lag
                    if self.outstanding >= self.cap:
                        self.errors[i] = f"{self.outstanding} requests outstanding (max_outstanding {self.cap})"
                    else:
                        self.outstanding += 1
                        self.peak = max(self.peak, self.outstanding)
                        task = loop.create_task(self._one(i))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    i += 1
            if tasks:
                await asyncio.gather(*tasks)
        return started_epoch


def _raise_fd_limit(max_outstanding: int) -> None:
    """One socket per request in flight: lift the soft open-files limit towards the hard one, so a high cap fails
    as drops (the server's doing) and never as EMFILE (the generator's)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_outstanding + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < want:
        raise OpenLoopError(f"max_outstanding {max_outstanding} needs {want} open files, the limit is {soft} "
                            f"(ulimit -n): lower the cap or raise the limit")


@contextmanager
def _realtime(enabled: bool) -> Iterator[str]:
    """SCHED_FIFO priority 1 for this thread while it sends, when asked and permitted (root or CAP_SYS_NICE).

    The generator sleeps between sends; on a 2-core machine whose server keeps both cores busy near its capacity,
    the ordinary scheduler wakes it milliseconds late, and the run is judged invalid for the server's doing. At the
    lowest real-time priority it preempts the server as soon as a send is due: it takes the same little CPU as
    before (a few % at the rates here), only on time; the kernel still caps real-time tasks at sched_rt_runtime_us
    (95 % of each CPU by default). Yields the policy the run used, for openloop.json."""
    if not enabled:
        yield "normal"
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (PermissionError, OSError) as exc:
        yield f"normal (real-time priority refused: {exc.strerror or exc})"
        return
    try:
        yield "SCHED_FIFO 1"
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


async def run_async(target: Target, offsets: np.ndarray, max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
                    realtime: bool = False) -> OpenLoopRun:
    """One run on the running event loop (the tests use this to stall the loop on purpose)."""
    if max_outstanding < 1:
        raise OpenLoopError(f"max_outstanding must be >= 1, got {max_outstanding}")
    _raise_fd_limit(max_outstanding)
    gen = _Generator(target, np.asarray(offsets, dtype=float), max_outstanding)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    # Another thread of this process (the CPU/memory sampler) may hold the GIL when a send is due; Python makes the
    # loop wait up to the switch interval (5 ms by default) for it: shorten that wait during the run.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        with _realtime(realtime) as policy:
            started_epoch = await gen.run()
    finally:
        sys.setswitchinterval(switch)
        if was_enabled:
            gc.enable()
    return OpenLoopRun(target=target, scheduled_s=gen.offsets, sent_s=gen.sent, done_s=gen.done,
                       status=gen.status, outcome=gen.outcome, nbytes=gen.nbytes, errors=gen.errors,
                       started_epoch=started_epoch, max_outstanding=max_outstanding, peak_outstanding=gen.peak,
                       info={"scheduler": policy})


def run(target: Target, offsets: np.ndarray, max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        realtime: bool = False) -> OpenLoopRun:
    """Send every request of `offsets` at its time; returns when the last one has completed or failed."""
    return asyncio.run(run_async(target, offsets, max_outstanding, realtime))


# ------------------------------------------------------------------------------------------ statistics
def _hdr(values_ms: list[float]) -> HdrHistogram:
    hist = HdrHistogram(1, HDR_MAX_US, HDR_DIGITS)
    for v in values_ms:
        hist.record_value(min(max(round(v * 1000.0), 0), HDR_MAX_US))
    return hist


def _hdr_ms(hist: HdrHistogram, percentile: float) -> float:
    return round(hist.get_value_at_percentile(percentile) / 1000.0, 3)


def pct_name(p: float) -> str:
    """50 -> p50, 99.9 -> p999 (column names)."""
    return "p" + f"{p:g}".replace(".", "")


def run_stats(rows: list[dict[str, Any]], duration_s: float, max_lag_ms: float) -> dict[str, Any]:
    """The per-run numbers of rate_runs.csv from the per-request rows (openloop.csv), and whether the run is valid.

    Latency (from the scheduled time) over served requests; percentiles from an HdrHistogram (3 significant digits),
    None below schema.samples_needed. Lag over every request that was sent. achieved_rps = served / the longer of
    the schedule's duration and the time to the last completion.
    """
    counts = {name: 0 for name in OUTCOMES}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    served = [r["latency_ms"] for r in rows if r["outcome"] == "served"]
    lags = [r["lag_ms"] for r in rows if r["outcome"] != "dropped"]
    last_done = max((r["done_s"] for r in rows if r["done_s"] is not None), default=0.0)
    elapsed = max(duration_s, last_done)
    stats: dict[str, Any] = {
        "scheduled": len(rows), "scheduled_rps": round(len(rows) / duration_s, 4) if duration_s else None,
        "sent": len(rows) - counts["dropped"], "dropped": counts["dropped"], "served": len(served),
        "errors": sum(counts[c] for c in ERROR_CAUSES), **{c: counts[c] for c in ERROR_CAUSES},
        "achieved_rps": round(len(served) / elapsed, 4) if elapsed > 0 else None,
        "mean_ms": round(float(np.mean(served)), 3) if served else None,
        "min_ms": round(min(served), 3) if served else None,
        "max_ms": round(max(served), 3) if served else None,
    }
    hist = _hdr(served) if served else None
    for p in PERCENTILES:
        enough = hist is not None and len(served) >= samples_needed(p)
        stats[f"{pct_name(p)}_ms"] = _hdr_ms(hist, p) if enough else None
    if lags:
        lag_hist = _hdr(lags)
        stats.update(lag_p50_ms=_hdr_ms(lag_hist, 50), lag_p99_ms=_hdr_ms(lag_hist, 99),
                     lag_max_ms=round(max(lags), 3))
    else:
        stats.update(lag_p50_ms=None, lag_p99_ms=None, lag_max_ms=None)
    if not rows:
        valid, reason = False, "no request was scheduled (rate x duration < 1)"
    elif not lags:
        valid, reason = True, None  # everything dropped: the server's doing, the generator kept time
    elif stats["lag_p99_ms"] > max_lag_ms:
        valid, reason = False, (f"the generator fell behind: send lag p99 {stats['lag_p99_ms']:.2f} ms > "
                                f"{max_lag_ms:g} ms")
    else:
        valid, reason = True, None
    stats.update(max_lag_ms=max_lag_ms, valid=int(valid), invalid_reason=reason)
    return stats


def histograms(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The served latencies and the send lags as encoded HdrHistograms (µs), as wrk2 keeps them."""
    served = [r["latency_ms"] for r in rows if r["outcome"] == "served"]
    lags = [r["lag_ms"] for r in rows if r["outcome"] != "dropped"]
    return {"latency_us": _hdr(served).encode().decode("ascii"), "lag_us": _hdr(lags).encode().decode("ascii")}


def summary_line(stats: dict[str, Any], offered_rps: float | None, arrivals: str) -> str:
    """One line: offered and achieved rate, p50/p90/p99/p99.9, errors, drops, lag p99, valid or not."""
    def pct(p: float) -> str:
        value = stats.get(f"{pct_name(p)}_ms")
        return (f"p{p:g} {value:.1f} ms" if value is not None
                else f"p{p:g} too few samples ({stats['served']} < {samples_needed(p)})")

    causes = ", ".join(f"{c.replace('_', ' ')} {stats[c]}" for c in ERROR_CAUSES if stats.get(c))
    offered = f"{offered_rps:.1f}" if offered_rps is not None else "-"
    lag = "-" if stats["lag_p99_ms"] is None else f"{stats['lag_p99_ms']:.2f} ms"
    valid = "valid" if stats["valid"] else f"INVALID: {stats['invalid_reason']}"
    return (f"offered {offered} req/s ({arrivals}; scheduled {stats['scheduled']} = {stats['scheduled_rps']:.1f}/s), "
            f"achieved {stats['achieved_rps'] or 0:.1f} req/s; {', '.join(pct(p) for p in PERCENTILES)}; "
            f"errors {stats['errors']}" + (f" ({causes})" if causes else "") + f", drops {stats['dropped']}; "
            f"lag p99 {lag}: {valid}")


def versions() -> dict[str, str]:
    import importlib.metadata

    out = {"python": sys.version.split()[0], "aiohttp": aiohttp.__version__}
    try:
        out["hdrhistogram"] = importlib.metadata.version("hdrhistogram")
    except importlib.metadata.PackageNotFoundError:
        pass
    return out


def run_record(run: OpenLoopRun, rows: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    """openloop.json: how the run was made (everything needed to repeat it) and its histograms."""
    t = run.target
    return {"url": t.url, "method": t.method, "content_type": t.content_type, "body_bytes": len(t.body),
            "timeout_s": t.timeout_s, "keepalive": t.keepalive, "max_outstanding": run.max_outstanding,
            "peak_outstanding": run.peak_outstanding, "started_epoch": run.started_epoch, **run.info, **params,
            "versions": versions(), "histograms": histograms(rows)}


# -------------------------------------------------------------------------------- generator capacity
TRIVIAL_SERVER = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.Response(text="ok")
app = web.Application()
app.router.add_route("*", "/{tail:.*}", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def wait_port(port: int, deadline_s: float = 15.0) -> None:
    import socket

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise OpenLoopError(f"the trivial server did not listen on 127.0.0.1:{port} within {deadline_s} s")


def capacity_benchmark(rates: list[float], duration_s: float, keepalive: bool, core: int | None,
                       server_core: int | None, max_lag_ms: float = 2.0, realtime: bool = False
                       ) -> list[dict[str, Any]]:
    """Constant-rate runs against a trivial aiohttp server on 127.0.0.1 with the generator pinned to one core:
    how many scheduled requests per second it keeps on time. Prints one line per rate."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", TRIVIAL_SERVER, str(port)], stdout=subprocess.DEVNULL)
    results = []
    try:
        if server_core is not None:
            os.sched_setaffinity(server.pid, {server_core})
        if core is not None:
            os.sched_setaffinity(0, {core})
        wait_port(port)
        target = Target(url=f"http://127.0.0.1:{port}/", method="GET", content_type=None, timeout_s=10,
                        keepalive=keepalive)
        for rate in rates:
            offsets = schedule("constant", rate, duration_s)
            cpu0 = time.process_time()
            result = run(target, offsets, max_outstanding=2000, realtime=realtime)
            cpu_s = time.process_time() - cpu0
            stats = run_stats(result.rows(), duration_s, max_lag_ms)
            row = {"rate_rps": rate, "cpu_pct": round(100 * cpu_s / duration_s, 1), **result.info, **stats}
            results.append(row)
            print(f"{rate:>7.0f}/s: served {stats['served']}/{stats['scheduled']}, errors {stats['errors']}, "
                  f"drops {stats['dropped']}, lag p50 {stats['lag_p50_ms']:.3f} ms, p99 {stats['lag_p99_ms']:.3f} ms, "
                  f"max {stats['lag_max_ms']:.1f} ms, generator CPU {row['cpu_pct']:.0f} % of its core, latency p50 "
                  f"{stats['p50_ms']} ms, scheduler {result.info['scheduler']} -> "
                  f"{'OK' if stats['valid'] and not stats['errors'] else 'behind'} (p99 lag <= {max_lag_ms:g} ms)",
                  flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return results


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=float) + "\n"
