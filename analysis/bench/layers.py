"""Which layer reported each failed request of an ab run, and its cause where the evidence proves it (issues 11, 24).

A request that did not get a complete 2xx answer (analysis/bench/ab.py counts each once, by what the client saw:
non_2xx, reset, refused, empty_reply, timeout) is put under exactly one layer of the path it took. A layer that
the evidence shows made the failure is named as such; one that only *reported* it (passed on, or answered for, a
failure whose cause the evidence does not prove) is labelled "reported by":

    runtime_408      a 408 page from the Kubeless runtime's join (the call outlived FUNC_TIMEOUT, or the faithful
                     runtime's spurious 408): the runtime's access log has the 408 line
    runtime_error    another non-2xx page the runtime sent (500 from an exception, bottle's 413, the function's
                     400/413/415): its access log has the line; function_failures_total counts the raised ones
    runtime_backlog  runtime backlog overflow: the request never reached the handler. Named only where the
                     backlog check agrees (below); on a path with nothing in front of the runtime's own socket, the
                     connections that socket reset or refused (the check then says whether the access log confirms)
    platform_own     reported by a platform's own component (the OpenFaaS gateway or watchdog, the Fission router,
                     ...): a reply it made, or a connection its listener reset or refused, from the lines its kind
                     reads in the platform's log (Kind.error_origins), which also name the user code's own non-2xx
                     answers (counted as runtime_error); the cause may lie further in (a watchdog's 504 is the
                     function running past exec_timeout)
    proxy            reported by docker-proxy (in front of a published port): ab's empty replies, resets and
                     refusals on a direct path whose backlog check does not agree
    ingress          reported by nginx: a reply nginx produced itself (413 over client_max_body_size, 502 when the
                     upstream closed prematurely or reset a connection the check does not confirm, 504 on
                     proxy_read/connect timeouts) or a connection it closed
    client_timeout   reported by the client: ab gave up waiting (-s)
    unattributed     what the evidence does not account for (lost log lines); shown, never hidden

The backlog check. The runtime writes one access line for every request its handler answered, whatever the status,
and none for a connection it never took. So the requests that reached the layer in front of it (ab's attempts on a
direct path, nginx's POST lines through the ingress) minus the runtime's POST access lines are the requests that
never reached the handler, counted by the runtime itself. That number is compared with the connection-level
failures the front layer reported (ab's empty replies + resets + refusals; nginx's 502s whose error line says the
upstream reset or refused the connection), plus the non-2xx replies the runtime's server sent without an access
line (the access log is WSGI middleware, so the HTTP server's own pages bypass it: cheroot answers "408 Request
Timeout" on a connection whose request line has not arrived after its 10 s socket timeout; a few appear in
tests/test_error_layers.py's live overflows through docker-proxy, and stay unattributed). They
agree when that sum <= missing <= that sum + slack, where the slack is the requests whose access line may or may
not exist: the ones the client gave up on (ab's time-outs; through nginx also nginx's 504s), which the runtime may
still have answered and logged. No other tolerance: both sides are exact counts of the same requests, so any other
difference means lost or extra lines, and then the cause is not proven. A run whose server wrote no access line at
all (a server without Kubeless access lines, or none served) has no check. errors_by_layer.csv keeps both counts
(not_in_runtime_log, backlog_check).

Evidence comes from files under raw/<run_key>/: ab's (classes), server.log (the runtime's access lines),
metrics.before/after.txt (function_failures_total), ingress.access.log and ingress.error.log (nginx's lines written
during the run, kept by IngressLogs).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.bench import platforms as kinds
from analysis.bench.ab import RequestClasses

LAYERS = ("runtime_408", "runtime_error", "runtime_backlog", "platform_own", "proxy", "ingress", "client_timeout",
          "unattributed")
LAYER_NAMES = {
    "runtime_408": "runtime: 408 (join)",
    "runtime_error": "runtime: other status",
    "runtime_backlog": "runtime backlog overflow (never reached the handler)",
    "platform_own": "reported by the platform's own component",
    "proxy": "reported by docker-proxy (no reply)",
    "ingress": "reported by nginx (its own reply)",
    "client_timeout": "reported by ab (time-out)",
    "unattributed": "unattributed",
}
BACKLOG_AGREES = "agrees"
BACKLOG_DISAGREES = "disagrees"
BACKLOG_NO_LOG = "no access log"
INGRESS_ACCESS = "ingress.access.log"
INGRESS_ERROR = "ingress.error.log"
INGRESS_INFO = "ingress.json"

# The runtime's access line: Apache combined + "<s>/<us>" (function/kubeless/runtime/access_log.py)
_RUNTIME_LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) ')
# ingress-nginx 0.16.2's upstreaminfo format (roles/local_ingress/templates/nginx.conf.j2)
_NGINX_LINE = re.compile(
    r'^\S+ - \[[^\]]*\] - \S+ \[[^\]]+\] "(?P<request>[^"]*)" (?P<status>\d{3}) \d+ "[^"]*" "[^"]*" \d+ '
    r'(?P<request_time>[\d.]+) \[(?P<upstream>[^\]]*)\] (?P<addr>.+?) (?P<length>\S+) (?P<rtime>\S+) '
    r'(?P<ustatus>\S+) \S+$')
# error.log reasons nginx gives for an upstream it could not use, and its own refusals
_NGINX_REASONS = (
    ("upstream prematurely closed", "upstream prematurely closed connection"),
    ("reset by peer", "upstream reset the connection"),
    ("Connection refused", "upstream refused the connection"),
    ("timed out", "upstream timed out"),
    ("too large body", "body over client_max_body_size"),
    ("no live upstreams", "no live upstreams"),
)


@dataclass(frozen=True)
class BacklogCheck:
    """The front layer's connection-level failures against the requests missing from the runtime's access log."""

    reported: int  # failures the front layer reported with no reply from the runtime
    missing: int | None  # requests that reached the front layer minus the runtime's access lines; None: no log
    slack: int  # requests whose access line may or may not exist (the client, or nginx, gave up on them)
    unlogged: int = 0  # non-2xx replies from the runtime's server with no access line (its HTTP server's own pages)

    @property
    def verdict(self) -> str:
        """`agrees`, `disagrees`, `no access log`, or "" (nothing to check)."""
        if self.missing is None:
            return BACKLOG_NO_LOG if self.reported else ""
        low = self.reported + self.unlogged
        if low <= self.missing <= low + self.slack:
            return BACKLOG_AGREES if self.reported or self.missing else ""
        return BACKLOG_DISAGREES

    def describe(self, front: str) -> str:
        if self.missing is None:
            return f"backlog check: no runtime access log to match {self.reported} {front} failure(s) against"
        return (f"backlog check {self.verdict or 'n/a'}: {self.reported} failure(s) reported by {front}, "
                f"{self.missing} request(s) missing from the runtime's access log"
                + (f", {self.unlogged} of them non-2xx replies with no access line" if self.unlogged else "")
                + (f" (up to {self.slack} more allowed: time-outs)" if self.slack else ""))


@dataclass(frozen=True)
class Attribution:
    counts: dict[str, int]  # layer -> failed requests
    evidence: str  # one line: what each count rests on
    check: BacklogCheck | None = None  # the backlog check, where the path has a runtime access log to match


# ----------------------------------------------------------------------------------------- collection
class IngressLogs:
    """nginx's access and error lines written during a run (byte offsets, as FileLogs), and its CPU time."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _size(self, name: str) -> int:
        try:
            return (self.folder / name.replace("ingress.", "")).stat().st_size
        except FileNotFoundError:
            return 0

    def mark(self) -> dict[str, Any]:
        return {"access": self._size(INGRESS_ACCESS), "error": self._size(INGRESS_ERROR),
                "cpu_ns": nginx_cpu_ns(self.folder)}

    def collect(self, mark: dict[str, Any], out: Path) -> dict[str, Any]:
        info: dict[str, Any] = {"folder": str(self.folder)}
        for key, name in (("access", INGRESS_ACCESS), ("error", INGRESS_ERROR)):
            path = self.folder / name.replace("ingress.", "")
            try:
                with open(path, "rb") as f:
                    size = f.seek(0, 2)
                    f.seek(mark[key] if size >= mark[key] else 0)
                    (out / name).write_bytes(f.read())
            except FileNotFoundError:
                info[f"{key}_error"] = f"{path} does not exist"
        cpu = nginx_cpu_ns(self.folder)
        if cpu is not None and mark.get("cpu_ns") is not None:
            info["nginx_cpu_ns"] = cpu - mark["cpu_ns"]
        (out / INGRESS_INFO).write_text(json.dumps(info, indent=1) + "\n")
        return info


def nginx_cpu_ns(folder: Path) -> int | None:
    """CPU time of nginx's cgroup (the pod's `ingress` child): cpuacct.usage (v1) or cpu.stat usage_usec (v2)."""
    try:
        pid = int((folder / "nginx.pid").read_text().strip())
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except (OSError, ValueError):
        return None
    root = Path("/sys/fs/cgroup")
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (root / path.lstrip("/") / "cpu.stat").exists():
            for stat in (root / path.lstrip("/") / "cpu.stat").read_text().splitlines():
                if stat.startswith("usage_usec "):
                    return int(stat.split()[1]) * 1000
        if "cpuacct" in controllers.split(","):
            for mount in (controllers, "cpuacct", "cpu,cpuacct"):
                usage = root / mount / path.lstrip("/") / "cpuacct.usage"
                if usage.exists():
                    return int(usage.read_text().strip())
    return None


# ----------------------------------------------------------------------------------------- evidence
def runtime_statuses(run_dir: Path) -> Counter[int]:
    """Statuses of the runtime's access lines for the function route (POST /) in server.log."""
    out: Counter[int] = Counter()
    path = run_dir / "server.log"
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _RUNTIME_LINE.match(line)
        if m and m["method"] == "POST":
            out[int(m["status"])] += 1
    return out


def nginx_lines(run_dir: Path) -> list[dict[str, str]]:
    """The POSTs of nginx's access log: status, upstream status ('-' when nginx answered itself)."""
    path = run_dir / INGRESS_ACCESS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _NGINX_LINE.match(line)
        if m and m["request"].startswith("POST "):
            rows.append({"status": m["status"], "ustatus": m["ustatus"].split(",")[-1].strip(),
                         "upstream": m["upstream"]})
    return rows


def nginx_reasons(run_dir: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    path = run_dir / INGRESS_ERROR
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        for needle, reason in _NGINX_REASONS:
            if needle in line:
                out[reason] += 1
                break
    return out


def _counter_delta(before: Path, after: Path, metric: str) -> float | None:
    def total(path: Path) -> float | None:
        if not path.exists():
            return None
        value = 0.0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(metric + "{") or line.startswith(metric + " "):
                try:
                    value += float(line.rsplit(" ", 1)[1])
                except ValueError:
                    continue
        return value
    a, b = total(before), total(after)
    return None if a is None or b is None else b - a


# ----------------------------------------------------------------------------------------- attribution
def attribute(run_dir: Path, classes: RequestClasses, via_ingress: bool,
              direct_through_proxy: bool = True, error_origins: Callable[[str], Counter[str]] | None = None
              ) -> Attribution:
    """Each failed request of the run under one layer (module docstring), with the evidence used.

    `classes` is ab.RequestClasses; `via_ingress`: ab reached nginx; `direct_through_proxy`: otherwise ab reached
    the runtime through docker-proxy (a published port) rather than its own socket; `error_origins`: the
    platform kind's reader of its own log (Kind.error_origins), for a platform that names who made each reply."""
    counts = dict.fromkeys(LAYERS, 0)
    notes: list[str] = []
    counts["client_timeout"] = int(classes.timeout)
    if error_origins is not None and not via_ingress:
        return _attribute_by_origin(run_dir, classes, error_origins, direct_through_proxy, counts)
    runtime = runtime_statuses(run_dir)
    logged = sum(runtime.values())
    runtime_non2xx = {s: n for s, n in runtime.items() if not 200 <= s < 300}
    failures = _counter_delta(run_dir / "metrics.before.txt", run_dir / "metrics.after.txt",
                              "function_failures_total")
    if via_ingress:
        rows = nginx_lines(run_dir)
        reasons = nginx_reasons(run_dir)
        bad = [r for r in rows if not r["status"].startswith("2")]
        from_runtime = [r for r in bad if r["ustatus"] == r["status"] and r["ustatus"] != "-"
                        and not _nginx_made(r, reasons)]
        by_status = Counter(int(r["status"]) for r in from_runtime)
        counts["runtime_408"] = min(by_status.get(408, 0), classes.non_2xx)
        counts["runtime_error"] = min(sum(n for s, n in by_status.items() if s != 408),
                                      classes.non_2xx - counts["runtime_408"])
        made = len(bad) - len(from_runtime)
        backlog_reasons = reasons.get("upstream reset the connection", 0) + reasons.get(
            "upstream refused the connection", 0)
        nginx_non2xx = min(made, classes.non_2xx - counts["runtime_408"] - counts["runtime_error"])
        # nginx's 502s whose error line says the runtime reset/refused the connection: a backlog overflow when the
        # runtime's access log misses exactly those requests, else only reported by nginx
        upstream_reset = min(backlog_reasons, nginx_non2xx)
        check = BacklogCheck(upstream_reset, len(rows) - logged if rows and logged else None,
                             classes.timeout + sum(1 for r in bad if r["status"] == "504"),
                             max(0, len(from_runtime) - sum(runtime_non2xx.values())))
        proven = upstream_reset if check.verdict == BACKLOG_AGREES else 0
        counts["runtime_backlog"] = proven
        counts["ingress"] = nginx_non2xx - proven
        # what ab itself saw on its connection to nginx: reported by nginx
        counts["ingress"] += classes.reset + classes.refused + classes.empty_reply
        counts["unattributed"] = classes.non_2xx - counts["runtime_408"] - counts["runtime_error"] - nginx_non2xx
        notes.append(f"nginx access log: {len(rows)} POST line(s), {len(bad)} not 2xx "
                     f"({_fmt_counter(Counter((r['status'], r['ustatus']) for r in bad), 'status/upstream')})")
        if reasons:
            notes.append("nginx error log: " + ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
        if upstream_reset or check.verdict == BACKLOG_DISAGREES:
            notes.append(check.describe("nginx (upstream reset/refused)"))
    else:
        counts["runtime_408"] = min(runtime_non2xx.get(408, 0), classes.non_2xx)
        counts["runtime_error"] = min(sum(n for s, n in runtime_non2xx.items() if s != 408),
                                      classes.non_2xx - counts["runtime_408"])
        counts["unattributed"] = classes.non_2xx - counts["runtime_408"] - counts["runtime_error"]
        no_reply = classes.reset + classes.refused + classes.empty_reply
        # a server that prints no Kubeless access lines (the app) has nothing to match: no check
        check = BacklogCheck(no_reply, classes.attempts - logged if logged else None, classes.timeout,
                             max(0, classes.non_2xx - sum(runtime_non2xx.values())))
        if direct_through_proxy and check.verdict != BACKLOG_AGREES:
            counts["proxy"] = no_reply  # docker-proxy is the peer ab talked to: it reported them
        else:
            counts["runtime_backlog"] = no_reply
        if no_reply or check.verdict == BACKLOG_DISAGREES:
            notes.append(check.describe("docker-proxy (no reply)" if direct_through_proxy
                                        else "the runtime's socket (reset/refused/closed)"))
    if runtime_non2xx:
        notes.append("runtime access log: " + ", ".join(f"{n} x {s}" for s, n in sorted(runtime_non2xx.items())))
    if failures is not None and failures:
        notes.append(f"function_failures_total +{failures:g}")
    counts["unattributed"] = max(counts["unattributed"], 0)  # more non-2xx lines than ab counted: trust ab
    return Attribution(counts, "; ".join(notes), check)


def _attribute_by_origin(run_dir: Path, classes: RequestClasses, error_origins: Callable[[str], Counter[str]],
                         through_proxy: bool, counts: dict[str, int]) -> Attribution:
    """A platform whose log names the component behind each failed reply: the user code's own non-2xx answers are
    runtime_error, the platform's components' replies (and resets/refusals of its listener) platform_own."""
    path = run_dir / "server.log"
    origins = error_origins(path.read_text(encoding="utf-8", errors="replace")) if path.exists() else Counter()
    function = origins.get("function", 0)
    own = sum(n for name, n in origins.items() if name != "function")
    counts["runtime_error"] = min(function, classes.non_2xx)
    counts["platform_own"] = min(own, classes.non_2xx - counts["runtime_error"])
    counts["unattributed"] = classes.non_2xx - counts["runtime_error"] - counts["platform_own"]
    # ab's connection-level failures: the listener behind the published port reset or refused it, or docker-proxy
    # closed it with no reply because nothing behind it took the request
    counts["platform_own"] += classes.reset + classes.refused
    if through_proxy:
        counts["proxy"] = classes.empty_reply
    else:
        counts["platform_own"] += classes.empty_reply
    notes = []
    if origins:
        notes.append("reported by (platform log): " + ", ".join(f"{n} {name}" for name, n in origins.most_common()))
    elif classes.non_2xx:
        notes.append("the platform's log names no failed reply" + ("" if path.exists() else " (no server.log)"))
    if classes.reset or classes.refused:
        notes.append(f"{classes.reset + classes.refused} connection(s) reset/refused by the platform's listener")
    return Attribution(counts, "; ".join(notes))


def _nginx_made(row: dict[str, str], reasons: Counter[str]) -> bool:
    """A 502/504 nginx logs with upstream status 502/504 is nginx's own answer to an upstream failure."""
    return row["status"] in ("502", "504") and bool(reasons)


def _fmt_counter(counter: Counter[Any], what: str) -> str:
    return ", ".join(f"{n} x {'/'.join(k) if isinstance(k, tuple) else k}" for k, n in counter.most_common()) or what


# ----------------------------------------------------------------------------------------- body limit
BODYLIMIT_FILE = "bodylimit.json"


def who_answered(status: int | None, body: bytes, server_header: str | None, run_dir: Path) -> tuple[str, str]:
    """(layer, evidence) for the reply to one oversized body: nginx's access line with no upstream status, or the
    runtime's access line, or the reply's own marks (nginx's error page names nginx)."""
    for row in nginx_lines(run_dir):
        if status is not None and row["status"] == str(status):
            if row["ustatus"] == "-":
                return "ingress", f"nginx access log: {row['status']} with no upstream (nginx answered itself)"
            return "runtime", f"nginx access log: {row['status']} from upstream {row['upstream']}"
    runtime = runtime_statuses(run_dir)
    if status is not None and runtime.get(status):
        return "runtime", f"runtime access log: POST / {status}"
    if status is None:
        return "none", "no HTTP reply"
    if b"nginx" in body[:2000] or (server_header or "").startswith("nginx"):
        return "ingress", "the reply is nginx's own error page"
    return "unknown", "no log line names the layer"


# ----------------------------------------------------------------------------------------- tidy rows
def layer_row(run_dir: Path, run_row: dict[str, Any], platform: Any) -> dict[str, Any] | None:
    """errors_by_layer.csv's row for one ab run (None for a run without statistics: it is set apart anyway)."""
    if run_row.get("errors") is None:
        return None
    # the run's classes as ab.classify made them, read back from its runs.csv row
    classes = RequestClasses(*(int(run_row.get(k) or 0) for k in ("completed", "non_2xx", "reset", "refused",
                                                                  "empty_reply", "timeout", "length_mismatch")),
                             source="runs.csv")
    via_ingress = bool(platform is not None and getattr(platform, "ingress_dir", None))
    through_proxy = bool(platform is not None and getattr(platform, "container", None))
    origins = None
    if platform is not None and getattr(platform, "kind", None):
        try:
            origins = kinds.get(platform.kind).error_origins
        except kinds.UnknownKind:
            origins = None
    result = attribute(run_dir, classes, via_ingress, through_proxy, origins)
    counts = result.counts
    total = sum(counts.values())
    if total != int(run_row["errors"]):  # the classes and the errors column come from the same parse
        counts["unattributed"] += int(run_row["errors"]) - total
    ident = {k: run_row[k] for k in ("run_key", "experiment", "platform", "concurrency", "repetition")}
    check = result.check
    return {**ident, "errors": int(run_row["errors"]), **counts,
            "not_in_runtime_log": "" if check is None or check.missing is None else check.missing,
            "backlog_check": "" if check is None else check.verdict, "evidence": result.evidence}


def bodylimit_row(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / BODYLIMIT_FILE
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    return {"platform": r["platform"], "bytes": r["bytes"], "status": r["status"] or 0,
            "answered_by": r["answered_by"], "evidence": r["evidence"]}


def sync_endpoint(folder: str | Path) -> str | None:
    """Point nginx at the function container's current address (roles/local_ingress's ingress-ctl.sh sync), as the
    ingress controller follows a restarted pod; the error, if any."""
    import subprocess

    script = Path(folder) / "ingress-ctl.sh"
    if not script.exists():
        return f"{script} does not exist: run ansible-playbook site.yml"
    try:
        proc = subprocess.run([str(script), "sync"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{script} sync: {exc}"
    return None if proc.returncode == 0 else f"{script} sync: {proc.stderr.strip()[-300:]}"
