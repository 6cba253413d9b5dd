"""Every failed request under the layer that reported it, its cause named only where the evidence proves it
(analysis/bench/layers.py, issues 11 and 24).

Three kinds of ground truth, none produced by the rules under test:
- recorded runs (tests/fixtures/layers/<run_key>/, the raw files real `bench.yml` runs wrote against the faithful
  runtime, directly through docker-proxy and through the local nginx): expected.json holds the layers counted by
  hand when they were recorded, and the raw facts they rest on (`facts`), which a test here checks against the
  files with its own regular expressions;
- hand-made disagreements: a recorded run with access lines removed, so the number of requests missing from the
  runtime's log is known by construction;
- a live overload: the faithful runtime's image with a listen backlog that overflows, driven by ab through
  docker-proxy, on the runtime's own socket and through nginx; the truth is what the server itself logged (its
  access lines, counted by a regular expression written here) and ab's own totals.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from analysis.bench import ab, layers, logs, schema
from analysis.bench.schema import ERROR_LAYERS

FIXTURES = Path(__file__).parent / "fixtures" / "layers"
RUNS = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").exists())
DIRECT_RUN = "overload-function-c50-r1"  # 100 attempts, 32 access lines, 68 empty replies
INGRESS_RUN = "overload-function_ingress-c50-r1"  # 100 nginx lines (45 x 502 on upstream resets), 55 access lines

# written for these tests, not taken from layers.py: a POST access line of the runtime (Apache combined format)
# and an nginx access line's status (the field after the quoted request line)
RUNTIME_POST = re.compile(r'"POST /\S* HTTP/1\.[01]" (\d{3}) (\d+) ')
NGINX_STATUS = re.compile(r'"POST [^"]*" (\d{3}) ')


def _classes(run_dir: Path) -> ab.RequestClasses:
    done = json.loads((run_dir / "done.json").read_text())
    result = ab.parse_run_files(run_dir, done["ab"]["argv"], done["ab"]["returncode"], done["ab"]["wall_s"])
    assert result.classified is not None
    return result.classified


def _copy(run_key: str, tmp_path: Path) -> Path:
    out = tmp_path / run_key
    shutil.copytree(FIXTURES / run_key, out)
    return out


def _drop_access_lines(run_dir: Path, n: int) -> None:
    """Remove the first n runtime access lines of server.log, as a lost stretch of log would."""
    kept, dropped = [], 0
    for line in (run_dir / "server.log").read_text().splitlines():
        if dropped < n and RUNTIME_POST.search(line):
            dropped += 1
            continue
        kept.append(line)
    assert dropped == n
    (run_dir / "server.log").write_text("\n".join(kept) + "\n")


# ----------------------------------------------------------------------------------------- recorded runs
@pytest.mark.parametrize("run_key", RUNS)
def test_the_hand_counts_rest_on_the_recorded_files(run_key: str) -> None:
    """expected.json's facts are what the raw files hold, counted here with plain regular expressions."""
    run_dir = FIXTURES / run_key
    facts = json.loads((run_dir / "expected.json").read_text())["facts"]
    stdout = (run_dir / "ab.stdout").read_text()
    assert int(re.search(r"Complete requests:\s+(\d+)", stdout).group(1)) == facts["attempts"]
    assert len(RUNTIME_POST.findall((run_dir / "server.log").read_text())) == facts["runtime_post_lines"]
    if "nginx_post_lines" in facts:
        assert len(NGINX_STATUS.findall((run_dir / "ingress.access.log").read_text())) == facts["nginx_post_lines"]
        assert (run_dir / "ingress.error.log").read_text().count("reset by peer") == facts["nginx_upstream_resets"]


@pytest.mark.parametrize("run_key", RUNS)
def test_each_recorded_failure_is_under_the_layer_counted_by_hand(run_key: str) -> None:
    run_dir = FIXTURES / run_key
    expected = json.loads((run_dir / "expected.json").read_text())
    result = layers.attribute(run_dir, _classes(run_dir), via_ingress=expected["via_ingress"],
                              direct_through_proxy=True)
    assert result.counts == expected["layers"], result.evidence
    assert result.check is not None
    assert result.check.missing == expected["not_in_runtime_log"]
    assert result.check.verdict == expected["backlog_check"]


def test_the_same_overflow_gets_the_same_cause_directly_and_through_nginx() -> None:
    """The review's finding: one backlog overflow was 'docker-proxy' on the direct path and 'runtime backlog'
    through nginx. In both recorded overload runs every no-reply failure is a request the runtime never logged."""
    direct = layers.attribute(FIXTURES / DIRECT_RUN, _classes(FIXTURES / DIRECT_RUN), via_ingress=False)
    ingress = layers.attribute(FIXTURES / INGRESS_RUN, _classes(FIXTURES / INGRESS_RUN), via_ingress=True)
    assert direct.counts["runtime_backlog"] == 100 - 32 and direct.counts["proxy"] == 0
    assert ingress.counts["runtime_backlog"] == 100 - 55 and ingress.counts["ingress"] == 0


def test_the_tidy_row_carries_the_backlog_check_in_the_schemas_order() -> None:
    run_dir = FIXTURES / DIRECT_RUN
    c = _classes(run_dir)
    row = {"run_key": DIRECT_RUN, "experiment": "overload", "platform": "function", "concurrency": 50,
           "repetition": 1, "errors": c.errors, "completed": c.attempts, "non_2xx": c.non_2xx, "reset": c.reset,
           "refused": c.refused, "empty_reply": c.empty_reply, "timeout": c.timeout}

    class Platform:
        ingress_dir = None
        container = "kde-function"

    out = layers.layer_row(run_dir, row, Platform())
    assert out is not None
    assert list(out) == schema.LAYERS.names
    assert (out["not_in_runtime_log"], out["backlog_check"], out["runtime_backlog"]) == (68, "agrees", 68)
    assert "68 request(s) missing from the runtime's access log" in out["evidence"]


# ----------------------------------------------------------------------------------------- disagreements
@pytest.mark.parametrize("lost", [1, 5])
def test_lost_access_lines_leave_docker_proxys_empty_replies_as_reported_by_it(tmp_path: Path, lost: int) -> None:
    """With `lost` access lines gone, 68 + lost requests are missing from the log for 68 empty replies: the counts
    disagree, so the cause is not proven and the 68 stay with the layer that reported them."""
    run_dir = _copy(DIRECT_RUN, tmp_path)
    _drop_access_lines(run_dir, lost)
    result = layers.attribute(run_dir, _classes(run_dir), via_ingress=False, direct_through_proxy=True)
    assert result.counts["proxy"] == 68 and result.counts["runtime_backlog"] == 0
    assert result.check is not None
    assert (result.check.missing, result.check.verdict) == (68 + lost, "disagrees")
    assert "disagrees" in result.evidence


def test_lost_access_lines_leave_nginxs_502s_as_reported_by_nginx(tmp_path: Path) -> None:
    run_dir = _copy(INGRESS_RUN, tmp_path)
    _drop_access_lines(run_dir, 3)
    result = layers.attribute(run_dir, _classes(run_dir), via_ingress=True)
    assert result.counts["ingress"] == 45 and result.counts["runtime_backlog"] == 0
    assert result.check is not None and (result.check.missing, result.check.verdict) == (48, "disagrees")


def test_client_time_outs_are_the_only_slack(tmp_path: Path) -> None:
    """A request ab gave up on may or may not have an access line: with 2 of the 68 empty replies turned into time-outs
    (and their lines gone) the 66 no-reply failures still match 68 missing lines within those 2, not 3."""
    run_dir = _copy(DIRECT_RUN, tmp_path)
    c = _classes(run_dir)
    timed_out = ab.RequestClasses(c.attempts, c.non_2xx, c.reset, c.refused, c.empty_reply - 2, 2, c.length_mismatch,
                                  "test")
    within = layers.attribute(run_dir, timed_out, via_ingress=False)
    assert (within.counts["runtime_backlog"], within.counts["client_timeout"]) == (66, 2)
    _drop_access_lines(run_dir, 1)  # 69 missing: one more than 66 + 2
    beyond = layers.attribute(run_dir, timed_out, via_ingress=False)
    assert (beyond.counts["proxy"], beyond.counts["runtime_backlog"], beyond.check.verdict) == (66, 0, "disagrees")


def test_a_server_without_access_lines_has_no_check(tmp_path: Path) -> None:
    """The container baseline prints no Kubeless access lines: nothing proves the cause of its empty replies."""
    run_dir = _copy(DIRECT_RUN, tmp_path)
    _drop_access_lines(run_dir, 32)
    result = layers.attribute(run_dir, _classes(run_dir), via_ingress=False)
    assert result.counts["proxy"] == 68
    assert result.check is not None and (result.check.missing, result.check.verdict) == (None, "no access log")


def test_the_report_counts_the_runs_whose_check_disagrees_and_reads_old_rows(tmp_path: Path) -> None:
    from analysis import ingress

    base = {"experiment": "overload", "platform": "function", "concurrency": 50, "errors": 68, "evidence": "",
            **dict.fromkeys(ERROR_LAYERS, 0)}
    rows = [{**base, "run_key": "a", "repetition": 1, "proxy": 68, "backlog_check": "disagrees"},
            {**base, "run_key": "b", "repetition": 2, "runtime_backlog": 68, "backlog_check": "agrees"}]

    class New:
        error_layers = pd.DataFrame(rows)
        platforms = ("function",)

    class Old:  # a results folder written before issue 24: no backlog columns
        error_layers = pd.DataFrame(rows).drop(columns=["backlog_check"])
        platforms = ("function",)

    assert ingress.error_layers(New())["backlog_disagrees"].tolist() == [1]
    assert ingress.error_layers(Old())["backlog_disagrees"].tolist() == [0]


# ----------------------------------------------------------------------------------------- a platform kind
def test_a_kind_that_names_its_components_files_their_replies_under_platform_own(tmp_path: Path) -> None:
    """A platform kind whose log says who made each reply (Kind.error_origins; here the Fission router's JSON
    lines): the user code's own non-2xx answers are runtime_error, the router's are platform_own (reported by
    it), ab's resets go to the platform's listener, empty replies to docker-proxy."""
    from analysis.bench.kinds.fission import FISSION

    made = [(200, "function")] * 4 + [(500, "function")] * 2 + [(504, "router")] * 3 + [(499, "router")]
    lines = [json.dumps({"event": "router", "method": "POST", "status": s, "origin": o}) for s, o in made]
    lines.append(json.dumps({"event": "router", "method": "GET", "status": 503, "origin": "router"}))  # a probe
    (tmp_path / "server.log").write_text("\n".join(["fission router listening", *lines]) + "\n")
    # ab: 16 attempts: 4 served, 7 non-2xx (one more than the router's 6 lines name: a lost line), 2 reset, 3 empty
    # replies
    classes = ab.RequestClasses(attempts=16, non_2xx=7, reset=2, refused=0, empty_reply=3, timeout=0,
                                length_mismatch=0, source="test")
    got = layers.attribute(tmp_path, classes, via_ingress=False, direct_through_proxy=True,
                           error_origins=FISSION.error_origins).counts
    assert got["runtime_error"] == 2
    assert got["platform_own"] == 4 + 2  # 504 x3 + 499 from the router's lines; + 2 resets
    assert got["unattributed"] == 7 - 2 - 4
    assert got["proxy"] == 3
    assert not any(got[k] for k in ("runtime_408", "runtime_backlog", "ingress", "client_timeout"))


# ----------------------------------------------------------------------------------------- a live overload
# The faithful runtime's image serving tests/function_probe/probe.py (no model: it starts in seconds); each call
# sleeps SLEEP_S in its forked child, and 4 threads with a listen backlog of 2 (the defaults are Kubeless's 10 and 5,
# which overflow too, but not on every run on the runtime's own socket) overflow at c=50. The body is a photo-sized
# 36 KB, like the bench's payload. Whether a given ab run overflows is up to the kernel's timing, so a run that did
# not is repeated, at most TRIES times in all; the assertions are the same whatever the run gave.
CONTAINER_PREFIX = os.environ.get("KDE_TEST_CONTAINER_PREFIX", "kde-test-layers")
REQUESTS, CONCURRENCY, SLEEP_S, TRIES = 100, 50, 0.2, 3


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def overflowing_runtime(request, docker_engine) -> Iterator[dict]:
    if shutil.which("ab") is None:
        if os.environ.get("CI"):
            pytest.fail("ab is missing: .ci/run installs apache2-utils")
        pytest.skip("ab is not installed (apt-get install apache2-utils)")
    image = os.environ.get("KDE_TEST_FUNCTION_IMAGE") or request.getfixturevalue("function_image")
    name = f"{CONTAINER_PREFIX}-{uuid.uuid4().hex[:8]}"
    probe = Path(__file__).parent / "function_probe"
    run = _docker("run", "-d", "--name", name, "--cpus", "2", "--memory", "2g", "-p", "127.0.0.1:0:8080",
                  "-v", f"{probe}:/probe:ro", "-e", "KUBELESS_CODE_DIR=/probe", "-e", "MOD_NAME=probe",
                  "-e", "FUNC_HANDLER=probe", "-e", "CHERRYPY_NUMTHREADS=4", "-e", "CHERRYPY_REQUEST_QUEUE_SIZE=2",
                  image)
    assert run.returncode == 0, run.stderr
    try:
        port = _docker("port", name, "8080/tcp").stdout.split()[0].rsplit(":", 1)[1]
        address = _docker("inspect", name, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
                          ).stdout.split()
        deadline = time.monotonic() + 60
        while "serving probe.probe" not in _docker("logs", name).stderr:
            assert time.monotonic() < deadline, _docker("logs", name).stderr[-2000:]
            time.sleep(0.2)
        yield {"name": name, "published": f"http://127.0.0.1:{port}", "address": address[0] if address else None}
    finally:
        _docker("rm", "-f", name)


def _overload(runtime: dict, url: str, out: Path, tmp_path: Path, ingress_dir: Path | None = None
              ) -> tuple[ab.AbResult, str]:
    """ab against url with the bench's own ab runner and log collectors, repeated (a fresh folder each time) until a
    run had failed requests or TRIES runs did not; (ab's result, server.log's text) of the last run."""
    for attempt in range(TRIES):
        if attempt:
            shutil.rmtree(out)
        result, server_log = _one_overload(runtime, url, out, tmp_path, ingress_dir)
        if result.classified is not None and result.classified.errors:
            break
    return result, server_log


def _one_overload(runtime: dict, url: str, out: Path, tmp_path: Path, ingress_dir: Path | None
                  ) -> tuple[ab.AbResult, str]:
    body = tmp_path / "body.bin"
    body.write_bytes(os.urandom(36_000))
    source = logs.DockerLogs(runtime["name"], os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    nginx = layers.IngressLogs(ingress_dir) if ingress_dir else None
    nginx_mark = nginx.mark() if nginx else None
    mark = source.mark()
    time.sleep(0.05)  # docker logs --since has whole-line granularity at the mark
    command = ab.AbCommand(f"{url}?action=sleep&seconds={SLEEP_S}", REQUESTS, CONCURRENCY, post_file=body,
                           content_type="application/octet-stream")
    result = ab.run_ab(command, out, timeout_s=60)
    time.sleep(1.0)  # the last access lines and nginx's buffered log lines
    source.collect(mark, out)
    if nginx:
        nginx.collect(nginx_mark, out)
    return result, (out / logs.STDOUT_LOG).read_text()


def _ab_totals(run_dir: Path) -> tuple[int, int, int]:
    """(attempts, non-2xx replies, attempts with no reply) from ab's own report. With -r, ab counts a Length failure
    for each attempt whose reply was not the first reply's length: an empty reply, a reset one (also a Receive and
    an Exceptions failure), and a non-2xx page (none is 5 bytes, the probe's "slept": the runtime's 408 page, nginx's
    502 page, cheroot's empty 408); a refused one is only a Receive failure, named on stderr with -v 1."""
    stdout = (run_dir / "ab.stdout").read_text()
    attempts = int(re.search(r"Complete requests:\s+(\d+)", stdout).group(1))
    assert int(re.search(r"Document Length:\s+(\d+) bytes", stdout).group(1)) == len("slept")
    found = re.search(r"Non-2xx responses:\s+(\d+)", stdout)
    non2xx = int(found.group(1)) if found else 0
    length = int(re.search(r"Length: (\d+)", stdout).group(1))
    refused = (run_dir / "ab.stderr").read_text().count("Connection refused")
    return attempts, non2xx, length - non2xx + refused


def _expected_layers(no_reply: int, missing: int, front: str) -> dict[str, int]:
    """The rule stated in the issue, on counts taken from the server and ab: the cause is named only when they agree."""
    agree = no_reply == missing
    return {"runtime_backlog": no_reply if agree else 0, front: 0 if agree else no_reply}


def test_a_live_overflow_through_docker_proxy_is_the_runtimes_backlog(overflowing_runtime, tmp_path: Path) -> None:
    out = tmp_path / "direct"
    result, server_log = _overload(overflowing_runtime, overflowing_runtime["published"] + "/", out, tmp_path)
    attempts, non2xx, no_reply = _ab_totals(out)
    lines = RUNTIME_POST.findall(server_log)
    # non-2xx pages the runtime's server sent without an access line (cheroot's own "408 Request Timeout" on a
    # connection whose request line did not come within 10 s)
    unlogged = non2xx - sum(1 for status, _ in lines if not status.startswith("2"))
    assert attempts == REQUESTS and no_reply > 0, "the backlog did not overflow: the test proves nothing"
    got = layers.attribute(out, result.classified, via_ingress=False, direct_through_proxy=True)
    assert {k: got.counts[k] for k in ("runtime_backlog", "proxy")} == _expected_layers(
        no_reply, attempts - len(lines) - unlogged, "proxy"), got.evidence
    # Whether the two counts agree is what the run measured, not an invariant: on a fresh CI engine (2026-12-05,
    # 9980bee) 55 empty replies did not match the requests missing from the access log, and the failures rightly
    # stayed "reported by docker-proxy". The verdict must follow the counts either way.
    agree = no_reply == attempts - len(lines) - unlogged
    assert got.check is not None and got.check.verdict == ("agrees" if agree else "disagrees")
    if agree:
        assert got.counts["unattributed"] == unlogged


def test_a_live_overflow_on_the_runtimes_own_socket_is_its_backlog(overflowing_runtime, tmp_path: Path) -> None:
    if not overflowing_runtime["address"]:
        pytest.skip("the container has no address reachable from here")
    out = tmp_path / "socket"
    result, server_log = _overload(overflowing_runtime, f"http://{overflowing_runtime['address']}:8080/", out,
                                   tmp_path)
    attempts, non2xx, no_reply = _ab_totals(out)
    resets = (out / "ab.stderr").read_text().count("Connection reset by peer")
    lines = RUNTIME_POST.findall(server_log)
    unlogged = non2xx - sum(1 for status, _ in lines if not status.startswith("2"))
    assert resets > 0, "the backlog did not overflow: the test proves nothing"
    assert no_reply == resets  # with nothing in between, every no-reply failure is the runtime's reset
    got = layers.attribute(out, result.classified, via_ingress=False, direct_through_proxy=False)
    assert got.counts["runtime_backlog"] == resets == attempts - len(lines) - unlogged, got.evidence


@pytest.fixture
def nginx_in_front(overflowing_runtime, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The local ingress's nginx (the role's configuration, rendered as tests/test_local_ingress.py does) with the
    overflowing container's own address as its upstream."""
    from tests.http_client import free_port
    from tests.test_local_ingress import NGINX, render

    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    if not overflowing_runtime["address"]:
        pytest.skip("the container has no address reachable from here")
    folder = Path(tempfile.mkdtemp(prefix="kde-layers-nginx-"))
    folder.chmod(0o755)
    (folder / "temp").mkdir(mode=0o755)
    port = free_port()
    conf = render(folder, 8080, port, local_ingress_upstream_address=overflowing_runtime["address"])
    subprocess.run([NGINX, "-c", str(conf)], check=True, timeout=30)
    pid = None
    try:
        for _ in range(100):
            text = (folder / "nginx.pid").read_text().strip() if (folder / "nginx.pid").exists() else ""
            if text:
                pid = int(text)
                break
            time.sleep(0.05)
        assert pid, "nginx wrote no pid file"
        yield f"http://127.0.0.1:{port}/predict", folder
    finally:
        if pid:
            os.kill(pid, signal.SIGQUIT)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_live_overflow_through_nginx_gets_the_same_cause(overflowing_runtime, nginx_in_front, tmp_path: Path
                                                           ) -> None:
    url, folder = nginx_in_front
    out = tmp_path / "ingress"
    result, server_log = _overload(overflowing_runtime, url, out, tmp_path, ingress_dir=folder)
    statuses = NGINX_STATUS.findall((out / layers.INGRESS_ACCESS).read_text())
    errors = (out / layers.INGRESS_ERROR).read_text()
    lines = RUNTIME_POST.findall(server_log)
    bad_gateway = statuses.count("502")
    assert bad_gateway > 0, "the backlog did not overflow: the test proves nothing"
    assert len(statuses) == REQUESTS
    # each 502 is nginx's answer to an upstream that reset or refused the connection, by its own error log
    assert errors.count("reset by peer") + errors.count("Connection refused") == bad_gateway
    # the upstream's other non-2xx pages (the faithful runtime's 408s) that have no access line
    passed_on = sum(1 for s in statuses if s not in ("200", "502"))
    unlogged = passed_on - sum(1 for status, _ in lines if not status.startswith("2"))
    expected = _expected_layers(bad_gateway, len(statuses) - len(lines) - unlogged, "ingress")
    got = layers.attribute(out, result.classified, via_ingress=True)
    assert {k: got.counts[k] for k in ("runtime_backlog", "ingress")} == expected, got.evidence
    # the same rule as on the direct paths; whether the counts agree is the run's measurement (see above)
