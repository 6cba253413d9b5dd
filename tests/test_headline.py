"""The headline as a ratio measured interleaved (issue 24): the paired step against real HTTP services on 127.0.0.1,
its table, the statistics recomputed here with numpy and scipy, the equivalence verdict at the edges of the paper's
band, the fallback for runs made before the step, and a seeded simulation of the machine's speed drift that shows
why the paired ratio repeats where the block probe does not."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis import headline, paper, tables
from analysis.bench import schema
from analysis.bench.config import ConfigError, config_from_dict, make_plan
from analysis.bench.manifest import RunFolder
from analysis.bench.runner import paired
from analysis.bench.tidy import finalize
from analysis.load import load_results
from analysis.report import build
from analysis.stats import median_ci
from analysis.summarize import per_run
from analysis.synthetic import Plan, write_results
from analysis.tables import Settings
from analysis.verdict import verdict
from tests.platform_kinds import with_kinds
from tests.test_bench_runner import REPO, Service, bench, init, write_config

FIXTURE = REPO / "tests" / "fixtures" / "results" / "complete"
NAMES = ["function", "container", "bounded"]
needs_ab = pytest.mark.skipif(shutil.which("ab") is None, reason="init records ab's version")


@pytest.fixture
def three(tmp_path):
    """function, container and a bounded third function platform as real services; 10 rounds, the third capped at
    4 (requests_per_run), as a slow platform such as OpenFaaS's classic watchdog would be."""
    made = [Service(tmp_path, "function", "--delay-ms", "3"), Service(tmp_path, "container", "--delay-ms", "1"),
            Service(tmp_path, "bounded", "--delay-ms", "2")]
    config = write_config(tmp_path / "bench.json", {"function": made[0].platform("/"),
                                                     "container": made[1].platform()},
                          paired_requests=10, concurrency=[1], repetitions=1, probe_requests=2)
    data = json.loads(config.read_text())
    data["platforms"]["bounded"] = {**made[2].platform(), "kind": "kubeless", "requests_per_run": 4,
                                    "max_concurrency": 1}
    config.write_text(json.dumps(data))
    yield made, config
    for service in made:
        service.stop()


def last(items: list[str], value: str) -> int:
    return max(i for i, item in enumerate(items) if item == value)


def arrivals(services: list[Service]) -> list[str]:
    """Which platform each POST reached, in the order the servers themselves logged them (their own clocks)."""
    lines = [json.loads(line) for s in services for line in s.log.read_text().splitlines() if line.strip()]
    return [r["platform"] for r in sorted(lines, key=lambda r: r["ts"])]


# ------------------------------------------------------------------------------------------- the step
@needs_ab
def test_the_paired_step_rotates_the_order_and_writes_one_row_per_request(three, tmp_path):
    services, config = three
    run_dir = Path(init(tmp_path / "results", config)["run_dir"])
    plan = RunFolder(run_dir).plan()
    steps = [item.step for item in plan]
    assert steps.count("paired") == 1 and steps.index("paired") == last(steps, "probe") + 1  # right after the probes
    item = next(i for i in plan if i.step == "paired")
    assert item.argv == ["paired", str(run_dir), "--rounds", "10"] and item.requests == 10 + 10 + 4

    proc = bench("paired", run_dir)
    assert proc.returncode == 0, proc.stderr
    assert "10 rounds" in proc.stdout and "bounded 4/4 ok" in proc.stdout and "function 10/10 ok" in proc.stdout
    lines = [json.loads(x) for x in (run_dir / "raw" / "paired" / "paired.jsonl").read_text().splitlines()]
    assert len(lines) == 24
    done = json.loads((run_dir / "raw" / "paired" / "done.json").read_text())
    assert done["step"] == "paired" and done["outcome"] == "ok" and done["bounded_rounds"] == {"bounded": 4}

    # the bounded platform: 4 rounds, spread over the step rather than bunched at its start
    taking_part = sorted({r["round"] for r in lines if r["platform"] == "bounded"})
    assert len(taking_part) == 4 and taking_part[0] <= 3 and taking_part[-1] >= 8
    # what the servers saw, in their own order: every round rotates the configured order by one place
    expected = []
    for i in range(10):
        order = NAMES[i % 3:] + NAMES[:i % 3]
        expected += [n for n in order if n != "bounded" or i + 1 in taking_part]
    assert arrivals(services) == expected
    firsts = [expected_round[0] for expected_round in
              [[r["platform"] for r in lines if r["round"] == k] for k in range(1, 11)]]
    assert {"function", "container"} <= set(firsts)  # no platform always goes first

    again = paired(RunFolder(run_dir))
    assert again.skipped and "already done" in again.line
    lines_out, problems = finalize(RunFolder(run_dir))
    assert not problems and any("paired: 10 rounds, 0 failed" in line for line in lines_out), lines_out
    table = pd.read_csv(run_dir / "paired.csv")
    assert list(table.columns) == schema.PAIRED.names and len(table) == 24
    assert [tuple(x) for x in table[["round", "platform"]].to_numpy()] == [(r["round"], r["platform"]) for r in lines]
    assert (table["status"] == 200).all() and table["error"].isna().all()
    for _, r in table.groupby("round"):
        assert list(r["position"]) == list(range(1, len(r) + 1))
    # client time covers the server's own (its sleep), which covers the configured delay
    delay = {"function": 3.0, "container": 1.0, "bounded": 2.0}
    assert all(row.response_ms > row.prediction_ms >= delay[row.platform] for row in table.itertuples())


@needs_ab
def test_an_interrupted_paired_step_keeps_its_complete_rounds(tmp_path):
    services = [Service(tmp_path, "function", "--delay-ms", "25"), Service(tmp_path, "container", "--delay-ms", "25")]
    try:
        config = write_config(tmp_path / "bench.json", {"function": services[0].platform("/"),
                                                         "container": services[1].platform()}, paired_requests=20)
        run_dir = Path(init(tmp_path / "results", config)["run_dir"])
        jsonl = run_dir / "raw" / "paired" / "paired.jsonl"
        runner = subprocess.Popen([sys.executable, "-m", "analysis.bench", "paired", str(run_dir)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 7) and time.monotonic() < deadline:
            time.sleep(0.01)
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=30)
        assert runner.returncode == 130
        assert not (run_dir / "raw" / "paired" / "done.json").exists()
        measured = [json.loads(x) for x in jsonl.read_text().splitlines()]
        assert len(measured) >= 7  # what it measured is on disk
        whole = [r for r in measured if r["round"] <= len(measured) // 2]
        proc = bench("paired", run_dir)
        assert proc.returncode == 0 and "resuming after round" in proc.stdout + proc.stderr
        after = [json.loads(x) for x in jsonl.read_text().splitlines()]
        assert after[:len(whole)] == whole  # the complete rounds kept as measured
        assert [(r["round"], r["position"]) for r in after] == [(k, p) for k in range(1, 21) for p in (1, 2)]
        done = json.loads((run_dir / "raw" / "paired" / "done.json").read_text())
        assert done["resumed_after_round"] == len(measured) // 2
    finally:
        for s in services:
            s.stop()


def test_the_plan_and_the_knob(tmp_path):
    platforms = with_kinds({"function": {"url": "http://127.0.0.1:9/"}, "container": {"url": "http://127.0.0.1:9/p"}})
    plan = make_plan(config_from_dict({"platforms": platforms}), tmp_path)
    steps = [i.step for i in plan]
    assert steps.count("paired") == 1 and steps.index("paired") == last(steps, "probe") + 1
    assert next(i for i in plan if i.step == "paired").requests == 200  # the default: 100 rounds, 2 platforms
    off = make_plan(config_from_dict({"platforms": platforms, "config": {"paired_requests": 0}}), tmp_path)
    assert "paired" not in [i.step for i in off]
    for bad in (-1, 1.5, True, "many"):
        with pytest.raises(ConfigError, match="paired_requests"):
            config_from_dict({"platforms": platforms, "config": {"paired_requests": bad}})
    assert config_from_dict({"platforms": platforms, "config": {"paired_requests": "7"}}).knobs["paired_requests"] == 7
    assert "--rounds" in bench("paired", "--help").stdout


# -------------------------------------------------------------------------------------- the statistics
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = write_results(tmp_path_factory.mktemp("syn") / "run",
                           Plan(concurrency=[1, 10], repetitions=4, requests_per_run=50, seed=11, paired_requests=60))
    return folder


def t_interval_of_logs(ratios: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    logs = np.log(ratios)
    half = st.t.ppf(0.5 + level / 2, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
    return float(np.exp(logs.mean())), float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))


def median_interval(ratios: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """The median and the distribution-free interval between the j-th smallest and j-th largest values, for the
    largest j whose coverage P(j <= Binomial(n, 1/2) <= n - j) still reaches the level."""
    x, n = np.sort(ratios), len(ratios)
    j = max(j for j in range(1, n // 2 + 1) if st.binom.cdf(n - j, n, 0.5) - st.binom.cdf(j - 1, n, 0.5) >= level)
    return float(np.median(x)), float(x[j - 1]), float(x[n - j])


def test_the_c1_ratio_is_the_median_of_per_round_ratios(synthetic, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(synthetic, folder)
    raw = pd.read_csv(folder / "paired.csv", dtype={"error": object})
    # two failures, each counted once: the function's round 3 (a 500) and the container's round 5 (no reply)
    raw.loc[(raw["round"] == 3) & (raw["platform"] == "function"), ["status", "error"]] = [500, "HTTP 500: boom"]
    mask = (raw["round"] == 5) & (raw["platform"] == "container")
    raw.loc[mask, ["status", "response_ms", "prediction_ms", "error"]] = [0, np.nan, np.nan, "ConnectionResetError"]
    raw.to_csv(folder / "paired.csv", index=False)
    results = load_results(folder)
    table = headline.headline_table(results, per_run(results))
    row = table[(table["source"] == "paired")].iloc[0]

    wide = raw[raw["status"] == 200].pivot(index="round", columns="platform", values="response_ms").dropna()
    ratios = (wide["function"] / wide["container"]).to_numpy()
    assert len(ratios) == 58 and row["n"] == 58
    est, lo, hi = median_interval(ratios)
    assert (row["ratio"], row["ratio_ci_low"], row["ratio_ci_high"]) == pytest.approx((est, lo, hi), rel=1e-9)
    assert 0.95 <= row["ratio_ci_level"] < 0.99
    geo = t_interval_of_logs(ratios)
    assert (row["geomean_ratio"], row["geomean_ratio_ci_low"], row["geomean_ratio_ci_high"]) == pytest.approx(
        geo, rel=1e-9)
    assert row["platform_failed"] == 1 and row["baseline_failed"] == 1
    # the synthetic model's own ratio at c=1: function (9 + 27 + 2 + 1 ms) over container (6 + 2.5 + 1.5 + 1 ms)
    assert lo < 39.0 / 11.0 * 1.03 and hi > 39.0 / 11.0 * 0.97
    assert row["paper_claim"] == "does not hold"  # 3.5x: wholly outside 1.25-1.45


def test_five_pairs_give_a_median_but_no_interval_and_no_verdict(synthetic, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(synthetic, folder)
    raw = pd.read_csv(folder / "paired.csv", dtype={"error": object})
    raw[raw["round"] <= 5].to_csv(folder / "paired.csv", index=False)
    results = load_results(folder)
    row = headline.headline_table(results, per_run(results)).query("source == 'paired'").iloc[0]
    wide = raw[raw["round"] <= 5].pivot(index="round", columns="platform", values="response_ms")
    assert row["n"] == 5 and row["ratio"] == pytest.approx(float(np.median(wide["function"] / wide["container"])))
    # five values bound their median with at most 1 - 2 / 2**5 = 93.75 % coverage: below 95 %, so no interval
    assert np.isnan(row["ratio_ci_low"]) and np.isnan(row["ratio_ci_high"])
    assert row["ratio_ci_level"] == pytest.approx(1 - 2 / 2**5) and row["paper_claim"] == "inconclusive"


def test_the_per_concurrency_ratio_and_the_slow_mode_share(synthetic):
    results = load_results(synthetic)
    table = headline.headline_table(results, per_run(results))
    req = pd.read_csv(synthetic / "requests.csv")
    req = req[(req["experiment"] == "concurrency") & (req["served"] == 1)]
    means = req.groupby(["platform", "concurrency", "repetition"])["total_ms"].mean()
    for c in (1, 10):
        ratios = np.array([means["function", c, r] / means["container", c, r] for r in range(1, 5)])
        est, lo, hi = t_interval_of_logs(ratios)
        row = table[(table["source"] == "repetitions") & (table["concurrency"] == c)].iloc[0]
        assert (row["ratio"], row["ratio_ci_low"], row["ratio_ci_high"]) == pytest.approx((est, lo, hi), rel=1e-9)
        assert row["n"] == 4
    row = table[(table["source"] == "repetitions") & (table["concurrency"] == 10)].iloc[0]
    for who, col in (("function", "platform_slow_pct"), ("container", "baseline_slow_pct")):
        cell = req[(req["platform"] == who) & (req["concurrency"] == 10)]
        slow = sum(int((g["total_ms"] > g["total_ms"].median() + 1000).sum()) for _, g in cell.groupby("run_key"))
        assert row[col] == pytest.approx(100 * slow / len(cell))
    assert row["platform_slow_pct"] > 0 and row["baseline_slow_pct"] == 0  # the function's backlog overflows
    c1 = table[(table["source"] == "repetitions") & (table["concurrency"] == 1)].iloc[0]
    assert np.isnan(c1.get("platform_slow_pct", np.nan))  # below c=10 no share is given


# ------------------------------------------------------------------------------- the verdict, by equivalence
@pytest.mark.parametrize("low, high, word", [
    (1.25, 1.45, "holds"), (1.30, 1.40, "holds"),  # inside, the band's ends included
    (1.2499, 1.40, "inconclusive"), (1.30, 1.4501, "inconclusive"), (1.0, 2.0, "inconclusive"),  # straddles
    (1.0, 1.25, "inconclusive"), (1.45, 1.9, "inconclusive"),  # touches the band: not wholly outside
    (1.0, 1.2499, "does not hold"), (1.4501, 1.9, "does not hold"),  # wholly outside
    (float("nan"), 1.3, "inconclusive"),
])
def test_equivalence_at_the_edges_of_the_band(low, high, word):
    assert paper.RESPONSE_RATIO_BAND == (1.25, 1.45)
    assert headline.equivalence(low, high) == word


def scaled_run(synthetic: Path, folder: Path, factor: float, noise: float, seed: int = 3) -> Path:
    """The synthetic run with the function's paired times set to the container's of the same round times `factor`
    and a lognormal noise of sigma `noise`."""
    shutil.copytree(synthetic, folder)
    raw = pd.read_csv(folder / "paired.csv")
    base = raw[raw["platform"] == "container"].set_index("round")["response_ms"]
    f = raw["platform"] == "function"
    rng = np.random.default_rng(seed)
    raw.loc[f, "response_ms"] = raw.loc[f, "round"].map(base).to_numpy() * factor * rng.lognormal(0, noise, f.sum())
    raw.to_csv(folder / "paired.csv", index=False)
    return folder


@pytest.mark.parametrize("factor, noise, word", [(1.35, 0.02, "holds"), (1.7, 0.02, "does not hold"),
                                                 (1.45, 0.3, "inconclusive")])
def test_the_verdict_judges_the_35_pct_claim_by_equivalence(synthetic, tmp_path, factor, noise, word):
    folder = scaled_run(synthetic, tmp_path / "run", factor, noise)
    results = load_results(folder)
    ratios = headline.paired_ratios(results)
    _, lo, hi = median_interval(ratios[ratios["platform"] == "function"]["ratio"].to_numpy())
    inside, outside = 1.25 <= lo and hi <= 1.45, hi < 1.25 or lo > 1.45
    assert {"holds": inside, "does not hold": outside, "inconclusive": not (inside or outside)}[word]
    s = Settings(resamples=200)
    runs = per_run(results)
    head = headline.headline_table(results, runs)
    found = verdict(results, tables.table1_overhead(results, s), tables.concurrency_table(runs, results, s),
                    tables.overhead_table(runs, results, s), tables.breakdown_table(runs, results), headline=head)
    assert f"~35 % response-time overhead: {word}" in found.summary
    assert head.loc[head["source"] == "paired", "paper_claim"].iloc[0] == word
    assert any("paired.csv, 60 pairs" in claim for claim in found.claims)
    if word == "inconclusive":  # once, the whole report: the claim and the headline table near its top
        report = build(results, tmp_path / "report", s)
        md = report.md.read_text()
        assert f"~35 % response-time overhead: {word}" in report.summary and "paired.csv, 60 pairs" in md
        assert md.index("## The headline") < md.index("## Every function platform") < md.index("## Concurrency")
        written = pd.read_csv(report.tables["headline"])
        assert written["ratio"].to_numpy() == pytest.approx(head["ratio"].to_numpy(), rel=1e-9)


def test_a_run_without_paired_csv_falls_back_to_the_probe_and_says_so(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "analysis", str(FIXTURE), "--out", str(out),
                           "--bootstrap-resamples", "500"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not (FIXTURE / "paired.csv").exists()
    md = (out / "report.md").read_text()
    assert "no paired.csv" in md and "judged by overlap" in md
    head = pd.read_csv(out / "tables" / "headline.csv")
    probe = head[head["concurrency"] == 1].iloc[0]
    assert probe["source"] == "probe blocks" and set(head["source"]) == {"probe blocks", "repetitions"}
    # the fallback's ratio is the probe's ratio of means
    p = pd.read_csv(FIXTURE / "probe.csv")
    p = p[p["status"] == 200].groupby("platform")["response_ms"].mean()
    assert probe["ratio"] == pytest.approx(p["function"] / p["container"], rel=1e-9)


# ------------------------------------------------------------------------------------------- the simulation
def test_the_paired_ratio_repeats_where_the_block_probe_does_not(capsys):
    """Seeded: 2000 simulated runs of the block probe (10 function requests, then 10 container requests) and of the
    paired step (100 rounds, the order alternating), on a machine whose speed drifts slowly: a lognormal factor
    following an AR(1) from request to request (sigma 0.2, correlation 0.97 per request, i.e. swings over a few
    seconds), with 10 % per-request noise on top. The function is 1.35x the container throughout."""
    rng = np.random.default_rng(24)
    runs, true_ratio, sigma, rho, noise = 2000, 1.35, 0.2, 0.97, 0.1

    def drift(n: int) -> np.ndarray:  # runs x n log speed factors, stationary AR(1)
        x = np.empty((runs, n))
        x[:, 0] = rng.normal(0, sigma, runs)
        for i in range(1, n):
            x[:, i] = rho * x[:, i - 1] + np.sqrt(1 - rho**2) * rng.normal(0, sigma, runs)
        return x

    base_ms = 30.0
    speed = np.exp(drift(20))  # the block probe: requests 0-9 to the function, 10-19 to the container
    f = true_ratio * base_ms * speed[:, :10] * rng.lognormal(0, noise, (runs, 10))
    c = base_ms * speed[:, 10:] * rng.lognormal(0, noise, (runs, 10))
    block = np.log(f.mean(axis=1) / c.mean(axis=1))

    speed = np.exp(drift(200))  # the paired step: 100 rounds of two requests, the first alternating
    times = base_ms * speed * rng.lognormal(0, noise, (runs, 200))
    first_is_function = (np.arange(100) % 2 == 0)
    fn = np.where(first_is_function, times[:, 0::2], times[:, 1::2]) * true_ratio
    ct = np.where(first_is_function, times[:, 1::2], times[:, 0::2])
    pairs = np.log([median_ci(fn[k] / ct[k]).estimate for k in range(runs)])  # the headline's statistic

    sd_block, sd_paired = float(block.std(ddof=1)), float(pairs.std(ddof=1))
    within_block = float(np.mean(np.abs(np.exp(block[0::2] - block[1::2]) - 1) <= 0.05))
    within_paired = float(np.mean(np.abs(np.exp(pairs[0::2] - pairs[1::2]) - 1) <= 0.05))
    with capsys.disabled():
        print(f"\nrun-to-run sd of the log ratio: block probe {100 * sd_block:.1f} %, paired step "
              f"{100 * sd_paired:.1f} %; back-to-back pairs within 5 %: block {100 * within_block:.0f} %, paired "
              f"{100 * within_paired:.0f} %")
    assert sd_paired < sd_block / 4 and sd_paired < 0.03 and within_paired > 0.9 > within_block * 2
    # neither is biased much: the mean estimate sits near the true ratio
    assert abs(float(np.exp(pairs.mean())) - true_ratio) < 0.02 * true_ratio
