"""analysis.bench.ab against ApacheBench outputs recorded from the real `ab` (tests/fixtures/ab/, rerun record.py to
refresh them), checked against what the recording servers themselves counted; plus live runs of the real ab
against servers on 127.0.0.1 for the paths that need a running process (timeouts, missing ab, aborts)."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest

from analysis.bench import ab

FIXTURES = Path(__file__).parent / "fixtures" / "ab"
sys.path.insert(0, str(FIXTURES))
import record  # noqa: E402 - the recording servers, reused for the live tests

pytestmark = pytest.mark.skipif(shutil.which("ab") is None, reason="needs ab (apt-get install apache2-utils)")


def load(scenario: str) -> tuple[ab.AbResult, dict]:
    meta = json.loads((FIXTURES / scenario / "meta.json").read_text())
    return ab.parse_run_files(FIXTURES / scenario, meta["argv"], meta["returncode"], meta["wall_s"]), meta


# ----------------------------------------------------------------------------------------- recorded
def test_clean_run_parses_completely():
    result, meta = load("ok")
    s = result.summary
    assert result.outcome == "ok" and result.error is None
    assert s.completed == meta["requests"] == meta["server"]["status_200"]
    assert s.failures == ab.AbFailures() and s.non_2xx == 0
    assert s.concurrency == meta["concurrency"]
    assert s.document_length == record.BODY_LENGTH
    assert s.requests_per_s == pytest.approx(s.completed / s.time_taken_s, rel=0.02)
    # Time per request (mean) is concurrency x wall time / requests: not a latency
    assert s.time_per_request_ms == pytest.approx(s.concurrency * s.time_taken_s * 1000 / s.completed, rel=0.02)
    assert len(result.requests) == s.completed
    assert set(s.connection_times) == {"connect", "processing", "waiting", "total"}
    pcts = [result.percentile(p) for p in range(0, 101)]
    assert pcts == sorted(pcts)
    assert result.percentile(100) == pytest.approx(max(r.total_ms for r in result.requests), abs=1.0)
    assert s.percentiles_ms[50] == pytest.approx(result.percentile(50), abs=1.0)
    assert result.notes == []


def test_gnuplot_rows_are_sorted_by_total_time_with_whole_second_starts():
    result, _ = load("large")
    totals = [r.total_ms for r in result.requests]
    assert totals == sorted(totals)
    starts = {r.start_s for r in result.requests}
    assert all(1_600_000_000 < s < 4_000_000_000 for s in starts)  # seconds since the epoch, not µs
    assert all(r.total_ms >= r.connect_ms for r in result.requests)


def test_large_run_finishes_with_progress_lines_on_stderr():
    result, meta = load("large")
    assert result.outcome == "ok"
    assert result.summary.finished_normally
    assert result.summary.completed == meta["server"]["status_200"] == 1000
    assert "Finished 1000 requests" in result.stderr_path.read_text()


def test_length_failures_are_counted_apart_from_errors():
    result, meta = load("length")
    f = result.summary.failures
    assert f.length == meta["server"]["short_bodies"] == 25
    assert f.total == f.length
    c = result.classified  # a shorter 200 is a served reply, not an error
    assert c.errors == 0 and c.served == meta["server"]["status_200"] == 100
    assert c.length_mismatch == meta["server"]["short_bodies"]
    assert result.summary.non_2xx == 0 and result.outcome == "ok"


def test_connections_closed_without_reply_are_empty_replies_not_length_mismatches():
    # Recorded against the faithful runtime at c=20: the server saw 90 requests; the other 10 connections were
    # closed by docker-proxy with no reply, which ab files under Length only.
    result, meta = load("empty_replies")
    s = result.summary
    assert s.failures.length == 10 and s.failures.receive == 0 and s.non_2xx == 0
    c = result.classified
    assert c.empty_reply == s.completed - meta["server"]["requests_seen"] == 10
    assert c.errors == 10 and c.served == meta["server"]["status_200"] == 90
    assert c.length_mismatch == 0
    for scenario in ("length", "non2xx_length", "ok"):  # short bodies / error pages: replies, not empty ones
        assert load(scenario)[0].classified.empty_reply == 0, scenario


def test_empty_replies_beside_a_408_page():
    # The 408 page's 746 bytes fill most of the byte deficit of the 5 empty replies; the -g rows that never
    # saw a first byte tell them apart. Ground truth: the runtime's access log (95 x 200, 1 x 408).
    result, meta = load("empty_replies_and_408")
    s = result.summary
    assert s.html_transferred_bytes == meta["server"]["client_full_bodies"] * 256 + 746
    c = result.classified
    assert c.empty_reply == meta["server"]["client_empty_replies"] == 5
    assert c.non_2xx == meta["server"]["access_log_408"] == 1
    assert c.errors == meta["requests"] - meta["server"]["client_full_bodies"] == 6
    # 95 x 200 in the access log but one of them never reached the client whole: 94 served
    assert c.served == meta["server"]["client_full_bodies"] == 94


@pytest.mark.parametrize("scenario, source", [("reset", "stderr"), ("reset_no_v", "inferred")])
def test_each_reset_is_one_error_not_three(scenario, source):
    # ab files one reset under Receive, Length *and* Exceptions: "Failed requests" is 3 per reset.
    result, meta = load(scenario)
    s = result.summary
    resets = meta["server"]["resets"]
    assert s.failures.total == 3 * resets  # the trap
    c = result.classified
    assert c.source == source
    assert (c.reset, c.refused, c.empty_reply, c.non_2xx, c.timeout) == (resets, 0, 0, 0, 0)
    assert c.errors == resets == 10
    assert c.served == meta["server"]["status_200"] == 90
    flags = ab.served_flags(result.requests, c)
    assert len(flags) == len(result.requests) and flags.count(0) == resets


@pytest.mark.parametrize("scenario, source", [("refused", "stderr"), ("refused_no_v", "inferred")])
def test_each_refused_connection_is_one_error(scenario, source):
    result, meta = load(scenario)
    assert meta["server"] is None  # nothing listened: every request failed, once
    c = result.classified
    assert result.summary.failures.total > meta["requests"]  # the trap: 30 "failures" for 20 requests
    assert c.source == source
    assert (c.refused, c.reset, c.errors, c.served) == (meta["requests"], 0, meta["requests"], 0)


def test_resets_beside_shorter_error_pages():
    # Every 10th connection reset, every 7th reply a shorter 500 (never both): Length holds both kinds.
    result, meta = load("reset_non2xx")
    server = meta["server"]
    c = result.classified
    assert result.summary.failures.length == server["resets"] + server["short_bodies"]
    assert (c.reset, c.non_2xx, c.empty_reply, c.length_mismatch) == (server["resets"], server["status_500"], 0, 0)
    assert c.errors == meta["requests"] - server["status_200"] == 32
    assert c.served == server["status_200"]


def test_accept_variable_length_hides_length_failures():
    result, meta = load("variable")
    assert "-l" in meta["argv"]
    assert meta["server"]["short_bodies"] == 25
    assert result.summary.document_length is None  # "Variable"
    assert result.summary.failures.total == 0


def test_non_2xx_of_equal_length_are_not_failures():
    result, meta = load("non2xx")
    assert result.summary.non_2xx == meta["server"]["status_500"] == 20
    assert result.summary.failures.total == 0


def test_non_2xx_of_other_length_count_twice():
    result, meta = load("non2xx_length")
    assert result.summary.non_2xx == meta["server"]["status_500"] == 20
    assert result.summary.failures.length == meta["server"]["short_bodies"] == 20


def test_resets_with_r_are_receive_failures_and_the_run_goes_on():
    result, meta = load("reset")
    f = result.summary.failures
    resets = meta["server"]["resets"]
    assert resets == 10
    assert f.receive == resets
    assert f.length == resets and f.exceptions == resets  # ab counts each reset three times
    assert f.connect == 0
    assert result.summary.completed == meta["requests"]  # "complete" includes the failed attempts...
    assert len(result.requests) == meta["requests"]  # ...and so does -g
    assert result.outcome == "ok"


def test_reset_without_r_aborts_and_keeps_the_count():
    result, meta = load("reset_abort")
    assert result.outcome == "aborted"
    assert "apr_socket_recv: Connection reset by peer (104)" in result.error
    assert result.summary is None and result.requests == [] and result.percentiles == {}
    # replies still in flight when ab gave up were sent by the server but never counted by ab
    served = meta["server"]["status_200"]
    assert served - meta["concurrency"] < result.completed_before_abort <= served
    with pytest.raises(ab.AbAborted) as err:
        result.check()
    assert "ab.stdout" in str(err.value) and "Connection reset" in str(err.value)


def test_refused_port_with_r_is_complete_but_all_failed():
    result, meta = load("refused")
    s = result.summary
    assert meta["server"] is None
    assert s.completed == meta["requests"]  # the trap: nothing answered, yet all "complete"
    assert s.failures.receive == meta["requests"]
    assert s.failures.connect == 0  # on loopback, refused shows up as exception/receive, not connect
    # ab -e read past its 20 timings for p98 and p99; they are replaced by the 100 % value
    raw = ab.parse_percentiles(FIXTURES / "refused" / "ab.csv")
    assert raw[99.0] > 1e12 or raw[99.0] != raw[100.0]
    assert result.percentile(99) == result.percentile(98) == result.percentile(100)
    assert any("98, 99" in note for note in result.notes)


def test_refused_port_without_r_aborts():
    result, _ = load("refused_abort")
    assert result.outcome == "aborted"
    assert result.error == "apr_socket_recv: Connection refused (111)"


def test_socket_timeout_aborts_the_run():
    result, meta = load("timeout")
    assert meta["returncode"] != 0 and "-s" in meta["argv"]
    assert result.outcome == "aborted"
    assert result.error.startswith("apr_pollset_poll: The timeout specified has expired")
    served = meta["server"]["requests_seen"] - meta["server"]["hung"]
    assert served - meta["concurrency"] < result.completed_before_abort <= served


@pytest.mark.parametrize("scenario", ["interrupted", "interrupted_small"])
def test_sigint_keeps_partial_statistics(scenario):
    result, meta = load(scenario)
    s = result.summary
    assert result.outcome == "interrupted" and "interrupted" in result.error
    assert not s.finished_normally
    assert 0 < s.completed < meta["requests"]
    assert s.completed <= meta["server"]["requests_seen"]
    assert len(result.requests) == s.completed


def test_keepalive_is_reported():
    result, meta = load("keepalive")
    assert "-k" in meta["argv"]
    assert result.summary.keepalive_requests == meta["requests"]


@pytest.mark.parametrize(("done", "replaced"), [(9, [95, 96, 97, 98, 99]), (20, [98, 99]), (50, [99]), (51, []),
                                                (100, []), (1000, [])])
def test_percentile_repair_follows_abs_index_formula(done, replaced):
    table = {float(p): float(p) for p in range(101)}
    fixed, got = ab.repair_percentiles(table, done)
    assert got == [float(p) for p in replaced]
    assert all(fixed[float(p)] == 100.0 for p in replaced)
    assert all(fixed[float(p)] == float(p) for p in range(101) if p not in replaced)


def test_small_run_percentile_fixture_is_repaired():
    result, _ = load("ok_small")
    raw = ab.parse_percentiles(FIXTURES / "ok_small" / "ab.csv")
    assert raw[99.0] != raw[100.0]  # ab's garbage, as recorded
    assert result.percentile(99) == result.percentile(100)


# ------------------------------------------------------------------------------------- bad inputs
def test_unparseable_stdout_names_the_file(tmp_path):
    with pytest.raises(ab.AbParseError) as err:
        ab.parse_stdout("Benchmarking 127.0.0.1\nsomething else\n", tmp_path / "ab.stdout")
    assert str(tmp_path / "ab.stdout") in str(err.value)
    assert "Complete requests" in str(err.value)


def test_missing_percentile_file_of_a_finished_run_is_an_error(tmp_path):
    shutil.copytree(FIXTURES / "ok", tmp_path / "ok")
    (tmp_path / "ok" / "ab.csv").unlink()
    with pytest.raises(ab.AbParseError) as err:
        ab.parse_run_files(tmp_path / "ok")
    assert err.value.path == str(tmp_path / "ok" / "ab.csv")


def test_truncated_gnuplot_file_names_the_line(tmp_path):
    shutil.copytree(FIXTURES / "ok", tmp_path / "ok")
    path = tmp_path / "ok" / "ab.tsv"
    path.write_text(path.read_text()[:-20])
    with pytest.raises(ab.AbParseError) as err:
        ab.parse_run_files(tmp_path / "ok")
    assert "ab.tsv" in str(err.value) and "line" in str(err.value)


def test_folder_without_ab_output(tmp_path):
    with pytest.raises(ab.AbParseError, match="no ab run"):
        ab.parse_run_files(tmp_path)


def test_failed_count_without_its_split_is_an_error():
    text = (FIXTURES / "length" / "ab.stdout").read_text()
    text = "\n".join(line for line in text.splitlines() if "(Connect:" not in line)
    with pytest.raises(ab.AbParseError, match="Exceptions"):
        ab.parse_stdout(text, "edited.stdout")


# ------------------------------------------------------------------------------------------ command
def test_command_line_has_the_projects_flags(tmp_path):
    cmd = ab.AbCommand("http://127.0.0.1:1/predict", 100, 10, post_file=tmp_path / "p.jpg", socket_timeout_s=5)
    argv = cmd.argv(tmp_path / "g.tsv", tmp_path / "e.csv")
    assert argv[:5] == ["ab", "-n", "100", "-c", "10"]
    for flag in ("-s", "-p", "-T", "-r", "-g", "-e"):
        assert flag in argv
    assert argv[argv.index("-T") + 1] == "image/jpeg" and argv[-1] == "http://127.0.0.1:1/predict"
    assert "-k" not in argv and "-l" not in argv
    argv = ab.AbCommand("http://h:1/", 10, 1, keepalive=True, accept_variable_length=True).argv(Path("g"), Path("e"))
    assert "-k" in argv and "-l" in argv and "-p" not in argv


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"requests": 5, "concurrency": 10}, "concurrency <= requests"),
    ({"requests": 0, "concurrency": 1}, "at least one request"),
    ({"requests": 5, "concurrency": 1, "url": "http://127.0.0.1:8080"}, "with a path"),
    ({"requests": 5, "concurrency": 1, "socket_timeout_s": 0}, "whole seconds"),
])
def test_command_validation(kwargs, message):
    kwargs = {"url": "http://127.0.0.1:8080/", **kwargs}
    with pytest.raises(ValueError, match=message):
        ab.AbCommand(**kwargs)


# --------------------------------------------------------------------------------- live, real ab
@pytest.fixture
def server():
    """A recording server on 127.0.0.1 answering fixed-length JSON after 20 ms."""
    behaviour = record.Behaviour(delay_s=0.02)
    srv = record.QuietServer(("127.0.0.1", 0), record.make_handler(behaviour))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/predict", behaviour
    srv.shutdown()
    srv.server_close()


def test_run_ab_keeps_every_file(tmp_path, server):
    url, behaviour = server
    payload = tmp_path / "p.jpg"
    payload.write_bytes(b"\xff\xd8" + b"0" * 1000)
    result = ab.run_ab(ab.AbCommand(url, 10, 2, post_file=payload), tmp_path / "run", timeout_s=30)
    for name in (ab.STDOUT_FILE, ab.STDERR_FILE, ab.GNUPLOT_FILE, ab.PERCENTILES_FILE):
        assert (tmp_path / "run" / name).exists()
    assert result.outcome == "ok" and result.returncode == 0
    assert result.summary.completed == behaviour.seen == 10
    assert result.summary.total_body_sent_bytes is not None
    assert result.to_dict()["summary"]["completed"] == 10


def test_run_ab_stops_an_overrunning_run_and_keeps_its_statistics(tmp_path, server):
    url, behaviour = server
    payload = tmp_path / "p.jpg"
    payload.write_bytes(b"\xff\xd8" + b"0" * 1000)
    result = ab.run_ab(ab.AbCommand(url, 200, 1, post_file=payload), tmp_path / "run", timeout_s=0.5, check=False)
    assert result.outcome == "interrupted"
    assert "longer than its limit" in result.error
    assert 0 < result.summary.completed < 200
    assert result.summary.completed <= behaviour.seen
    assert len(result.requests) == result.summary.completed
    with pytest.raises(ab.AbAborted):
        result.check()


def test_run_ab_against_a_closed_port_without_r_raises(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = ab.AbCommand(f"http://127.0.0.1:{port}/", 5, 1, continue_on_receive_errors=False)
    with pytest.raises(ab.AbAborted, match="Connection refused"):
        ab.run_ab(cmd, tmp_path / "run", timeout_s=30)
    assert "Connection refused" in (tmp_path / "run" / "ab.stderr").read_text()


def test_missing_ab_says_how_to_install(tmp_path):
    with pytest.raises(ab.AbNotFound, match="apt-get install -y apache2-utils"):
        ab.run_ab(ab.AbCommand("http://127.0.0.1:1/", 1, 1, ab="ab-not-installed-here"), tmp_path)


def test_missing_payload_is_a_clear_error(tmp_path):
    with pytest.raises(ab.AbError, match="does not exist"):
        ab.run_ab(ab.AbCommand("http://127.0.0.1:1/", 1, 1, post_file=tmp_path / "nope.jpg"), tmp_path)


def test_version():
    assert ab.ab_version().startswith("2.3")
