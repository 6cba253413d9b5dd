"""Issue 24, open loop: repetitions per rate, rates interleaved across platforms, one share for the objective,
capacity by search, and the percentile sample rule. Expected values come from the binomial (scipy) or by hand,
never from the functions under test."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis import capacity
from analysis.bench import openloop, rate, schema
from analysis.bench.config import ConfigError, config_from_dict, make_plan, rate_repetition, rate_run_key
from analysis.bench.manifest import RunFolder, create
from tests.platform_kinds import with_kinds

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "openloop_server.py"
BASE = {"profile": "local", "platforms": with_kinds({"function": {"url": "http://127.0.0.1:1/"},
                                                     "container": {"url": "http://127.0.0.1:2/predict"}})}


# ------------------------------------------------------------------------------------ percentile samples
def binomial_floor(tail: float, above: int = 1, risk: float = 0.01) -> int:
    """Smallest n with P(Binomial(n, tail) <= above) <= risk, by walking n up (scipy's binomial, not the code)."""
    n = above + 1
    while st.binom.cdf(above, n, tail) > risk:
        n += 1
    return n


@pytest.mark.parametrize("pct", [50, 90, 95, 99, 99.9, 10])
def test_samples_needed_is_the_binomial_floor_at_99_percent(pct):
    tail = min(pct, 100 - pct) / 100
    assert schema.samples_needed(pct) == binomial_floor(tail)
    # one fewer sample would not prove the percentile: the floor is tight
    assert st.binom.cdf(1, schema.samples_needed(pct) - 1, tail) > 0.01


def test_samples_needed_gives_mlperf_loadgens_published_numbers():
    # MLPerf LoadGen's early-stopping floors: 64 queries for a p90, 662 for a p99 (the old rule gave 67 and 662)
    assert schema.samples_needed(90) == 64 and schema.samples_needed(99) == 662
    # and with no sample above the value allowed, LoadGen's h_min(t=0, p99) = 459 is the same binomial at t = 0
    assert binomial_floor(0.01, above=0) == 459


def test_a_sure_verdict_needs_the_clopper_pearson_count():
    # 0 misses of n: the exact two-sided upper end at 95 % is 1 - 0.025 ** (1 / n); the first n where it is <= 1 %
    n = next(n for n in range(1, 10_000) if 1 - 0.025 ** (1 / n) <= 0.01)
    assert schema.requests_to_prove(0.95) == n == 368
    assert schema.share_ci(0, n, 0.95)[2] <= 0.01 < schema.share_ci(0, n - 1, 0.95)[2]
    for k, m in ((3, 400), (12, 1000), (0, 50)):  # against scipy's own exact interval
        ci = st.binomtest(k, m).proportion_ci(0.95, method="exact")
        assert schema.share_ci(k, m, 0.95)[1:] == pytest.approx((ci.low, ci.high), abs=1e-9)


# ----------------------------------------------------------------------------------------- the plan
def rate_keys(config: dict) -> list[str]:
    return [i.run_key for i in make_plan(config_from_dict({**BASE, "config": config}), "/r") if i.step == "rate"]


def test_rate_repetitions_run_every_rate_on_every_platform_rate_major():
    keys = rate_keys({"rate_capacity_pct": [25, 50], "rate_repetitions": 2})
    assert keys == ["rate-function-25pct", "rate-container-25pct", "rate-container-50pct", "rate-function-50pct",
                    "rate-function-25pct-r2", "rate-container-25pct-r2", "rate-container-50pct-r2",
                    "rate-function-50pct-r2"]
    item = next(i for i in make_plan(config_from_dict({**BASE, "config": {"rate_repetitions": 2}}), "/r")
                if i.run_key == "rate-container-90pct-r2")
    assert item.argv[-2:] == ["--repetition", "2"] and item.repetition == 2
    # the default keeps the step count and the keys of runs made before repetitions existed
    default = rate_keys({})
    assert len(default) == 12 and not any(k.endswith(("-r1", "-r2")) for k in default)
    assert [rate_repetition(k) for k in ("rate-function-25pct", "rate-function-25pct-r3", "rate-c-12.5rps-r2")] \
        == [1, 3, 2]
    assert rate_run_key("function", None, 12.5, 1) == "rate-function-12.5rps"
    for bad in (0, -1, "two", True, 1.5):
        with pytest.raises(ConfigError, match="'rate_repetitions' must be an integer >= 1"):
            config_from_dict({**BASE, "config": {"rate_repetitions": bad}})
    for bad in ([125, 25], [0, 50], [25], "25"):
        with pytest.raises(ConfigError, match="'rate_search_bracket_pct' must be"):
            config_from_dict({**BASE, "config": {"rate_search_bracket_pct": bad}})
    with pytest.raises(ConfigError, match="'rate_search_tolerance_pct' must be"):
        config_from_dict({**BASE, "config": {"rate_search_tolerance_pct": 0}})


def test_the_search_is_a_plan_step_after_the_grid():
    """By default each directly reached platform gets one search, after its grid runs and before the overload runs,
    bounded by rate_search_budget_s; the knob takes what rate_platforms takes, and [] leaves the search out."""
    platforms = with_kinds({"function": {"url": "http://127.0.0.1:1/"}, "container": {"url": "http://127.0.0.1:2/"}})
    platforms["function_ingress"] = {"kind": "ingress-nginx", "url": "http://127.0.0.1:3/", "via": "function"}

    def plan(config: dict) -> list:
        return make_plan(config_from_dict({"profile": "local", "platforms": platforms, "config": config}), "/r")

    items = plan({})
    steps = [i.step for i in items]
    searches = [i for i in items if i.step == "rate-search"]
    assert [(i.run_key, i.platform) for i in searches] == [("rate-search-function", "function"),
                                                           ("rate-search-container", "container")]
    assert max(k for k, s in enumerate(steps) if s == "rate") < steps.index("rate-search")
    assert steps.index("rate-search") + 2 == steps.index("overload")
    assert searches[0].argv == ["rate-search", "/r", "--platform", "function", "--budget-s", "150"]
    assert [i.platform for i in plan({"rate_search_platforms": "container,function_ingress"})
            if i.step == "rate-search"] == ["container", "function_ingress"]
    assert [i.platform for i in plan({"rate_search_platforms": None}) if i.step == "rate-search"] == [
        "function", "container", "function_ingress"]
    assert len(plan({"rate_search_platforms": []})) == len(items) - 2
    # part of the open-loop experiment: switching that off switches the search off too
    for off in ({"rate_platforms": []}, {"rate_capacity_pct": []}):
        assert not [i for i in plan(off) if i.step.startswith("rate")]
    assert plan({"rate_search_budget_s": 60})[steps.index("rate-search")].argv[-1] == "60"
    with pytest.raises(ConfigError, match="'rate_search_platforms' must be"):
        plan({"rate_search_platforms": ["nowhere"]})
    for bad in (0, -5, "long", True):
        with pytest.raises(ConfigError, match="'rate_search_budget_s' must be"):
            plan({"rate_search_budget_s": bad})


def test_three_platforms_each_go_first_in_turn():
    platforms = with_kinds({"function": {"url": "http://127.0.0.1:1/"}, "container": {"url": "http://127.0.0.1:2/"}})
    platforms["other"] = {"kind": "kubeless", "url": "http://127.0.0.1:3/"}
    plan = make_plan(config_from_dict({"profile": "local", "platforms": platforms,
                                       "config": {"rate_capacity_pct": [10, 20, 30, 40]}}), "/r")
    order = [i.platform for i in plan if i.step == "rate"]
    firsts = order[::3]
    assert firsts == ["function", "container", "other", "function"]
    assert all(sorted(order[i:i + 3]) == ["container", "function", "other"] for i in range(0, 12, 3))


# ---------------------------------------------------------------------------------- one share, pooled
def synthetic(runs_spec: list[tuple[str, float, int, int, int, int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(run_key, offered, scheduled, slow served, errors, dropped) -> rate_runs and rate_requests frames."""
    runs, requests = [], []
    for key, offered, scheduled, slow, errors, dropped in runs_spec:
        served = scheduled - errors - dropped
        runs.append({"run_key": key, "platform": "function", "capacity_pct": math.nan, "capacity_rps": math.nan,
                     "offered_rps": offered, "scheduled": scheduled, "dropped": dropped, "served": served,
                     "errors": errors, "achieved_rps": offered, "p50_ms": 100.0, "p99_ms": math.nan,
                     "lag_p99_ms": 1.0, "valid": 1, "outcome": "ok"})
        lat = [5000.0] * slow + [100.0] * (served - slow)
        requests.append(pd.DataFrame({"run_key": key, "platform": "function", "scheduled_s": 0.0,
                                      "latency_ms": lat + [math.nan] * (errors + dropped),
                                      "outcome": ["served"] * served + ["timeout"] * errors + ["dropped"] * dropped,
                                      "served": [1] * served + [0] * (errors + dropped)}))
    return pd.DataFrame(runs), pd.concat(requests, ignore_index=True)


CELLS = pd.DataFrame({"platform": ["function"], "concurrency": [1], "served_rps": [40.0], "served": [700],
                      "p50_ms": [90.0], "p99_ms": [200.0]})


def test_failed_and_slow_requests_share_one_percent():
    # 0.6 % slow and 0.6 % failed: each under its own 1 % (the old rule met it), 1.2 % together (it does not)
    runs, req = synthetic([("rate-function-10rps", 10.0, 1000, 0, 0, 0),
                           ("rate-function-20rps", 20.0, 1000, 6, 3, 3)])
    rates = capacity.rate_table(runs, req, 1000.0, 0.95)
    assert rates["missed"].tolist() == [0, 12] and rates["meets"].tolist() == [1, 0]
    ci = st.binomtest(12, 1000).proportion_ci(0.95, method="exact")
    assert rates["missed_share_ci_low"].iloc[1] == pytest.approx(ci.low) and rates["breaks_surely"].iloc[1] == 0
    cap = capacity.capacity_table(capacity.rate_levels(rates, req, 0.95), rates, CELLS, 1000.0, ["function"])
    assert cap["capacity_rps"].iloc[0] == 10.0


def test_the_repetitions_of_a_rate_are_pooled():
    # at 20 req/s: 8 of 1000 missed in the first run (0.8 %, meets), 14 of 1000 in the second: 22 of 2000 = 1.1 %
    runs, req = synthetic([("rate-function-10rps", 10.0, 1000, 0, 0, 0),
                           ("rate-function-20rps", 20.0, 1000, 8, 0, 0),
                           ("rate-function-20rps-r2", 20.0, 1000, 10, 4, 0),
                           ("rate-function-10rps-r2", 10.0, 1000, 1, 0, 0)])
    rates = capacity.rate_table(runs, req, 1000.0, 0.95)
    assert rates["repetition"].tolist() == [1, 1, 2, 2]
    levels = capacity.rate_levels(rates, req, 0.95)
    assert levels["offered_rps"].tolist() == [10.0, 20.0] and levels["runs"].tolist() == [2, 2]
    assert levels["scheduled"].tolist() == [2000, 2000] and levels["missed"].tolist() == [1, 22]
    assert levels["meets"].tolist() == [1, 0]
    ci = st.binomtest(1, 2000).proportion_ci(0.95, method="exact")  # 1 of 2000: sure, where 0 of 1000 is not
    assert levels["missed_share_ci_high"].iloc[0] == pytest.approx(ci.high) and levels["meets_surely"].iloc[0] == 1
    cap = capacity.capacity_table(levels, rates, CELLS, 1000.0, ["function"]).iloc[0]
    assert cap["capacity_rps"] == 10.0 and cap["capacity_runs"] == 2 and cap["capacity_ci_low_rps"] == 10.0
    assert cap["rates_tried"] == 2 and cap["runs_tried"] == 4


# ------------------------------------------------------------------------------------- the search logic
def folder_for(tmp_path: Path, url: str, **knobs) -> RunFolder:
    config = config_from_dict({"profile": "local", "config": {"quiet_check_s": 0.1, **knobs},
                               "platforms": with_kinds({"container": {"url": url, "metrics_url": None}})})
    return create(tmp_path / "results", "run", config)


class FakeServer:
    """Stands in for open_loop_run: a platform whose share of missed requests is `share(rate)` (deterministic)."""

    def __init__(self, folder: RunFolder, share, flaky_at: float | None = None, behind_at: float | None = None,
                 behind_times: int = 1) -> None:
        self.folder, self.share, self.flaky_at = folder, share, flaky_at
        self.behind_at, self.behind_times = behind_at, behind_times  # the generator falls behind there, n times
        self.calls: list[tuple[str, float, float]] = []

    def __call__(self, folder, platform, run_key, offered, duration, **kw):
        (folder.run_dir(run_key)).mkdir(parents=True)
        self.calls.append((run_key, offered, duration))
        scheduled = round(offered * duration)
        share = self.share(offered)
        if self.flaky_at is not None and offered == self.flaky_at and sum(c[1] == offered for c in self.calls) > 1:
            share = 0.05  # the boundary rate misses the objective when it is run again
        missed = round(share * scheduled)
        behind = offered == self.behind_at and sum(c[1] == offered for c in self.calls) <= self.behind_times
        return {"scheduled": scheduled, "served": scheduled - missed, "errors": 0, "dropped": 0, "missed": missed,
                "valid": 0 if behind else 1, "p99_ms": None, "started_utc": "", "line": ""}


def test_the_search_brackets_the_capacity_and_repeats_the_boundary(tmp_path, monkeypatch):
    folder = folder_for(tmp_path, "http://127.0.0.1:9/", rate_search_max_probes=10, rate_duration_s=2.0)
    fake = FakeServer(folder, lambda r: 0.0 if r <= 37.3 else 0.2)
    monkeypatch.setattr(rate, "open_loop_run", fake)
    result = rate.rate_search(folder, "container", low_rps=10.0, high_rps=50.0)
    record = json.loads((folder.run_dir("rate-search-container") / rate.SEARCH_JSON).read_text())
    low, high = record["low_rps"], record["high_rps"]
    assert low <= 37.3 < high and (high - low) / low <= 0.05, (low, high)
    rates = [c[1] for c in fake.calls]
    assert rates[:3] == [10.0, 50.0, 30.0] and rates[-1] == low  # ends, midpoint, ..., the boundary again
    assert record["boundary_repeated"] and record["boundary_confirmed"] and record["converged"]
    assert len(rates) <= 10 and len(record["probes"]) == len(rates)
    # every probe long enough that 0 misses prove the objective at 95 %: >= 368 scheduled requests
    assert all(round(r * d) >= 368 and d >= 2.0 for _, r, d in fake.calls)
    assert fake.calls[-1][0] == rate_run_key("container", None, low, 2)  # the repeat is the rate's repetition 2
    assert "capacity at the objective in [" in result.line and folder.is_done("rate-search-container")
    assert rate.rate_search(folder, "container", 10.0, 50.0).skipped


def with_grid(folder: RunFolder, capacity_rps: float, misses: dict[float, int], monkeypatch) -> None:
    """The run's grid as the rate step leaves it: per level (% of capacity_rps) a done run of 100 scheduled
    requests, `misses[pct]` of them timed out; and the closed-loop capacity the plan step reads."""
    monkeypatch.setattr(rate, "closed_loop_capacity", lambda folder, platform: {"capacity_rps": capacity_rps,
                                                                               "concurrency": 20, "cells": {}})
    # the calibration before each probe finds the machine as fast as the closed-loop sweep did: the calibrated
    # search's points (% of that throughput) then offer exactly the rates an uncalibrated one would
    monkeypatch.setattr(rate, "saturation_throughput", lambda *a: {"served_per_s": capacity_rps, "failed": 0,
                                                                   "sent": 1})
    for pct, missed in misses.items():
        run_dir = folder.run_dir(rate_run_key("container", pct, None, 1))
        run_dir.mkdir(parents=True)
        openloop.write_rows(run_dir / openloop.RAW_CSV, [
            {"seq": k, "scheduled_s": k / 10, "latency_ms": 20.0 if k > missed else None, "status": 200,
             "outcome": "served" if k > missed else "timeout"} for k in range(1, 101)])
        (run_dir / "done.json").write_text(json.dumps({"outcome": "ok", "summary": {"valid": 1},
                                                       "offered_rps": capacity_rps * pct / 100}))


GRID = [25, 50, 75, 90, 100, 110]  # of 40 req/s: 10, 20, 30, 36, 40, 44


def search_after_grid(path: Path, misses: dict[float, int], share, monkeypatch) -> tuple[list[float], dict, str]:
    """The plan step's search (no bracket given) after a grid with `misses` per level, against a fake server
    missing `share(rate)` of each probe: the rates probed, search.json and the progress line."""
    folder = folder_for(path, "http://127.0.0.1:9/", rate_capacity_pct=GRID)
    with_grid(folder, 40.0, misses, monkeypatch)
    fake = FakeServer(folder, share)
    monkeypatch.setattr(rate, "open_loop_run", fake)
    line = rate.rate_search(folder, "container").line
    record = json.loads((folder.run_dir("rate-search-container") / rate.SEARCH_JSON).read_text())
    return [c[1] for c in fake.calls], record, line


def test_the_plan_step_starts_from_the_grids_bracket(tmp_path, monkeypatch):
    """Capacity 40 req/s; the grid met the objective up to 90 % (36 req/s) and missed it at 100 % (40): the search
    starts at [36, 40] instead of [10, 50] (25-125 %), and needs 5 probes where the wide start needs 7."""
    rates, record, _ = search_after_grid(tmp_path, {25: 0, 50: 0, 75: 0, 90: 1, 100: 3, 110: 9},
                                         lambda r: 0.0 if r <= 37.3 else 0.2, monkeypatch)
    # 36 meets, 40 misses, [36, 40] is 11 % wide: 38 misses, [36, 38] 5.6 %: 37 meets, [37, 38] 2.7 %: repeat 37
    assert rates == [36.0, 40.0, 38.0, 37.0, 37.0]
    assert (record["low_rps"], record["high_rps"]) == (37.0, 38.0) and record["start"] == "grid"
    assert (record["start_low_rps"], record["start_high_rps"]) == (36.0, 40.0)


def test_a_grid_bracket_the_probes_disprove_moves_out_to_the_grids_next_level_then_the_knobs(tmp_path, monkeypatch):
    """The grid's short runs said 36 req/s met the objective; the long probe there misses (capacity 33): the low end
    moves to the grid's next level, 75 % (30 req/s), and 36 becomes the high end, never probed again. With capacity
    25 the 30 req/s probe misses too, and the low end moves on to 25 % (10 req/s). A grid that met it everywhere
    starts at [44, 50] (110-125 %), and a probe meeting it at 50 moves the high end to nothing above: '> 50'."""
    rates, record, _ = search_after_grid(tmp_path / "wrong", {25: 0, 50: 0, 75: 0, 90: 0, 100: 5, 110: 9},
                                         lambda r: 0.0 if r <= 33.0 else 0.2, monkeypatch)
    # 36 misses, 30 meets: [30, 36] is 20 % wide: 33 meets, [33, 36] 9 %: 34.5 misses, [33, 34.5] 4.5 %: repeat 33
    assert rates == [36.0, 30.0, 33.0, 34.5, 33.0]
    assert (record["low_rps"], record["high_rps"]) == (33.0, 34.5) and record["boundary_confirmed"]
    rates, record, _ = search_after_grid(tmp_path / "wronger", {25: 0, 50: 0, 75: 0, 90: 0, 100: 5, 110: 9},
                                         lambda r: 0.0 if r <= 25.0 else 0.2, monkeypatch)
    assert rates[:3] == [36.0, 30.0, 10.0] and 40.0 not in rates
    assert record["low_rps"] <= 25.0 < record["high_rps"] <= 30.0
    rates, record, line = search_after_grid(tmp_path / "all-met", dict.fromkeys(GRID, 0), lambda r: 0.0,
                                            monkeypatch)
    assert rates == [44.0, 50.0] and (record["low_rps"], record["high_rps"]) == (50.0, None) and "> 50" in line


def test_a_boundary_that_fails_when_repeated_becomes_the_high_end(tmp_path, monkeypatch):
    folder = folder_for(tmp_path, "http://127.0.0.1:9/", rate_search_tolerance_pct=30.0)
    # 10 meets, 50 misses, 30 meets, 40 misses ([30, 40] is 33 % wide, over 30 %), 35 meets: [35, 40] is narrow enough
    fake = FakeServer(folder, lambda r: 0.0 if r <= 36 else 0.2, flaky_at=35.0)
    monkeypatch.setattr(rate, "open_loop_run", fake)
    rate.rate_search(folder, "container", low_rps=10.0, high_rps=50.0)
    record = json.loads((folder.run_dir("rate-search-container") / rate.SEARCH_JSON).read_text())
    assert [c[1] for c in fake.calls] == [10.0, 50.0, 30.0, 40.0, 35.0, 35.0]
    # 35 req/s: 0 of 368 missed, then 18 of 368 in the repeat: 2.4 % together, so 30 (which met) is the low end
    assert (record["low_rps"], record["high_rps"]) == (30.0, 35.0) and not record["boundary_confirmed"]
    # the search stopped at 30 % but the repeat widened the bracket again: the reason must not stop at "within"
    assert record["stop_reason"] == ("bracket within 30 %, then the low end 35 req/s missed the objective when "
                                     "repeated: the bracket became [30, 35]")


def test_a_probe_whose_generator_fell_behind_runs_once_more(tmp_path, monkeypatch):
    """The generator falls behind once at the first midpoint (30 req/s): that probe runs again and the search goes
    on to the same bracket as without the hiccup, both runs in the record. Falling behind twice there stops it, and
    so does falling behind once where the probe budget leaves no room to run it again, each with its own reason."""
    folder = folder_for(tmp_path / "once", "http://127.0.0.1:9/", rate_search_max_probes=10)
    fake = FakeServer(folder, lambda r: 0.0 if r <= 37.3 else 0.2, behind_at=30.0)
    monkeypatch.setattr(rate, "open_loop_run", fake)
    rate.rate_search(folder, "container", low_rps=10.0, high_rps=50.0)
    record = json.loads((folder.run_dir("rate-search-container") / rate.SEARCH_JSON).read_text())
    rates = [c[1] for c in fake.calls]
    assert rates[:4] == [10.0, 50.0, 30.0, 30.0] and [q["valid"] for q in record["probes"][2:4]] == [False, True]
    assert "again: probe 3's generator fell behind" in record["probes"][3]["why"]
    assert record["low_rps"] <= 37.3 < record["high_rps"] and record["converged"]
    folder = folder_for(tmp_path / "twice", "http://127.0.0.1:9/", rate_search_max_probes=10)
    fake = FakeServer(folder, lambda r: 0.0 if r <= 37.3 else 0.2, behind_at=30.0, behind_times=2)
    monkeypatch.setattr(rate, "open_loop_run", fake)
    line = rate.rate_search(folder, "container", low_rps=10.0, high_rps=50.0).line
    record = json.loads((folder.run_dir("rate-search-container") / rate.SEARCH_JSON).read_text())
    assert [c[1] for c in fake.calls] == [10.0, 50.0, 30.0, 30.0]
    assert (record["low_rps"], record["high_rps"]) == (10.0, 50.0)
    assert record["stop_reason"] == "probe 4 invalid: the generator fell behind, twice" and "twice" in line
    # with 4 probes allowed, the 3rd cannot be run again (one is kept for the boundary's repeat): it says so
    folder = folder_for(tmp_path / "no-room", "http://127.0.0.1:9/", rate_search_max_probes=4)
    fake = FakeServer(folder, lambda r: 0.0 if r <= 37.3 else 0.2, behind_at=30.0)
    monkeypatch.setattr(rate, "open_loop_run", fake)
    rate.rate_search(folder, "container", low_rps=10.0, high_rps=50.0)
    record = json.loads((folder.run_dir("rate-search-container") / rate.SEARCH_JSON).read_text())
    assert [c[1] for c in fake.calls] == [10.0, 50.0, 30.0]
    assert record["stop_reason"] == ("probe 3 invalid: the generator fell behind, and the probe or time budget left "
                                     "no room to run it again")


def test_a_missed_repeat_with_no_lower_probe_falls_back_on_the_grids_next_level(tmp_path, monkeypatch):
    """The grid put the capacity in [36, 40] (90-100 % of 40 req/s); 36 meets, 40, 38 and 37 miss, and 36 misses
    when run again: no probe below 36 met the objective, so the grid's next level (75 %, 30 req/s) is probed once
    and becomes the low end, instead of a one-sided '< 36'. (The calibration finds the machine at 40 req/s, so the
    search's points, 90 % and so on, offer these rates.)"""
    folder = folder_for(tmp_path, "http://127.0.0.1:9/", rate_capacity_pct=GRID)
    with_grid(folder, 40.0, {25: 0, 50: 0, 75: 0, 90: 0, 100: 3, 110: 9}, monkeypatch)
    fake = FakeServer(folder, lambda r: 0.0 if r <= 36.5 else 0.2, flaky_at=36.0)
    monkeypatch.setattr(rate, "open_loop_run", fake)
    rate.rate_search(folder, "container")
    record = json.loads((folder.run_dir("rate-search-container") / rate.SEARCH_JSON).read_text())
    assert [c[1] for c in fake.calls] == [36.0, 40.0, 38.0, 37.0, 36.0, 30.0]
    assert (record["low_rps"], record["high_rps"]) == (30.0, 36.0) and not record["boundary_confirmed"]
    # the plan step's search is calibrated: its points, and so its reasons, are % of the measured throughput
    assert record["stop_reason"].endswith("the bracket became [75, 90] % after probing 75 % (met it)")
    assert (record["low_pct"], record["high_pct"]) == (75.0, 90.0)


def test_a_calibrated_search_finds_the_share_on_a_machine_that_slows_down(tmp_path, monkeypatch):
    """The platform meets the objective up to 91 % of what it can serve now; the machine serves 40 req/s for the
    first two probes and 32 (20 % slower) after. The calibration before each probe measures that, so the search in %
    finds the share, [90, 92.5] %, and reports 90 % of the closed-loop 40 req/s; an uncalibrated search of the same
    platform ends below 30 req/s, a bracket the slowdown, not the platform, chose."""
    def speed(probe: int) -> float:
        return 40.0 if probe <= 2 else 32.0

    def run(calibrate_s: float) -> tuple[list[float], dict]:
        folder = folder_for(tmp_path / f"cal{calibrate_s:g}", "http://127.0.0.1:9/", rate_capacity_pct=GRID,
                            rate_search_calibrate_s=calibrate_s)
        with_grid(folder, 40.0, {25: 0, 50: 0, 75: 0, 90: 0, 100: 3, 110: 9}, monkeypatch)
        fake = FakeServer(folder, lambda r: 0.0 if r <= 0.91 * speed(len(fake.calls)) else 0.2)
        seen: list[tuple[int, float]] = []  # (concurrency, seconds) of each calibration

        def calibration(folder_, platform, concurrency, seconds, hint, out_dir):
            seen.append((concurrency, seconds))
            return {"served_per_s": speed(len(fake.calls) + 1), "failed": 0, "sent": 1}

        monkeypatch.setattr(rate, "saturation_throughput", calibration)
        monkeypatch.setattr(rate, "open_loop_run", fake)
        rate.rate_search(folder, "container")
        record = json.loads((folder.run_dir("rate-search-container") / rate.SEARCH_JSON).read_text())
        if calibrate_s:
            assert seen == [(20, calibrate_s)] * len(fake.calls)  # one before every probe, at the sweep's best c
        else:
            assert not seen
        return [c[1] for c in fake.calls], record

    rates, record = run(3.0)
    # 90 % of 40 = 36 meets (<= 36.4); 100 % of 40 misses; then 32 req/s: 95 % = 30.4 and 92.5 % = 29.6 miss
    # (> 29.12); [90, 92.5] is 2.8 % wide; the repeat at 90 % of 32 = 28.8 meets
    assert rates == [36.0, 40.0, 30.4, 29.6, 28.8]
    assert (record["low_pct"], record["high_pct"]) == (90.0, 92.5) and record["boundary_confirmed"]
    assert (record["low_rps"], record["high_rps"]) == (36.0, 37.0)  # the shares of the closed-loop 40 req/s
    assert (record["measured_low_rps"], record["measured_high_rps"]) == (32.4, 29.6)  # (36 + 28.8) / 2
    assert record["calibration_rps_median"] == 32.0 and record["unit"] == "%"
    assert [p["calibration_rps"] for p in record["probes"]] == [40.0, 40.0, 32.0, 32.0, 32.0]
    rates, record = run(0.0)
    # req/s: 36 meets, 40 misses, then at 32 req/s 38 and 37 miss, 36 misses when repeated, and so does the grid's
    # 75 % (30 > 29.12): the uncalibrated search ends at '< 30', below a rate the platform met before the slowdown
    assert rates == [36.0, 40.0, 38.0, 37.0, 36.0, 30.0]
    assert (record["low_rps"], record["high_rps"]) == (None, 30.0) and record["low_pct"] is None


def test_the_calibration_measures_a_serial_servers_throughput(tmp_path):
    """A serial server at 20 ms a request serves 50 req/s at most, however many requests wait; the calibration
    (ab at 4 in flight for about 3 s, as the concurrency sweep runs it) must find close to that, and never more."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(SERVER), "--port", str(port), "--service-ms", "20"],
                            stdout=subprocess.DEVNULL)
    try:
        openloop.wait_port(port)
        folder = folder_for(tmp_path, f"http://127.0.0.1:{port}/predict", request_timeout_s=5)
        folder.payload_path.write_bytes(b"x" * 1000)
        cal = rate.saturation_throughput(folder, "container", 4, 3.0, 50.0, tmp_path / "cal")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert cal["sent"] == 150 and cal["served"] == 150 and cal["failed"] == 0 and cal["concurrency"] == 4
    assert 0.85 * 50 <= cal["served_per_s"] <= 50 * 1.02, cal  # 150 requests take at least 3 s
    assert (tmp_path / "cal" / "ab.stdout").exists()  # ab's own output is kept beside the search


def test_the_calibration_knob_is_checked():
    with pytest.raises(ConfigError, match="rate_search_calibrate_s"):
        config_from_dict({**BASE, "config": {"rate_search_calibrate_s": -1}})
    assert config_from_dict({**BASE, "config": {"rate_search_calibrate_s": 0}}).knobs["rate_search_calibrate_s"] == 0


def test_a_search_with_capacity_outside_the_bracket_says_so(tmp_path, monkeypatch):
    folder = folder_for(tmp_path, "http://127.0.0.1:9/")
    monkeypatch.setattr(rate, "open_loop_run", FakeServer(folder, lambda r: 0.5))
    line = rate.rate_search(folder, "container", low_rps=10.0, high_rps=50.0).line
    record = json.loads((folder.run_dir("rate-search-container") / rate.SEARCH_JSON).read_text())
    assert record["low_rps"] is None and record["high_rps"] == 10.0 and "< 10" in line
    assert len(record["probes"]) == 1 and "below the bracket" in record["stop_reason"]


# ---------------------------------------------------------------------------- the search, for real
def test_the_search_against_a_real_server_and_the_report(tmp_path):
    """A serial server (20 ms a request: 50 req/s at most) found by bisection with the real generator; the probes
    are ordinary rate runs, finalize writes rate_search.csv and the capacity table shows the bracket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(SERVER), "--port", str(port), "--service-ms", "20"],
                            stdout=subprocess.DEVNULL)
    try:
        openloop.wait_port(port)
        folder = folder_for(tmp_path, f"http://127.0.0.1:{port}/predict", rate_duration_s=1.0, slo_p99_ms=300.0,
                            rate_search_tolerance_pct=10.0, rate_search_max_probes=7, request_timeout_s=5,
                            log_settle_s=0.0, rate_max_lag_ms=20.0)
        result = rate.rate_search(folder, "container", low_rps=10.0, high_rps=70.0, level=0.5, budget_s=90)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(result.line)
    record = json.loads((folder.run_dir("rate-search-container") / rate.SEARCH_JSON).read_text())
    assert record["requests_per_probe"] == schema.requests_to_prove(0.5) == 138  # 1 - 0.25 ** (1 / n) <= 1 %
    assert all(p["scheduled"] >= 138 for p in record["probes"])  # what was sent, not what the rate promised
    subprocess.run([sys.executable, "-m", "analysis.bench", "finalize", str(folder.path)], cwd=REPO, check=True,
                   capture_output=True, timeout=120)
    runs = pd.read_csv(folder.path / "rate_runs.csv")
    requests = pd.read_csv(folder.path / "rate_requests.csv")
    assert sorted(runs["run_key"]) == sorted(p["run_key"] for p in record["probes"])
    # each probe says it is one (compare leaves such runs out of its cells)
    assert dict(zip(runs["run_key"], runs["search_probe"], strict=True)) == {
        p["run_key"]: p["probe"] for p in record["probes"]}
    # recount each offered rate's misses from the raw requests: slower than 300 ms, or not served
    missed = requests.assign(m=(requests["served"] == 0) | (requests["latency_ms"] > 300.0))
    share = {r: missed[missed["run_key"].isin(runs.loc[runs["offered_rps"] == r, "run_key"])]["m"].mean()
             for r in runs["offered_rps"].unique()}
    low, high = record["low_rps"], record["high_rps"]
    assert low is not None and high is not None, record["stop_reason"]
    assert share[low] <= 0.01 < share[high]
    assert 10.0 <= low < high <= 70.0
    # physics: one worker at >= 20 ms a request finishes its k-th request no earlier than k x 20 ms after t = 0, so a
    # request scheduled at s_k waited at least 20 k - 1000 s_k ms; the rate declared to meet the objective cannot be
    # one where that bound alone puts more than 1 % of the requests over 300 ms
    for key in runs.loc[runs["offered_rps"] == low, "run_key"]:
        s_k = np.sort(requests.loc[requests["run_key"] == key, "scheduled_s"].to_numpy(float))
        bound = 20.0 * np.arange(1, len(s_k) + 1) - 1000.0 * s_k
        assert (bound > 300.0).mean() <= 0.01, key
    search = pd.read_csv(folder.path / "rate_search.csv")
    assert search["low_rps"].tolist() == [low] and search["probes"].tolist() == [len(record["probes"])]
    results = type("R", (), {"folder": folder.path, "platforms": ["container"], "config": folder.config.knobs})
    cap = capacity.capacity_table(
        capacity.rate_levels(capacity.rate_table(runs, requests, 300.0, 0.95), requests, 0.95),
        capacity.rate_table(runs, requests, 300.0, 0.95), CELLS.assign(platform="container"), 300.0,
        ["container"], capacity.load_searches(results)).iloc[0]
    assert (cap["search_low_rps"], cap["search_high_rps"]) == (low, high)
    assert capacity.search_text(cap).startswith(f"[{low:.1f}, {high:.1f}] req/s")
    assert np.isfinite(cap["capacity_rps"])


def test_the_capacity_table_shows_a_calibrated_searchs_shares():
    row = pd.Series({"search_probes": 5, "search_low_rps": 36.0, "search_high_rps": 37.0, "search_low_pct": 90.0,
                     "search_high_pct": 92.5, "search_boundary_confirmed": 1.0})
    text = capacity.search_text(row)
    assert text.startswith("[36.0, 37.0] req/s (3 %) = [90, 92.5] % of the closed-loop capacity")
    assert "boundary held when repeated" in text
    plain = capacity.search_text(row.drop(["search_low_pct", "search_high_pct"]))
    assert " % of the closed-loop" not in plain and plain.startswith("[36.0, 37.0] req/s")
