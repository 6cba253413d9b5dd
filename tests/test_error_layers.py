"""Every failed request under the layer that produced it (analysis/bench/layers.py, issue 11), on runs recorded from
real `bench.yml` runs against the faithful runtime, directly (docker-proxy) and through the local ingress (nginx).

tests/fixtures/layers/<run_key>/ holds each run's raw files as the bench wrote them; expected.json there is the
ground truth counted by hand from those files when they were recorded, and each test also recounts it from the
files with plain string matching, independently of the code under test:
- a direct run: every attempt either reached the runtime (one "POST / ..." access line, with its status) or got
  no reply from docker-proxy, so empty replies = attempts - access lines, 408s = the 408 lines;
- a run through nginx: its access log has one line per request with the status and the upstream status, and its
  error log names what the upstream did (reset by peer, refused, timed out, closed prematurely).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from analysis.bench import ab, layers, schema
from analysis.bench.schema import ERROR_LAYERS

FIXTURES = Path(__file__).parent / "fixtures" / "layers"
RUNS = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").exists())


def _classes(run_dir: Path) -> ab.RequestClasses:
    done = json.loads((run_dir / "done.json").read_text())
    result = ab.parse_run_files(run_dir, done["ab"]["argv"], done["ab"]["returncode"], done["ab"]["wall_s"])
    assert result.classified is not None
    return result.classified


def _recount(run_dir: Path, via_ingress: bool) -> dict[str, int]:
    """The layers counted from the raw files with string matching only."""
    stdout = (run_dir / "ab.stdout").read_text()
    attempts = int(re.search(r"Complete requests:\s+(\d+)", stdout).group(1))
    counts = dict.fromkeys(ERROR_LAYERS, 0)
    if via_ingress:
        lines = [ln.split() for ln in (run_dir / "ingress.access.log").read_text().splitlines() if '"POST ' in ln]
        statuses = [(ln[10], ln[-2]) for ln in lines]  # $status, $upstream_status
        errors = (run_dir / "ingress.error.log").read_text()
        backlog = errors.count("reset by peer") + errors.count("Connection refused")
        made = sum(1 for s, _ in statuses if s in ("502", "504", "413"))
        counts["runtime_408"] = sum(1 for s, u in statuses if s == u == "408")
        counts["runtime_error"] = sum(1 for s, u in statuses if s == u and s[0] in "45" and s not in ("408", "502",
                                                                                                   "504"))
        counts["runtime_backlog"] = min(backlog, made)
        counts["ingress"] = made - counts["runtime_backlog"]
    else:
        posts = [ln for ln in (run_dir / "server.log").read_text().splitlines() if '"POST / ' in ln]
        counts["runtime_408"] = sum(1 for ln in posts if '" 408 ' in ln)
        counts["runtime_error"] = sum(1 for ln in posts if re.search(r'" [45]\d\d ', ln)) - counts["runtime_408"]
        counts["proxy"] = attempts - len(posts)
    return counts


@pytest.mark.parametrize("run_key", RUNS)
def test_each_failed_request_is_under_the_layer_its_evidence_names(run_key: str) -> None:
    run_dir = FIXTURES / run_key
    expected = json.loads((run_dir / "expected.json").read_text())
    via_ingress = expected["via_ingress"]
    classes = _classes(run_dir)
    got = layers.attribute(run_dir, classes, via_ingress=via_ingress, direct_through_proxy=True).counts
    assert got == expected["layers"], got
    assert got == _recount(run_dir, via_ingress)
    assert sum(got.values()) == classes.errors == expected["errors"]


@pytest.mark.parametrize("run_key", RUNS)
def test_the_tidy_row_adds_up_to_the_runs_errors(run_key: str) -> None:
    run_dir = FIXTURES / run_key
    expected = json.loads((run_dir / "expected.json").read_text())
    c = _classes(run_dir)
    row = {"run_key": run_key, "experiment": "overload", "platform": "p", "concurrency": 50, "repetition": 1,
           "errors": c.errors, "completed": c.attempts, "non_2xx": c.non_2xx, "reset": c.reset,
           "refused": c.refused, "empty_reply": c.empty_reply, "timeout": c.timeout}

    class Platform:
        ingress_dir = "/nonexistent" if expected["via_ingress"] else None
        container = "kde-function"

    out = layers.layer_row(run_dir, row, Platform())
    assert out is not None
    assert list(out) == schema.LAYERS.names
    assert sum(out[k] for k in ERROR_LAYERS) == out["errors"] == expected["errors"]
    assert out["evidence"]


def test_the_reports_table_by_layer_sums_each_cell_to_its_failed_requests() -> None:
    import pandas as pd

    from analysis import ingress

    rows = []
    for run_key in RUNS:
        run_dir = FIXTURES / run_key
        expected = json.loads((run_dir / "expected.json").read_text())
        c = _classes(run_dir)
        got = layers.attribute(run_dir, c, via_ingress=expected["via_ingress"]).counts
        rows.append({"run_key": run_key, "experiment": "overload", "platform": expected["platform"],
                     "concurrency": 50, "repetition": 1, "errors": c.errors, **got, "evidence": ""})

    class Fake:
        error_layers = pd.DataFrame(rows)
        platforms = ("function", "container", "function_ingress")

    table = ingress.error_layers(Fake())
    assert (table["check"] == 0).all()
    assert int(table["errors"].sum()) == sum(r["errors"] for r in rows)


def test_a_kind_that_names_its_components_files_their_replies_under_platform_own(tmp_path: Path) -> None:
    """A platform kind whose log says who made each reply (Kind.error_origins; here the Fission router's JSON
    lines): the user code's own non-2xx answers are runtime_error, the router's are platform_own, and ab's
    resets go to the platform's listener, empty replies to docker-proxy; the layers add up to ab's errors."""
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
    assert sum(got.values()) == classes.errors == 7 + 2 + 3
    assert not any(got[k] for k in ("runtime_408", "runtime_backlog", "ingress", "client_timeout"))
