"""The results folder's schema, defined once: every file, its columns, their kinds and units, and the version.

The writer (`analysis/bench/tidy.py`, `finalize`) takes each table's column order from here, and the report's
loader (`analysis/load.py`) takes the kinds it validates from here, so the two cannot drift apart;
analysis/RESULTS.md documents the same tables for people (tests/test_results_schema.py checks that it names
every column listed here and no other).

A column's kind is `str`, `int` or `float`; a trailing `?` allows empty cells (a statistic of an ab run that
aborted, the server time of a platform without /metrics). `needed` says whether the report reads it: a needed
column missing from a file is an error, any other missing column only a warning. Times are milliseconds unless
the name says otherwise (`_s` seconds, `_utc` ISO-8601 UTC); memory is bytes; CPU is % of one core.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 2
PLATFORMS = ("function", "container")

# Why a request did not get a complete 2xx answer; each failed request is counted under exactly one cause.
#   non_2xx      a whole reply with another status (408 from the runtime's join, 413, 500, 502/504 from a proxy)
#   reset        the connection was reset (RST) before a reply: a full listen backlog, a crashed worker
#   refused      the connection was refused: nothing listening, or a backlog that refuses new connections
#   empty_reply  the connection was closed with no byte of reply (a proxy whose upstream went away)
#   timeout      no reply within the client's timeout
ERROR_CAUSES = ("non_2xx", "reset", "refused", "empty_reply", "timeout")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # str | int | float, with "?" when cells may be empty
    needed: bool  # the report reads it: absent -> error, else absent -> warning
    doc: str


@dataclass(frozen=True)
class Table:
    file: str
    required: bool  # the file must exist (finalize always writes every table; old runs may lack optional ones)
    doc: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """Column order as written."""
        return [c.name for c in self.columns]

    @property
    def needed(self) -> dict[str, str]:
        """name -> kind of the columns the report reads (the loader validates these)."""
        return {c.name: c.kind for c in self.columns if c.needed}

    @property
    def spec_only(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if not c.needed)


def _c(name: str, kind: str, doc: str, needed: bool = True) -> Column:
    return Column(name, kind, needed, doc)


_RUN_IDENT = (
    _c("run_key", "str", "folder name under raw/, e.g. `concurrency-function-c10-r3`"),
    _c("experiment", "str", "`warmup` or `concurrency`"),
    _c("platform", "str", "a platform of manifest.json, e.g. `function` or `container`"),
    _c("concurrency", "int", "ab -c"),
    _c("repetition", "int", "1..repetitions (0 for a warm-up)"),
)

RUNS = Table("runs.csv", True, "one row per ab run; warm-up runs are kept with experiment = `warmup`", (
    *_RUN_IDENT,
    _c("requests", "int", "ab -n"),
    _c("completed", "int?", "ab's \"Complete requests\": every finished attempt, failed ones included"),
    _c("served", "int?", "requests that received a complete 2xx answer (completed - errors)"),
    _c("errors", "int?", "requests that did not receive a complete 2xx answer, each counted once; "
                         "= non_2xx + reset + refused + empty_reply + timeout"),
    _c("non_2xx", "int?", "whole replies with a status other than 2xx (ab's \"Non-2xx responses\")"),
    _c("reset", "int?", "attempts whose connection was reset before a reply"),
    _c("refused", "int?", "attempts whose connection was refused"),
    _c("empty_reply", "int?", "attempts whose connection was closed with no byte of reply"),
    _c("timeout", "int?", "attempts with no reply within ab -s (ab then aborts the run: at most 1)"),
    _c("length_mismatch", "int?", "2xx replies whose body length differed from the first reply's: served, "
                                  "not errors (ab counts them as Length failures)"),
    _c("failed", "int?", "ab's \"Failed requests\", as printed (one bad attempt may count 3 times)", False),
    _c("failed_connect", "int?", "ab's Connect split, as printed", False),
    _c("failed_receive", "int?", "ab's Receive split, as printed", False),
    _c("failed_length", "int?", "ab's Length split, as printed", False),
    _c("failed_exceptions", "int?", "ab's Exceptions split, as printed", False),
    _c("time_taken_s", "float?", "ab's \"Time taken for tests\"", False),
    _c("requests_per_s", "float?", "ab's \"Requests per second\" (attempts, failed ones included)"),
    _c("served_per_s", "float?", "served / time_taken_s: throughput of complete 2xx answers"),
    _c("mean_ms", "float?", "mean total time of the served requests (requests.csv rows with served = 1)", False),
    _c("min_ms", "float?", "fastest served request", False),
    _c("max_ms", "float?", "slowest served request", False),
    *(_c(f"p{p}_ms", "float?", f"{p}th percentile of the served requests' total time (whole-ms -g rows, "
                               "linear interpolation); empty below the samples it needs (RESULTS.md)", False)
      for p in (50, 90, 95, 99)),
    _c("failed_mean_ms", "float?", "mean time of the failed attempts ab's -g rows identify (no first byte)",
       False),
    _c("server_mean_ms", "float?", "mean server-side time in the run from the /metrics histogram delta"),
    _c("prediction_mean_ms", "float?", "mean prediction_ms of the run's prediction log lines"),
    _c("cpu_mean_pct", "float?", "serving container CPU during the run, % of one core"),
    _c("cpu_max_pct", "float?", "highest sampled CPU, % of one core"),
    _c("mem_max_bytes", "float?", "peak container working set"),
    _c("mem_limit_bytes", "float?", "its memory limit"),
    _c("started_utc", "str?", "when the run began"),
    _c("outcome", "str?", "`ok`, `aborted` (ab gave up: statistics empty) or `interrupted` (stopped at "
                          "run_timeout_s: statistics cover what finished)", False),
    _c("error", "str?", "ab's own message for a run that is not `ok`", False),
))

REQUESTS = Table("requests.csv", True, "one row per attempt of every ab run (ab -g), failed attempts included", (
    *_RUN_IDENT,
    _c("start_s", "int?", "the attempt's start, whole seconds since the epoch (ab -g has nothing finer)", False),
    _c("connect_ms", "float?", "ab's ctime", False),
    _c("processing_ms", "float?", "ab's dtime", False),
    _c("total_ms", "float", "ab's ttime: connect to last byte, whole ms"),
    _c("wait_ms", "float?", "ab's wait: request written to first byte", False),
    _c("served", "int", "1 for a row counted as a reply, 0 for a failed attempt without one (see RESULTS.md)"),
))

PROBE = Table("probe.csv", False, "paper Table 1: N sequential requests per platform", (
    _c("platform", "str", "platform"),
    _c("seq", "int", "1..N"),
    _c("status", "int", "HTTP status; 0 when no HTTP response arrived"),
    _c("response_ms", "float?", "client time from connect to the last byte; empty when status is 0"),
    _c("prediction_ms", "float?", "the prediction_ms of the response JSON; empty on error"),
    _c("error", "str?", "empty unless the request failed", False),
))

PREDICTIONS = Table("predictions.csv", False, "one row per prediction log line the services printed", (
    _c("run_key", "str", "the step whose log it came from"),
    _c("platform", "str", "platform"),
    _c("ts", "float?", "epoch seconds", False),
    _c("prediction_ms", "float", "decode + model, as the service timed it"),
    _c("backend", "str?", "keras or litert", False),
))

COLDSTART = Table("coldstart.csv", False, "one row per cold-start repetition", (
    _c("platform", "str", "platform"),
    _c("repetition", "int", "1..coldstart_repetitions"),
    _c("kind", "str", "`container_restart` locally; `replicas_0_to_1` or `deploy_to_first_200` on clusters"),
    _c("start_to_first_200_ms", "float?", "restart to the first HTTP 200; empty if none came in time"),
    _c("attempts", "int?", "requests sent, the 200 included"),
    _c("outcome", "str?", "`ok` or `failed`", False),
    _c("stop_ms", "float?", "stopping the old instance, not part of the cold start", False),
    _c("start_command_ms", "float?", "the start command itself", False),
    _c("first_200_prediction_ms", "float?", "prediction_ms of that first 200", False),
    _c("error", "str?", "why it failed", False),
))

RESOURCES = Table("resources.csv", False, "one row per CPU/memory sample", (
    _c("run_key", "str", "the ab run sampled"),
    _c("platform", "str", "platform"),
    _c("t_s", "float", "seconds since ab started (the baseline sample is slightly negative)"),
    _c("cpu_pct", "float?", "% of one core since the previous sample; empty for the first"),
    _c("mem_bytes", "float?", "working set"),
    _c("mem_limit_bytes", "float?", "limit; empty when unlimited or unknown"),
))

TABLES: dict[str, Table] = {t.file: t for t in (RUNS, REQUESTS, PROBE, PREDICTIONS, COLDSTART, RESOURCES)}

# Percentiles need samples: the p-th percentile of n samples is only shown when n * (1 - p/100) >= 6.62, i.e.
# at least 662 samples for a p99 (MLPerf LoadGen's rule for a 99 % bound at 95 % confidence), 133 for a p95,
# 67 for a p90, and 14 for a median.
TAIL_SAMPLES_NEEDED = 6.62


def samples_needed(percentile: float) -> int:
    """Fewest served requests a cell needs before its `percentile` is reported as a number."""
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be between 0 and 100, got {percentile}")
    tail = 1.0 - percentile / 100.0
    return int(-(-round(TAIL_SAMPLES_NEEDED / min(tail, 1 - tail), 6) // 1))
