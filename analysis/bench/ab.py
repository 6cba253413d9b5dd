"""ApacheBench (`ab`) for the whole project: build the command, run it, keep its files, parse them.

One module so that the benchmark driver (`python -m analysis.bench`), the playbooks and the analysis all read
ab's output the same way. ab 2.3 (`apache2-utils`) behaves in ways that are easy to misread; the parser
keeps them visible instead of smoothing them over:

- "Complete requests" counts every finished attempt, failed ones included, and the -g file has a row for
  each of them: with `-r` a refused connection is counted as complete, as an exception and as a receive
  failure; a connection the server resets is counted as receive, length *and* exception failure. So
  "Failed requests" can exceed the number of bad replies, and it is never "complete minus successful".
  On Linux loopback a refused connect shows up as Exceptions/Receive, not as Connect.
- A response whose body length differs from the first response's is a "Failed request (Length)", even
  when its status is 200, and a non-2xx reply of another length is counted twice (non-2xx and Length).
- `-g` rows are sorted by total time, not by start time; its `seconds` column has 1 s resolution and its
  times are whole milliseconds. `-e` percentiles come from the microsecond timings and are finer.
- "Time per request (mean)" is concurrency x wall time / requests, not a per-request latency.
- Without `-r` the first receive error (e.g. a reset at c >= 10 against a small listen backlog) aborts the
  whole run; a socket timeout (`-s`) always aborts it. An aborted run prints a line such as
  `apr_socket_recv: Connection reset by peer (104)` to stderr and, when some requests had finished,
  `Total of N requests completed` to stdout, and exits non-zero.
- ab -e reads past the end of its timing array for the top percentiles of small runs: percentile i uses
  request number int(0.5 + done * i / 100), which is >= done for i >= 100 - 50 / done (p99 when done <= 50,
  p95..p99 when done = 9). Those rows hold garbage (1e15 or 0). `parse_run_files` replaces exactly those
  rows with the largest time (ab's own 100 % row), the value ab meant, and lists them in `notes`.
- On SIGINT ab prints the statistics of the requests done so far and exits 1; `run_ab` uses that to stop a
  run that overruns its wall-clock limit without losing what it measured.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

STDOUT_FILE = "ab.stdout"
STDERR_FILE = "ab.stderr"
GNUPLOT_FILE = "ab.tsv"  # ab -g
PERCENTILES_FILE = "ab.csv"  # ab -e
INSTALL_HINT = "install ApacheBench: apt-get install -y apache2-utils (Debian/Ubuntu) or dnf install httpd-tools"
PERCENTILE_COLUMNS = (50, 66, 75, 80, 90, 95, 98, 99, 100)
GNUPLOT_HEADER = ["starttime", "seconds", "ctime", "dtime", "ttime", "wait"]
# ab prints one of these to stderr when it gives up; the text after the colon is the OS/APR error.
_ABORT_LINE = re.compile(r"^(?P<call>apr_[a-z_]+(?:\(\))?|Test aborted after \d+ failures|[A-Za-z_ ]+ failed!?)"
                         r"(?::\s*(?P<reason>.*?))?\s*$")
_PROGRESS_LINE = re.compile(r"^(Completed|Finished) \d+ requests$")


# --------------------------------------------------------------------------------------------- errors
class AbError(Exception):
    """Any problem with running or reading ApacheBench; the message says what to do."""


class AbNotFound(AbError):
    """The `ab` executable is not on PATH."""


class AbParseError(AbError):
    """A file ab wrote cannot be read as ab output. `path` names the file."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class AbAborted(AbError):
    """ab stopped before finishing the run; `result` holds everything it printed and wrote."""

    def __init__(self, result: AbResult) -> None:
        self.result = result
        super().__init__(
            f"ab aborted the run ({result.error}); its output is kept in {result.stdout_path} and "
            f"{result.stderr_path}"
        )


# -------------------------------------------------------------------------------------------- command
@dataclass(frozen=True)
class AbCommand:
    """One ab invocation. Defaults are the project's: POST a file, keep going on receive errors (-r)."""

    url: str
    requests: int
    concurrency: int
    post_file: Path | None = None
    content_type: str = "image/jpeg"
    socket_timeout_s: int = 30
    keepalive: bool = False
    accept_variable_length: bool = False  # -l: do not count Length failures at all (ab >= 2.3 of httpd 2.4.7)
    continue_on_receive_errors: bool = True  # -r
    ab: str = "ab"
    cpus: str | None = None  # `taskset -c CPUS ab ...`: keep ab off the serving containers' CPUs (issue 14)

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError(f"ab needs at least one request, got requests={self.requests}")
        if not 1 <= self.concurrency <= self.requests:
            raise ValueError(
                f"ab needs 1 <= concurrency <= requests, got concurrency={self.concurrency}, "
                f"requests={self.requests}"
            )
        if self.socket_timeout_s < 1:
            raise ValueError(f"ab -s takes whole seconds >= 1, got {self.socket_timeout_s}")
        if not re.match(r"^https?://[^/]+/", self.url):
            raise ValueError(f"ab needs a URL with a path, e.g. http://127.0.0.1:8080/, got {self.url!r}")

    def argv(self, gnuplot_path: Path, percentiles_path: Path) -> list[str]:
        """The full argument list; ab is given absolute output paths so the working directory is irrelevant."""
        argv = [self.ab, "-n", str(self.requests), "-c", str(self.concurrency), "-s", str(self.socket_timeout_s)]
        if self.post_file is not None:
            argv += ["-p", str(self.post_file), "-T", self.content_type]
        if self.continue_on_receive_errors:
            argv += ["-r", "-v", "1"]  # -v 1: one stderr line per receive error, naming it (reset/refused)
        if self.keepalive:
            argv.append("-k")
        if self.accept_variable_length:
            argv.append("-l")
        argv += ["-g", str(gnuplot_path), "-e", str(percentiles_path), self.url]
        return argv


def find_ab(ab: str = "ab") -> str:
    """Absolute path of the ab executable, or AbNotFound with the install command."""
    found = shutil.which(ab)
    if found is None:
        raise AbNotFound(f"ApacheBench ({ab!r}) is not on PATH; {INSTALL_HINT}")
    return found


def ab_version(ab: str = "ab") -> str:
    """`2.3` from `ab -V` (the revision is kept: `2.3 <$Revision: 1934973 $>`)."""
    out = subprocess.run([find_ab(ab), "-V"], capture_output=True, text=True, timeout=10, check=False).stdout
    match = re.search(r"Version (\S+)(?: <\$Revision: (\d+) \$>)?", out)
    if not match:
        raise AbParseError("ab -V", f"no version in its output: {out[:200]!r}")
    return match.group(1) + (f" (revision {match.group(2)})" if match.group(2) else "")


# ------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class AbFailures:
    """ab's "Failed requests" and the split it prints in parentheses (all zero when it prints none)."""

    total: int = 0
    connect: int = 0
    receive: int = 0
    length: int = 0
    exceptions: int = 0  # no sum of these is a count of failed requests: see RequestClasses


@dataclass(frozen=True)
class ConnectionTimes:
    """One row of ab's "Connection Times (ms)" table. sd/median are None when ab prints the short form."""

    min_ms: int
    mean_ms: int
    sd_ms: float | None
    median_ms: int | None
    max_ms: int


@dataclass(frozen=True)
class AbSummary:
    """What ab printed to stdout, typed. Fields ab omits for this run are None."""

    concurrency: int
    time_taken_s: float
    completed: int
    failures: AbFailures
    non_2xx: int
    requests_per_s: float | None
    time_per_request_ms: float | None  # concurrency x wall time / completed — NOT a latency
    time_per_request_all_ms: float | None  # wall time / completed
    server_software: str | None = None
    server_hostname: str | None = None
    server_port: int | None = None
    document_path: str | None = None
    document_length: int | None = None  # None when ab prints "Variable" (-l)
    write_errors: int = 0
    keepalive_requests: int | None = None
    total_transferred_bytes: int | None = None
    total_body_sent_bytes: int | None = None
    html_transferred_bytes: int | None = None
    transfer_rate_kbytes_per_s: float | None = None
    connection_times: dict[str, ConnectionTimes] = field(default_factory=dict)
    percentiles_ms: dict[int, int] = field(default_factory=dict)  # the whole-ms table in stdout
    finished_normally: bool = True  # False when ab printed partial statistics after SIGINT


@dataclass(frozen=True)
class AbRequest:
    """One row of ab -g. Times are whole milliseconds; start_s has 1 s resolution (ab's `seconds`)."""

    starttime: str
    start_s: int
    connect_ms: int
    processing_ms: int
    total_ms: int
    wait_ms: int


@dataclass
class AbResult:
    """Everything one ab run left behind, parsed. `error` is None only for a run ab finished normally."""

    argv: list[str]
    returncode: int | None
    wall_s: float | None
    stdout_path: Path
    stderr_path: Path
    gnuplot_path: Path
    percentiles_path: Path
    summary: AbSummary | None
    percentiles: dict[float, float]  # from -e: percent -> ms (0..100)
    requests: list[AbRequest]
    error: str | None = None
    completed_before_abort: int | None = None  # "Total of N requests completed" on an abort
    notes: list[str] = field(default_factory=list)  # corrections made while parsing (see the module docstring)

    @property
    def aborted(self) -> bool:
        return self.error is not None

    @property
    def classified(self) -> RequestClasses | None:
        """Each attempt of the run in exactly one class (None when ab printed no statistics)."""
        if self.summary is None:
            return None
        return classify(self.summary, self.stderr_text(), self.requests, timed_out=self.timed_out)

    @property
    def timed_out(self) -> bool:
        """ab gave up on a request slower than -s (it then aborts the whole run)."""
        return bool(self.error and "timeout specified has expired" in self.error)

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def outcome(self) -> str:
        """`ok`, `aborted` (ab gave up) or `interrupted` (stopped by SIGINT, partial statistics kept)."""
        if self.error is None:
            return "ok"
        if self.summary is not None and not self.summary.finished_normally:
            return "interrupted"
        return "aborted"

    def percentile(self, pct: float) -> float | None:
        return self.percentiles.get(float(pct))

    def check(self) -> AbResult:
        """Raise AbAborted unless ab finished the run normally; return self so calls can chain."""
        if self.error is not None:
            raise AbAborted(self)
        return self

    def to_dict(self) -> dict:
        """JSON-friendly view without the per-request rows (those stay in the -g file)."""
        data = {
            "argv": self.argv,
            "returncode": self.returncode,
            "wall_s": self.wall_s,
            "outcome": self.outcome,
            "error": self.error,
            "completed_before_abort": self.completed_before_abort,
            "summary": asdict(self.summary) if self.summary else None,
            "percentiles": {str(k): v for k, v in self.percentiles.items()},
            "request_rows": len(self.requests),
            "notes": self.notes,
        }
        return json.loads(json.dumps(data, default=str))


# ---------------------------------------------------------------------------------- request classes
_RECV_ERROR = re.compile(r"^apr_socket_recv: (?P<text>.*?) \((?P<code>\d+)\)\s*$", re.MULTILINE)
ECONNREFUSED, ECONNRESET = 111, 104


@dataclass(frozen=True)
class RequestClasses:
    """ab's attempts, each counted once, in exactly one class; `served + errors == attempts`.

    ab's own "Failed requests" counts one bad attempt up to three times (a reset is a Receive, a Length and
    an Exceptions failure; a refused connection a Receive and sometimes an Exceptions one), so its total is
    not a number of requests. The classes are derived instead from facts that count each attempt once:
    - with `-r`, every reset or refused attempt is exactly one Receive failure, and ab `-v 1` names each one
      on stderr (`apr_socket_recv: Connection refused (111)` / `Connection reset by peer (104)`);
    - a connection closed with no byte of reply is only a Length failure: with fixed-length 2xx bodies (ours:
      256 bytes) the 2xx bodies account for "HTML transferred", so the missing bytes count the empty replies;
      where non-2xx pages blur that sum, the -g rows that saw no first byte are counted instead;
    - "Non-2xx responses" counts whole replies with another status.
    `source` says how reset and refused were told apart: `stderr` (ab -v 1), or `inferred` for runs recorded
    without -v 1 (all refused when no byte ever arrived, else all reset); `runs.csv` where layers.py reads them back
    from a runs.csv row, which keeps the counts but not how they were told apart.
    """

    attempts: int
    non_2xx: int
    reset: int
    refused: int
    empty_reply: int
    timeout: int
    length_mismatch: int
    source: str

    @property
    def errors(self) -> int:
        return self.non_2xx + self.reset + self.refused + self.empty_reply + self.timeout

    @property
    def served(self) -> int:
        return self.attempts - (self.errors - self.timeout)  # a timed-out attempt has no -g row

    @property
    def no_reply(self) -> int:
        """Failed attempts that got no reply at all: the -g rows to set apart from the latency of served ones."""
        return self.reset + self.refused + self.empty_reply


def classify(summary: AbSummary, stderr: str, rows: Sequence[AbRequest] = (), timed_out: bool = False
             ) -> RequestClasses:
    """Count each attempt of one ab run once (see RequestClasses)."""
    f = summary.failures
    receive = f.receive
    codes = [int(m.group("code")) for m in _RECV_ERROR.finditer(stderr)]
    if codes and len(codes) == receive:
        refused = sum(1 for c in codes if c == ECONNREFUSED)
        reset = receive - refused
        source = "stderr"
    else:
        never_replied = not summary.html_transferred_bytes and summary.completed == receive
        refused, reset = (receive, 0) if never_replied else (0, receive)
        source = "inferred"
    # Attempts without a reply after a first reply set ab's document length also add a Length failure each.
    length_of_no_reply = receive if summary.document_length else 0
    cap = max(0, f.length - length_of_no_reply)
    empty = 0
    length = summary.document_length
    if cap and length and summary.html_transferred_bytes is not None:
        replies = summary.completed - receive
        if summary.non_2xx == 0:
            deficit = replies * length - summary.html_transferred_bytes
            if deficit > 0 and deficit % length == 0:
                empty = min(cap, deficit // length)
            else:  # some bodies merely shorter: rows without a first byte, as many as the missing bytes allow
                empty = min(cap, max(0, deficit) // length, max(0, _no_first_byte(rows) - receive))
        else:  # error pages of other lengths fill the byte count: count rows without a first byte
            empty = min(max(0, cap - summary.non_2xx), max(0, _no_first_byte(rows) - receive))
    mismatch = max(0, f.length - length_of_no_reply - empty - summary.non_2xx)
    return RequestClasses(attempts=summary.completed, non_2xx=summary.non_2xx, reset=reset, refused=refused,
                          empty_reply=empty, timeout=1 if timed_out else 0, length_mismatch=mismatch,
                          source=source)


def _no_first_byte(rows: Sequence[AbRequest]) -> int:
    return sum(1 for r in rows if r.wait_ms == 0 and r.total_ms >= 1)


def served_flags(rows: Sequence[AbRequest], classes: RequestClasses | None) -> list[int]:
    """1 for each -g row counted as a reply, 0 for the rows of failed attempts that got none.

    ab's -g rows carry no status. An attempt that got no reply never saw a first byte (wait 0), so the
    `classes.no_reply` rows are taken from those: first the ones that took >= 1 ms, longest first (a reply
    that merely came within the same millisecond has total 0-1 ms), then the rest. Non-2xx replies cannot be
    told apart in -g at all: they stay in the served rows (the report says so where a cell has any).
    """
    flags = [1] * len(rows)
    if classes is None or not classes.no_reply:
        return flags
    candidates = sorted((i for i, r in enumerate(rows) if r.wait_ms == 0),
                        key=lambda i: (rows[i].total_ms < 1, -rows[i].total_ms))
    for i in candidates[:classes.no_reply]:
        flags[i] = 0
    return flags


# ------------------------------------------------------------------------------------------- parsing
def _int(pattern: str, text: str) -> int | None:
    match = re.search(pattern, text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _float(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def _str(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1).strip() if match else None


def parse_stdout(text: str, source: Path | str = STDOUT_FILE, stderr: str | None = None) -> AbSummary:
    """Parse ab's statistics. Raises AbParseError naming `source` when the required lines are missing.

    Pass ab's stderr too when you have it: for runs over 150 requests only its "Finished N requests" line
    tells a finished run from one stopped by SIGINT (both print statistics).
    """
    concurrency = _int(r"^Concurrency Level:\s+(\d+)", text)
    time_taken = _float(r"^Time taken for tests:\s+([\d.]+) seconds", text)
    completed = _int(r"^Complete requests:\s+(\d+)", text)
    failed = _int(r"^Failed requests:\s+(\d+)", text)
    missing = [
        name
        for name, value in (
            ("Concurrency Level", concurrency),
            ("Time taken for tests", time_taken),
            ("Complete requests", completed),
            ("Failed requests", failed),
        )
        if value is None
    ]
    if missing:
        first = text.strip().splitlines()[-1] if text.strip() else "(empty)"
        raise AbParseError(source, f"not an ab statistics report: no {', '.join(missing)} line (last line: {first!r})")
    assert concurrency is not None and time_taken is not None and completed is not None and failed is not None

    split = re.search(
        r"^\s+\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", text, re.MULTILINE
    )
    if split:
        connect, receive, length, exceptions = (int(g) for g in split.groups())
    elif failed:
        raise AbParseError(
            source, f"'Failed requests: {failed}' without the (Connect, Receive, Length, Exceptions) line"
        )
    else:
        connect = receive = length = exceptions = 0
    failures = AbFailures(failed, connect, receive, length, exceptions)

    doc_length_text = _str(r"^Document Length:\s+(.+)$", text)
    if doc_length_text is None or doc_length_text.startswith("Variable"):
        document_length = None
    else:
        match = re.match(r"(\d+) bytes", doc_length_text)
        document_length = int(match.group(1)) if match else None

    times: dict[str, ConnectionTimes] = {}
    for name, mn, mean, sd, median, mx in re.findall(
        r"^(Connect|Processing|Waiting|Total):\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s*$", text, re.MULTILINE
    ):
        times[name.lower()] = ConnectionTimes(int(mn), int(mean), float(sd), int(median), int(mx))
    if not times:  # ab's short table when only one request finished: min avg max
        for name, mn, mean, mx in re.findall(
            r"^(Connect|Processing|Waiting|Total):\s+(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.MULTILINE
        ):
            times[name.lower()] = ConnectionTimes(int(mn), int(mean), None, None, int(mx))

    percentiles = {int(p): int(ms) for p, ms in re.findall(r"^\s*(\d+)%\s+(\d+)", text, re.MULTILINE)}
    port = _int(r"^Server Port:\s+(\d+)", text)
    return AbSummary(
        concurrency=concurrency,
        time_taken_s=time_taken,
        completed=completed,
        failures=failures,
        non_2xx=_int(r"^Non-2xx responses:\s+(\d+)", text) or 0,
        requests_per_s=_float(r"^Requests per second:\s+([\d.]+)", text),
        time_per_request_ms=_float(r"^Time per request:\s+([\d.]+) \[ms\] \(mean\)\s*$", text),
        time_per_request_all_ms=_float(r"^Time per request:\s+([\d.]+) \[ms\] \(mean, across", text),
        server_software=_str(r"^Server Software:(.*)$", text) or None,
        server_hostname=_str(r"^Server Hostname:\s+(.+)$", text),
        server_port=port,
        document_path=_str(r"^Document Path:\s+(.+)$", text),
        document_length=document_length,
        write_errors=_int(r"^Write errors:\s+(\d+)", text) or 0,
        keepalive_requests=_int(r"^Keep-Alive requests:\s+(\d+)", text),
        total_transferred_bytes=_int(r"^Total transferred:\s+(\d+) bytes", text),
        total_body_sent_bytes=_int(r"^Total body sent:\s+(\d+)", text),
        html_transferred_bytes=_int(r"^HTML transferred:\s+(\d+) bytes", text),
        transfer_rate_kbytes_per_s=_float(r"^Transfer rate:\s+([\d.]+) \[Kbytes/sec\] received", text),
        connection_times=times,
        percentiles_ms=percentiles,
        finished_normally=_finished_normally(text, stderr),
    )


def _finished_normally(stdout: str, stderr: str | None) -> bool:
    """ab ends "(be patient)...done" (<= 150 requests) or prints "Finished N requests" to stderr (more)."""
    if re.search(r"\(be patient\)\.*done\s*$", stdout, re.MULTILINE):
        return True
    if re.search(r"\(be patient\)\.\.\.\s*$", stdout, re.MULTILINE):
        return False
    if stderr is not None:
        return bool(re.search(r"^Finished \d+ requests", stderr, re.MULTILINE))
    return True


def _data_lines(path: Path, flag: str, header: str, strip_header: bool = False) -> list[tuple[int, str]]:
    """The numbered non-blank lines under the header of a file ab writes at the end (-g, -e); none for an empty
    file. A missing file or another first line is an AbParseError naming the file. `strip_header`: the header may
    carry surrounding white space (as -e's is read)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise AbParseError(path, f"file not found (ab writes {flag} only when it finishes or is interrupted)") from None
    if not lines:
        return []
    if (lines[0].strip() if strip_header else lines[0]) != header:
        raise AbParseError(path, f"first line is not ab's {flag} header {header!r}: {lines[0][:80]!r}")
    return [(number, line) for number, line in enumerate(lines[1:], start=2) if line.strip()]


def parse_gnuplot(path: Path | str) -> list[AbRequest]:
    """Rows of an ab -g file, in ab's order (sorted by total time). Missing file -> AbParseError."""
    path = Path(path)
    rows = []
    for number, line in _data_lines(path, "-g", "\t".join(GNUPLOT_HEADER)):
        parts = line.split("\t")
        if len(parts) != len(GNUPLOT_HEADER):
            raise AbParseError(path, f"line {number} has {len(parts)} tab-separated fields, expected 6: {line[:80]!r}")
        try:
            rows.append(AbRequest(parts[0], *(int(p) for p in parts[1:])))
        except ValueError:
            raise AbParseError(path, f"line {number} has a non-integer time: {line[:80]!r}") from None
    return rows


def parse_percentiles(path: Path | str) -> dict[float, float]:
    """ab -e: percent served (0..100) -> time in ms. Missing file -> AbParseError."""
    path = Path(path)
    out: dict[float, float] = {}
    for number, line in _data_lines(path, "-e", "Percentage served,Time in ms", strip_header=True):
        try:
            pct, ms = line.split(",")
            out[float(pct)] = float(ms)
        except ValueError:
            raise AbParseError(path, f"line {number} is not 'percent,ms': {line[:80]!r}") from None
    return out


def repair_percentiles(percentiles: dict[float, float], done: int) -> tuple[dict[float, float], list[float]]:
    """Replace the -e rows ab read from beyond its array (see the module docstring) with the 100 % row.

    Returns the repaired table and the percents replaced. Uses ab's own index formula, so it changes exactly
    the rows ab got wrong and no others.
    """
    if done < 1 or 100.0 not in percentiles:
        return percentiles, []
    fixed = dict(percentiles)
    replaced = []
    for pct in percentiles:
        if 0 < pct < 100 and int(0.5 + done * pct / 100.0) >= done:
            fixed[pct] = percentiles[100.0]
            replaced.append(pct)
    return fixed, replaced


def abort_reason(stdout: str, stderr: str, returncode: int | None) -> str | None:
    """Why ab gave up, from what it printed; None when it finished normally."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not _PROGRESS_LINE.match(ln.strip())]
    if returncode == 0:  # with -r -v 1 ab notes each receive error it survived; those do not end the run
        lines = [ln for ln in lines if not _RECV_ERROR.match(ln)]
    reasons = [ln for ln in lines if _ABORT_LINE.match(ln)]
    if returncode == 0 and not reasons:
        return None
    if reasons:
        return "; ".join(reasons)
    if lines:
        return lines[-1]
    if returncode is None:
        return "ab did not exit"
    if returncode < 0:
        return f"ab was killed by signal {-returncode}"
    return f"ab exited with status {returncode}"


def parse_run_files(
    directory: Path | str, argv: Sequence[str] = (), returncode: int | None = 0, wall_s: float | None = None
) -> AbResult:
    """Re-read one run's files (ab.stdout, ab.stderr, ab.tsv, ab.csv) from `directory`.

    `returncode` is ab's exit status as recorded when it ran (run_ab stores it); with the default 0 only
    what ab printed decides whether the run was aborted.
    """
    directory = Path(directory)
    stdout_path, stderr_path = directory / STDOUT_FILE, directory / STDERR_FILE
    gnuplot_path, percentiles_path = directory / GNUPLOT_FILE, directory / PERCENTILES_FILE
    try:
        stdout = stdout_path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise AbParseError(stdout_path, "file not found; this folder holds no ab run") from None
    stderr = stderr_path.read_text(encoding="utf-8", errors="replace") if stderr_path.exists() else ""
    error = abort_reason(stdout, stderr, returncode)
    match = re.search(r"Total of (\d+) requests completed", stdout)  # follows "(be patient)..." on its line
    completed_before_abort = int(match.group(1)) if match else None

    summary: AbSummary | None
    percentiles: dict[float, float] = {}
    requests: list[AbRequest] = []
    if error is None:  # a finished run must parse completely
        summary = parse_stdout(stdout, stdout_path, stderr)
        percentiles = parse_percentiles(percentiles_path)
        requests = parse_gnuplot(gnuplot_path)
    else:  # an aborted ab prints no statistics; an interrupted one prints them for what it finished
        try:
            summary = parse_stdout(stdout, stdout_path, stderr)
        except AbParseError:
            summary = None
        if summary is not None:
            if percentiles_path.exists():
                percentiles = parse_percentiles(percentiles_path)
            if gnuplot_path.exists():
                requests = parse_gnuplot(gnuplot_path)
    if summary is not None and not summary.finished_normally:
        error = "ab was interrupted before it finished; the statistics cover the requests done so far"
    notes = []
    if summary is not None and percentiles:
        percentiles, replaced = repair_percentiles(percentiles, summary.completed)
        if replaced:
            shown = ", ".join(f"{p:g}" for p in replaced)
            notes.append(f"{percentiles_path.name}: percentiles {shown} were read by ab from beyond its "
                         f"{summary.completed} timings; replaced with the 100 % value")
    return AbResult(argv=list(argv), returncode=returncode, wall_s=wall_s, stdout_path=stdout_path,
                    stderr_path=stderr_path, gnuplot_path=gnuplot_path, percentiles_path=percentiles_path,
                    summary=summary, percentiles=percentiles, requests=requests, error=error,
                    completed_before_abort=completed_before_abort, notes=notes)


# ------------------------------------------------------------------------------------------- running
def run_ab(command: AbCommand, out_dir: Path | str, timeout_s: float = 600.0, check: bool = True) -> AbResult:
    """Run ab, writing ab.stdout/ab.stderr/ab.tsv/ab.csv into `out_dir`, and parse them.

    ab's output goes straight to files, so it survives whatever happens to this process. A run that exceeds
    `timeout_s` gets SIGINT (ab then prints the statistics of what it finished and exits) and, if it ignores
    that for 10 s, SIGKILL. Any exception here (including KeyboardInterrupt) stops ab before propagating.
    With `check`, a run ab did not finish raises AbAborted; without it the result says so in `.error`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executable = find_ab(command.ab)
    if command.post_file is not None and not Path(command.post_file).is_file():
        raise AbError(f"the payload to POST does not exist: {command.post_file}")
    argv = command.argv(out_dir / GNUPLOT_FILE, out_dir / PERCENTILES_FILE)
    argv[0] = executable
    if command.cpus:
        taskset = shutil.which("taskset")
        if taskset is None:
            raise AbError(f"ab is to be pinned to CPUs {command.cpus}, but taskset is not on PATH "
                          "(apt-get install util-linux), or set the knob ab_cpus to none")
        argv = [taskset, "-c", command.cpus, *argv]
    started = time.monotonic()
    timed_out = False
    with open(out_dir / STDOUT_FILE, "wb") as out, open(out_dir / STDERR_FILE, "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=_c_locale())
        try:
            try:
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                returncode = _stop(proc)
        except BaseException:
            _stop(proc)
            raise
    wall_s = round(time.monotonic() - started, 3)
    result = parse_run_files(out_dir, argv, returncode, wall_s)
    if timed_out:
        result.error = f"ab ran longer than its limit of {timeout_s:g} s and was stopped; " + (
            "partial statistics kept" if result.summary else "it printed no statistics"
        )
    if check:
        result.check()
    return result


def _stop(proc: subprocess.Popen) -> int:
    """SIGINT (ab prints what it has), then SIGKILL after 10 s. Returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _c_locale() -> dict[str, str]:
    """ab's messages are parsed, so pin the C locale (APR error strings follow it)."""
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    return env
