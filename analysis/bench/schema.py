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


def _columns(text: str) -> tuple[Column, ...]:
    """Columns from an aligned text table, one a line: `name kind needed doc`, needed being `*` (the report reads
    it) or `-`. A line that starts with white space goes on with the doc above it. A table reads better than a
    call per column, and lets the kinds and the needed marks be scanned down a column."""
    rows: list[list[str]] = []
    for line in text.strip("\n").splitlines():
        if line[:1].isspace():
            rows[-1][3] += " " + line.strip()
            continue
        name, kind, needed, doc = line.split(maxsplit=3)
        if needed not in ("*", "-"):
            raise ValueError(f"column {name}: needed must be '*' or '-', got {needed!r}")
        rows.append([name, kind, needed, doc])
    return tuple(Column(name, kind, needed == "*", doc) for name, kind, needed, doc in rows)


_RUN_IDENT = _columns("""
run_key      str     *  folder name under raw/, e.g. `concurrency-function-c10-r3`
experiment   str     *  `warmup`, `concurrency`, `overload` or `nowarmup`
platform     str     *  a platform of manifest.json, e.g. `function` or `container`
concurrency  int     *  ab -c
repetition   int     *  1..repetitions (0 for a warm-up)
""")

# the last six columns of runs.csv say what competed with the run and how fast the machine was (issue 14;
# analysis/bench/system.py and reference.py, raw/<run_key>/system.json in full)
RUNS = Table(
    "runs.csv", True, "one row per ab run; warm-up runs are kept with experiment = `warmup`",
    _RUN_IDENT + _columns("""
requests                int     *  ab -n
completed               int?    *  ab's "Complete requests": every finished attempt, failed ones included
served                  int?    *  requests that received a complete 2xx answer (completed - errors)
errors                  int?    *  requests that did not receive a complete 2xx answer, each counted once; = non_2xx
                                   + reset + refused + empty_reply + timeout
non_2xx                 int?    *  whole replies with a status other than 2xx (ab's "Non-2xx responses")
reset                   int?    *  attempts whose connection was reset before a reply
refused                 int?    *  attempts whose connection was refused
empty_reply             int?    *  attempts whose connection was closed with no byte of reply
timeout                 int?    *  attempts with no reply within ab -s (ab then aborts the run: at most 1)
length_mismatch         int?    *  2xx replies whose body length differed from the first reply's: served, not errors
                                   (ab counts them as Length failures)
failed                  int?    -  ab's "Failed requests", as printed (one bad attempt may count 3 times)
failed_connect          int?    -  ab's Connect split, as printed
failed_receive          int?    -  ab's Receive split, as printed
failed_length           int?    -  ab's Length split, as printed
failed_exceptions       int?    -  ab's Exceptions split, as printed
time_taken_s            float?  -  ab's "Time taken for tests"
requests_per_s          float?  *  ab's "Requests per second" (attempts, failed ones included)
served_per_s            float?  *  served / time_taken_s: throughput of complete 2xx answers
mean_ms                 float?  -  mean total time of the served requests (requests.csv rows with served = 1)
min_ms                  float?  -  fastest served request
max_ms                  float?  -  slowest served request
p50_ms                  float?  -  50th percentile of the served requests' total time (whole-ms -g rows, linear
                                   interpolation); empty below the samples it needs (RESULTS.md)
p90_ms                  float?  -  90th percentile of the served requests' total time (whole-ms -g rows, linear
                                   interpolation); empty below the samples it needs (RESULTS.md)
p95_ms                  float?  -  95th percentile of the served requests' total time (whole-ms -g rows, linear
                                   interpolation); empty below the samples it needs (RESULTS.md)
p99_ms                  float?  -  99th percentile of the served requests' total time (whole-ms -g rows, linear
                                   interpolation); empty below the samples it needs (RESULTS.md)
failed_mean_ms          float?  -  mean time of the failed attempts ab's -g rows identify (no first byte)
server_mean_ms          float?  *  mean server-side time in the run from the /metrics histogram delta
prediction_mean_ms      float?  *  mean prediction_ms of the run's prediction log lines
cpu_mean_pct            float?  *  serving container CPU during the run, % of one core
cpu_max_pct             float?  *  highest sampled CPU, % of one core
mem_max_bytes           float?  *  peak container working set
mem_limit_bytes         float?  *  its memory limit
started_utc             str?    *  when the run began
outcome                 str?    -  `ok`, `aborted` (ab gave up: statistics empty) or `interrupted` (stopped at
                                   run_timeout_s: statistics cover what finished)
error                   str?    -  ab's own message for a run that is not `ok`
load_1m_before          float?  -  1-minute load average just before the run
steal_pct               float?  -  CPU stolen by the hypervisor during the run, % of one core
load_generator_cpu_pct  float?  -  ab's own CPU time over the run, % of one core
others_cpu_pct          float?  -  CPU of processes that are neither the harness (with the processes that
                                   started it), the serving containers nor docker-proxy, % of one core
busy                    int?    -  1 when others_cpu_pct or steal_pct exceeded busy_cpu_pct, else 0
reference_ms            float?  -  the machine's speed just before the run: median time of a fixed single-threaded
                                   workload (analysis/bench/reference.py); lower is faster
"""))

REQUESTS = Table(
    "requests.csv", True, "one row per attempt of every ab run (ab -g), failed attempts included",
    _RUN_IDENT + _columns("""
start_s        int?    -  the attempt's start, whole seconds since the epoch (ab -g has nothing finer)
connect_ms     float?  -  ab's ctime
processing_ms  float?  -  ab's dtime
total_ms       float   *  ab's ttime: connect to last byte, whole ms
wait_ms        float?  -  ab's wait: request written to first byte
served         int     *  1 for a row counted as a reply, 0 for a failed attempt without one (see RESULTS.md)
"""))

PROBE = Table("probe.csv", False, "paper Table 1: N sequential requests per platform", _columns("""
platform       str     *  platform
seq            int     *  1..N
status         int     *  HTTP status; 0 when no HTTP response arrived
response_ms    float?  *  client time from connect to the last byte; empty when status is 0
prediction_ms  float?  *  the prediction_ms of the response JSON; empty on error
error          str?    -  empty unless the request failed
"""))

# issue 24: the headline's paired step (analysis/bench/runner.py `paired`): rounds of one sequential request to every
# platform, the order rotated from round to round; a function platform's per-round ratio to the baseline is the
# report's headline (analysis/headline.py). Runs made before it lack the file.
PAIRED = Table("paired.csv", False, "one row per request of the paired step (issue 24)", _columns("""
round          int     *  1..paired_requests; the requests of one round were sent one after the other
position       int     *  1..platforms in the round: the order they were sent in (rotated from round to round)
platform       str     *  platform
status         int     *  HTTP status; 0 when no HTTP response arrived
response_ms    float?  *  client time from connect to the last byte, each request on its own connection; empty
                          when status is 0
prediction_ms  float?  -  the prediction_ms of the response JSON; empty on error
error          str?    *  empty unless the request failed (a non-200 status, no reply, no prediction_ms)
"""))

PREDICTIONS = Table("predictions.csv", False, "one row per prediction log line the services printed", _columns("""
run_key        str     *  the step whose log it came from
platform       str     *  platform
ts             float?  -  epoch seconds
prediction_ms  float   *  decode + model, as the service timed it
backend        str?    -  keras or litert
"""))

COLDSTART = Table("coldstart.csv", False, "one row per cold-start repetition", _columns("""
platform                 str     *  platform
repetition               int     *  1..coldstart_repetitions
kind                     str     *  `container_restart` locally; `replicas_0_to_1` or `deploy_to_first_200` on
                                    clusters
start_to_first_200_ms    float?  *  restart to the first HTTP 200; empty if none came in time
attempts                 int?    *  requests sent, the 200 included
outcome                  str?    -  `ok` or `failed`
stop_ms                  float?  -  stopping the old instance, not part of the cold start
start_command_ms         float?  -  the start command itself
first_200_prediction_ms  float?  -  prediction_ms of that first 200
error                    str?    -  why it failed
"""))

RESOURCES = Table("resources.csv", False, "one row per CPU/memory sample", _columns("""
run_key          str     *  the ab run sampled
platform         str     *  platform
t_s              float   *  seconds since ab started (the baseline sample is slightly negative)
cpu_pct          float?  *  % of one core since the previous sample; empty for the first
mem_bytes        float?  *  working set
mem_limit_bytes  float?  *  limit; empty when unlimited or unknown
"""))

# issue 11: every failed request of an ab run under the layer that reported it, its cause named only where the
# evidence proves it (issue 24; analysis/bench/layers.py), and the oversized-body check of each function path. The
# layer columns add up to `errors`.
ERROR_LAYERS = ("runtime_408", "runtime_error", "runtime_backlog", "platform_own", "proxy", "ingress",
                "client_timeout", "unattributed")
LAYERS = Table(
    "errors_by_layer.csv", False, "one row per ab run: its failed requests by the layer that reported them",
    _RUN_IDENT + _columns("""
errors           int     *  failed requests of the run (runs.csv errors)
runtime_408      int     *  408 pages from the runtime's join (its access log)
runtime_error    int     *  other non-2xx pages the runtime sent (500, 413, 4xx; its access log), or the user code's
                            own non-2xx answers where the platform's log names them
runtime_backlog  int     *  runtime backlog overflow, the request never reached the handler: the front layer's
                            no-reply failures where backlog_check agrees; with nothing in front of the runtime, the
                            connections its own socket reset or refused
platform_own     int     -  reported by a platform's own component (the OpenFaaS gateway or watchdog, the Fission
                            router, ...: a reply it made, from the lines its kind reads, Kind.error_origins);
                            absent in runs made before it, read as 0
proxy            int     *  reported by docker-proxy: ab's empty replies, resets and refusals on a direct path whose
                            backlog_check does not agree
ingress          int     *  reported by nginx: replies it produced itself (413, 502, 504; a 502 on an upstream reset
                            that backlog_check does not confirm) or connections it closed
client_timeout   int     *  reported by ab: it gave up waiting (-s)
unattributed     int     *  failed requests no log line accounts for
not_in_runtime_log int?  -  requests that reached the front layer (ab's attempts, or nginx's POST lines) minus the
                            runtime's POST access lines; empty where the runtime wrote none; absent before issue 24
backlog_check    str?    -  `agrees` (the front layer's no-reply failures + the runtime server's non-2xx replies with
                            no access line <= not_in_runtime_log <= that + time-outs), `disagrees`, `no access log`,
                            or empty (nothing to check); absent before issue 24
evidence         str?    -  the log and metric facts behind the counts
"""))
BODYLIMIT = Table("bodylimit.csv", False, "one oversized POST per function path: who answered", _columns("""
platform     str     *  function or function_ingress
bytes        int     *  body size sent (bodylimit_bytes)
status       int     *  HTTP status; 0 when no reply arrived
answered_by  str     *  `ingress`, `runtime`, `none` or `unknown`
evidence     str?    -  the log line that names the layer
"""))

TABLES: dict[str, Table] = {t.file: t for t in (RUNS, REQUESTS, PROBE, PAIRED, PREDICTIONS, COLDSTART, RESOURCES,
                                                LAYERS, BODYLIMIT)}

# Percentiles need samples. The rule is MLPerf LoadGen's (the floor of its early stopping, loadgen/early_stopping.cc):
# the p-th percentile of n samples is shown only when n is so large that a binomial test with ONE sample above a
# value still proves, at 99 % confidence, that the true percentile is at most that value; that is the smallest n
# with P(Binomial(n, 1 - p/100) <= 1) <= 1 %, where the second-largest of the n samples becomes a 99 % upper bound
# on the p-th percentile. It gives LoadGen's published 64 for a p90 and 662 for a p99, and 11 for a median, 130 for
# a p95, 6636 for a p99.9. (This module's earlier rule, n * (1 - p) >= 6.62 "at 95 % confidence", matched 662 only
# and asked 67 for a p90.) A percentile below the median uses its mirror image (p10 as p90).
PERCENTILE_CONFIDENCE = 0.99
PERCENTILE_SAMPLES_ABOVE = 1


def samples_needed(percentile: float) -> int:
    """Fewest served requests a cell needs before its `percentile` is reported as a number: the smallest n with
    P(X <= 1) <= 1 % for X ~ Binomial(n, tail), tail = the smaller of p/100 and 1 - p/100 (see above)."""
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be between 0 and 100, got {percentile}")
    return _samples_needed(round(min(percentile, 100.0 - percentile) / 100.0, 12))


_SAMPLES_CACHE: dict[float, int] = {}


def _samples_needed(tail: float) -> int:
    if tail not in _SAMPLES_CACHE:
        risk = 1.0 - PERCENTILE_CONFIDENCE
        def at_most_one(n: int) -> float:  # P(X <= 1), X ~ Binomial(n, tail): decreasing in n
            return (1 - tail) ** n + n * tail * (1 - tail) ** (n - 1)
        low, high = PERCENTILE_SAMPLES_ABOVE + 1, PERCENTILE_SAMPLES_ABOVE + 2
        while at_most_one(high) > risk:
            low, high = high, high * 2
        while low < high:  # the smallest n in [low, high] with at_most_one(n) <= risk
            mid = (low + high) // 2
            low, high = (mid + 1, high) if at_most_one(mid) > risk else (low, mid)
        _SAMPLES_CACHE[tail] = low
    return _SAMPLES_CACHE[tail]


# The open-loop latency objective (issue 13, issue 24), judged the same way by the capacity search that writes rate
# runs (analysis/bench/rate.py) and by the report that reads them (analysis/capacity.py): at most OBJECTIVE_SHARE of
# the *scheduled* requests may miss it, a request missing it when it was served slower than slo_p99_ms, failed, or
# was dropped: one share, not a 1 % allowance for slow requests plus another for failed ones. Served requests
# slower than the SLO <= 1 % is the statement "p99 <= SLO"; counting failures in the same share makes a rate that
# fails its slow requests no better than one that serves them late.
OBJECTIVE_SHARE = 0.01


def share_ci(k: int, n: int, level: float) -> tuple[float, float, float]:
    """k of n, as a share with its two-sided Clopper-Pearson (exact binomial) interval at `level`; NaNs when n = 0."""
    from scipy import stats

    if n <= 0:
        nan = float("nan")
        return nan, nan, nan
    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return k / n, low, high


def requests_to_prove(level: float, share: float = OBJECTIVE_SHARE) -> int:
    """Fewest scheduled requests with which a rate can meet the objective *surely*: the smallest n whose
    Clopper-Pearson upper end for 0 misses of n is <= `share`, i.e. (1 - level) / 2 >= (1 - share) ** n (368 at
    95 %, 528 at 99 %). A run shorter than this can meet the objective, never surely."""
    import math

    if not 0 < level < 1 or not 0 < share < 1:
        raise ValueError(f"level and share must lie in (0, 1), got {level}, {share}")
    n = math.ceil(math.log((1 - level) / 2) / math.log(1 - share))
    while share_ci(0, n, level)[2] > share:  # floating point at the boundary
        n += 1
    return n


# open-loop (issue 13): the `rate` experiment and `python -m analysis.bench rate` (analysis/bench/openloop.py). Latency
# is counted from each request's *scheduled* send time; a run whose generator fell behind is valid = 0.
RATE_OUTCOMES = ("served", *ERROR_CAUSES, "dropped")
RATE_RUNS = Table("rate_runs.csv", False, "one row per open-loop run (one platform at one offered rate)", _columns("""
run_key             str     *  folder name under raw/, e.g. `rate-function-90pct` or `rate-container-12.5rps`;
                               a repetition after the first ends in -r<N> (`rate-function-90pct-r2`)
experiment          str     *  `rate`
platform            str     *  a platform of manifest.json
arrivals            str?    -  `poisson`, `constant` or `trace`
seed                int?    -  seed of the Poisson schedule
capacity_pct        float?  *  offered rate in % of capacity_rps; empty for an explicit rate
capacity_rps        float?  *  the platform's closed-loop capacity in this run: best served req/s of its concurrency
                               cells (each the median of its repetitions); empty for an explicit rate
offered_rps         float?  *  the rate asked for, requests per second
duration_s          float?  -  seconds of arrivals
max_outstanding     int?    -  cap on requests in flight (one due above it is dropped)
scheduled           int?    *  requests the schedule holds (sent + dropped)
scheduled_rps       float?  -  scheduled / duration_s: the offered rate this schedule realised
sent                int?    -  requests sent (scheduled - dropped)
dropped             int?    *  requests not sent because max_outstanding were in flight: never delayed, never
                               retried
served              int?    *  requests that received a complete 2xx answer
errors              int?    *  sent requests without a complete 2xx answer, each counted once; = non_2xx + reset +
                               refused + empty_reply + timeout
non_2xx             int?    *  whole replies with another status (redirects are not followed)
reset               int?    *  connection reset (RST) or closed in the middle of a reply
refused             int?    *  connection refused, or could not be opened for another reason than a timeout
empty_reply         int?    *  connection closed with no byte of reply
timeout             int?    *  no complete reply within request_timeout_s
achieved_rps        float?  *  served / the longer of duration_s and the time to the last completion
mean_ms             float?  -  mean latency of the served requests, from the scheduled send time
min_ms              float?  -  fastest served request
max_ms              float?  -  slowest served request
p50_ms              float?  *  latency percentiles of the served requests from the scheduled send time
                               (HdrHistogram, 3 significant digits); empty below the samples each needs: 11 for p50
p90_ms              float?  -  64 served requests needed
p99_ms              float?  *  662 served requests needed
p999_ms             float?  -  p99.9: 6636 served requests needed
lag_p50_ms          float?  -  send lag (sent - scheduled) of the sent requests: median
lag_p99_ms          float?  *  send lag p99: above max_lag_ms the run is invalid
lag_max_ms          float?  -  largest send lag
max_lag_ms          float?  -  the threshold (rate_max_lag_ms)
valid               int?    *  1 when the generator kept time (lag_p99_ms <= max_lag_ms); 0 rows never enter a
                               figure
invalid_reason      str?    -  why valid is 0
server_mean_ms      float?  -  mean server-side time from the /metrics histogram delta
prediction_mean_ms  float?  -  mean prediction_ms of the run's prediction log lines
cpu_mean_pct        float?  -  serving container CPU during the run, % of one core
cpu_max_pct         float?  -  highest sampled CPU, % of one core
started_utc         str?    -  wall-clock time of the schedule's t = 0
outcome             str?    *  `ok`, or `no_capacity` (no finished concurrency run to take a fraction of: nothing
                               sent)
error               str?    -  why the run is not `ok`
search_probe        int?    -  the probe's number when a capacity search made the run (rate_search.csv), else
                               empty: such runs are the search's evidence, not cells of the rate grid
"""))
RATE_REQUESTS = Table("rate_requests.csv", False, "one row per scheduled request of every open-loop run", _columns("""
run_key      str     *  the run (rate_runs.csv)
platform     str     *  platform
seq          int     -  1..scheduled, in schedule order
scheduled_s  float   *  intended send time, seconds from the schedule's start (started_utc)
sent_s       float?  -  actual send time; empty when dropped
lag_ms       float?  -  sent - scheduled; empty when dropped
latency_ms   float?  *  completion (last byte, or the failure) - scheduled time; empty when dropped
status       int     -  HTTP status; 0 when no HTTP reply arrived
outcome      str     *  `served`, a cause of rate_runs.csv errors, or `dropped`
served       int     *  1 for a complete 2xx answer, else 0
error        str?    -  what the client saw for a failed or dropped request
"""))
TABLES.update({t.file: t for t in (RATE_RUNS, RATE_REQUESTS)})

# issue 24: the capacity search (`python -m analysis.bench rate-search`), one row per search; its probes are ordinary
# rate runs in rate_runs.csv. The writer and capacity.py both take its columns from here.
RATE_SEARCH = Table("rate_search.csv", False, "one row per capacity search (issue 24)", _columns("""
run_key             str     *  `rate-search-<platform>`: raw/ holds its search.json and search.csv
platform            str     *  platform searched
low_rps             float?  *  highest offered rate shown to meet the objective (the repeated boundary); empty when
                               even the bracket's low end missed it
high_rps            float?  *  lowest offered rate above it shown to miss it; empty when the bracket's high end met it
low_pct             float?  -  calibrated search: low_rps as % of the throughput measured just before each probe
                               (rate.saturation_throughput); low_rps is then this share of the closed-loop capacity
high_pct            float?  -  calibrated search: high_rps as % of that throughput
measured_low_rps    float?  -  calibrated search: the mean rate the valid probes at low_pct offered
measured_high_rps   float?  -  calibrated search: the mean rate the valid probes at high_pct offered
calibration_rps_median float? - calibrated search: the median of the throughputs measured before the probes
width_pct           float?  -  (high_rps - low_rps) / low_rps, %
converged           int     *  1 when width_pct <= rate_search_tolerance_pct
boundary_repeated   int     -  1 when low_rps was run a second time
boundary_confirmed  int     *  1 when the runs at low_rps together met the objective
probes              int     *  open-loop runs the search made (in rate_runs.csv)
requests_per_probe  int     -  scheduled requests each probe held at least (schema.requests_to_prove at level)
level               float   -  confidence of each probe's Clopper-Pearson interval
stop_reason         str?    -  why the search stopped
started_utc         str?    -  when it began
"""))

# autoscaling (paper profile): analysis/bench/autoscale.py samples the Deployment and its HPA through kubectl
AUTOSCALE = Table(
    "autoscale.csv", False, "one row per sample of an autoscaling run (the Deployment and its HPA)",
    _columns("""
run_key               str     *  the run: `autoscale-<platform>-c<C>`
platform              str     *  platform
t_s                   float   *  seconds from the start of the load (negative: the sample taken before it)
spec_replicas         int?    *  the Deployment's spec.replicas: what the HPA last asked for
ready_replicas        int?    *  the Deployment's status.readyReplicas (absent in kubectl's answer = 0)
hpa_current_replicas  int?    *  the HPA's status.currentReplicas
hpa_desired_replicas  int?    *  the HPA's status.desiredReplicas
hpa_cpu_pct           float?  *  the HPA's status.currentCPUUtilizationPercentage: mean CPU of the pods in % of
                                 their CPU request; empty until metrics-server has a value
"""))
TABLES[AUTOSCALE.file] = AUTOSCALE
TABLES[RATE_SEARCH.file] = RATE_SEARCH
