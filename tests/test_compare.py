"""`python -m analysis compare RUN_A RUN_B` on synthetic results folders (analysis/synthetic.py).

What a user relies on, each recomputed here from the CSV files with numpy/scipy, never read back from the code:
- a run against itself is "same" everywhere (exit 0); a copy whose function takes 20 % longer is "slower" there
  and only there (exit 1), with the t-interval on log repetition means and Holm's correction recomputed;
- the per-cell intervals hold their coverage over many seeded A/A pairs with repetition drift and random slow-mode
  counts, where intervals over requests do not;
- a function that fails a quarter of its c=20 requests exits 1 ("more errors", Fisher's test on counts divided by
  the repetitions' over-dispersion), a run with a cell removed, an incomplete run and a cell with fewer than 3
  repetitions a side not flagged busy exit 2, each with the reason printed, on synthetic runs and on the committed
  run (tests/fixtures/results/complete); busy repetitions are left out while 3 quiet ones remain a side;
- every verdict branch at its boundary (threshold, alpha, repetitions, served requests, offered load, capacity,
  busy flag, invalid open-loop run, missing cell);
- --adjust-for-machine divides B's times by the machine ratio but not the fixed 1 s of a SYN retry;
- the concurrency table's throughput counts served requests only.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis import compare as cmp
from analysis import tables
from analysis.__main__ import main
from analysis.bench import schema
from analysis.load import load_results
from analysis.summarize import per_run
from analysis.synthetic import Fault, Plan, write_results


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def served_by_repetition(folder: Path) -> dict[tuple[str, int], list[np.ndarray]]:
    out: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows(folder / "requests.csv"):
        if r["experiment"] == "concurrency" and r["served"] == "1":
            out[(r["platform"], int(r["concurrency"]))][r["run_key"]].append(float(r["total_ms"]))
    return {k: [np.array(v[key]) for key in sorted(v)] for k, v in out.items()}


def log_t_interval(a: list[np.ndarray], b: list[np.ndarray], level: float = 0.95) -> tuple[float, float, float]:
    """Ratio of geometric means of repetition means with its Welch t-interval, written out here."""
    la, lb = np.log([x.mean() for x in a]), np.log([x.mean() for x in b])
    d = lb.mean() - la.mean()
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    dof = (va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))
    half = st.t.ppf(0.5 + level / 2, dof) * math.sqrt(va + vb)
    return math.exp(d), math.exp(d - half), math.exp(d + half)


def p_slower_than(a: list[np.ndarray], b: list[np.ndarray], ratio: float) -> float:
    """One-sided Welch test of "B / A > ratio" on log repetition means, written out here."""
    la, lb = np.log([x.mean() for x in a]), np.log([x.mean() for x in b])
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    dof = (va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))
    return float(1 - st.t.cdf((lb.mean() - la.mean() - math.log(ratio)) / math.sqrt(va + vb), dof))


def holm_adjusted(p: list[float]) -> list[float]:
    """Holm's adjusted p-values from the definition: p_(i) -> max over j <= i of (m - j + 1) p_(j), capped at 1."""
    m = len(p)
    ranked = sorted(p)
    out = []
    for value in p:
        i = ranked.index(value)
        out.append(min(1.0, max((m - j) * ranked[j] for j in range(i + 1))))
    return out


def rewrite(folder: Path, name: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    table = pd.read_csv(folder / name)
    table = edit(table)
    table.to_csv(folder / name, index=False)


def scaled_copy(src: Path, dst: Path, factor: float, platform: str | None = None) -> Path:
    """A copy of the run whose concurrency requests (of one platform, or all) take `factor` times as long."""
    shutil.copytree(src, dst)
    for name, cols in (("requests.csv", ("total_ms",)), ("runs.csv", ("mean_ms", "min_ms", "max_ms"))):
        table = rows(dst / name)
        for r in table:
            if r["experiment"] == "concurrency" and (platform is None or r["platform"] == platform):
                for col in cols:
                    if r[col]:
                        r[col] = repr(float(r[col]) * factor)
        with (dst / name).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return dst


def compare(tmp_path: Path, a: Path, b: Path, *extra: str) -> tuple[int, list[dict[str, str]], Path]:
    out = tmp_path / f"cmp-{a.name}-{b.name}-{len(extra)}"
    code = main(["compare", str(a), str(b), "--out", str(out), *extra])
    table = rows(out / "tables" / "compare.csv") if (out / "tables" / "compare.csv").exists() else []
    return code, table, out


def cell(table: list[dict[str, str]], platform: str, level: float, load: str = "c") -> dict[str, str]:
    return next(r for r in table if r["platform"] == platform and r["load"] == load and float(r["level"]) == level)


@pytest.fixture(scope="module")
def run_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 5 x 140 requests: 700 served per cell, enough for a p99
    return write_results(tmp_path_factory.mktemp("a") / "a", Plan(concurrency=[1, 20], requests_per_run=140, seed=5))


# ------------------------------------------------------------------------------------------ judged verdicts
def test_a_run_compared_with_itself_is_same_everywhere(run_a: Path, tmp_path: Path) -> None:
    code, table, out = compare(tmp_path, run_a, run_a)
    assert code == 0
    assert len(table) == 4 and {r["verdict"] for r in table} == {"same"}
    for r in table:
        assert float(r["mean_ratio"]) == 1 and float(r["median_diff_ms"]) == 0 and float(r["p99_diff_ms"]) == 0
        assert float(r["mean_ratio_ci_low"]) < 1 < float(r["mean_ratio_ci_high"])
        assert r["errors_verdict"] == "same"
    assert (out / "compare.md").exists() and (out / "figures" / "compare.png").stat().st_size > 1000
    html = (out / "compare.html").read_text()
    assert "data:image/png;base64," in html and "Holm" in html


def test_a_slower_function_is_slower_with_exit_1(run_a: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    slow = scaled_copy(run_a, tmp_path / "b", 1.20, platform="function")
    code, table, _ = compare(tmp_path, run_a, slow)
    assert code == 1
    a_reps, b_reps = served_by_repetition(run_a), served_by_repetition(slow)
    keys = sorted(a_reps)
    p_slower = [p_slower_than(a_reps[k], b_reps[k], 1.05) for k in keys]
    # the family: the four latency tests (no cell has a failed request, so no error test can reject)
    adjusted = dict(zip(keys, holm_adjusted(p_slower), strict=True))
    for key in keys:
        r = cell(table, key[0], key[1])
        ratio, lo, hi = log_t_interval(a_reps[key], b_reps[key])
        assert int(r["reps_a"]) == int(r["reps_b"]) == 5 and r["interval"] == "t over log repetition means"
        assert np.isclose(float(r["mean_ratio"]), ratio) and np.isclose(float(r["mean_ratio_ci_low"]), lo)
        assert np.isclose(float(r["mean_ratio_ci_high"]), hi)
        assert np.isclose(float(r["mean_diff_pct"]), 100 * (ratio - 1))
        assert np.isclose(float(r["p_b_slower_holm"]), adjusted[key])
        a, b = np.concatenate(a_reps[key]), np.concatenate(b_reps[key])
        assert np.isclose(float(r["median_diff_ms"]), np.median(b) - np.median(a))
        assert np.isclose(float(r["p99_diff_ms"]), np.percentile(b, 99) - np.percentile(a, 99))
        if key[0] == "function":
            assert np.isclose(ratio, 1.2)  # every repetition's mean scaled by 1.2
            assert r["verdict"] == "slower" and float(r["mean_diff_pct_ci_low"]) > 5 and adjusted[key] < 0.05
        else:
            assert r["verdict"] == "same" and ratio == 1
    printed = capsys.readouterr().out
    assert "verdict: 2 of 4 cell(s) worse" in printed and "function c=1 (slower), function c=20 (slower)" in printed
    assert "Holm's correction over 4 one-sided test(s)" in printed


def test_a_faster_run_is_faster_with_exit_0(run_a: Path, tmp_path: Path) -> None:
    fast = scaled_copy(run_a, tmp_path / "fast", 0.8)
    code, table, _ = compare(tmp_path, run_a, fast)
    assert code == 0 and {r["verdict"] for r in table} == {"faster"}


def test_the_threshold_decides_what_counts(run_a: Path, tmp_path: Path) -> None:
    """4 % longer: the interval lies above +1 % but not above +5 %."""
    b = scaled_copy(run_a, tmp_path / "b4", 1.04, platform="container")
    code, table, _ = compare(tmp_path, run_a, b)
    assert code == 0 and {r["verdict"] for r in table} == {"same"}
    code, table, _ = compare(tmp_path, run_a, b, "--threshold", "1")
    assert code == 1
    assert {(r["platform"], r["level"]) for r in table if r["verdict"] == "slower"} == {("container", "1.0"),
                                                                                        ("container", "20.0")}


# ------------------------------------------------------------------------------------------ coverage, A/A
def drifting_plan(seed: int, **kw: object) -> Plan:
    """A machine whose repetitions drift by a shared lognormal factor (sigma 6 %) and whose slow-mode count is
    random per run."""
    return Plan(seed=seed, rep_jitter=0.06, slow_share_jitter=0.5, **{"concurrency": [1, 20],
                                                                       "requests_per_run": 100, **kw})


def test_intervals_hold_their_coverage_on_seeded_aa_pairs(tmp_path: Path) -> None:
    """40 A/A pairs of one system with repetition drift and random slow-mode counts: the 95 % intervals of B / A
    hold 1 (the true ratio) in 90-99 % of 160 cells, and no pair fails. The same pairs' intervals over requests
    (a t-interval over the pooled requests, recomputed here) hold it far less often: the test can tell."""
    hits, request_hits, exits = [], [], []
    for i in range(40):
        a = load_results(write_results(tmp_path / f"a{i}", drifting_plan(1000 + 2 * i)))
        b = load_results(write_results(tmp_path / f"b{i}", drifting_plan(1001 + 2 * i)))
        c = cmp.compare(a, b, cmp.Settings())
        exits.append(c.exit_status)
        reps_a, reps_b = served_by_repetition(a.folder), served_by_repetition(b.folder)
        for key in reps_a:
            r = c.table[(c.table["platform"] == key[0]) & (c.table["level"] == key[1])].iloc[0]
            _, lo, hi = log_t_interval(reps_a[key], reps_b[key])
            assert np.isclose(r["mean_ratio_ci_low"], lo) and np.isclose(r["mean_ratio_ci_high"], hi)
            hits.append(lo <= 1 <= hi)
            x, y = np.log(np.concatenate(reps_a[key])), np.log(np.concatenate(reps_b[key]))
            d, se = y.mean() - x.mean(), math.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
            request_hits.append(abs(d) <= 1.96 * se)
        shutil.rmtree(a.folder)
        shutil.rmtree(b.folder)
    coverage = float(np.mean(hits))
    assert 0.90 <= coverage <= 0.99, coverage
    assert float(np.mean(request_hits)) < 0.80  # over requests: the repetitions' drift is missing
    assert sum(e != 0 for e in exits) <= 2  # 5 % of 40


# ------------------------------------------------------------------------------------------ errors
def test_a_function_failing_a_quarter_of_its_c20_requests_exits_1(run_a: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """35 of 140 requests of every c=20 repetition fail (connection reset): compare exits 1 with the reason, even
    though the latency of what was served is no worse."""
    plan = Plan(concurrency=[1, 20], requests_per_run=140, seed=5,
                faults={("function", 20, rep): Fault(reset=35) for rep in range(1, 6)})
    b = write_results(tmp_path / "failing", plan, run_id="20261205T120000Z")
    code, table, _ = compare(tmp_path, run_a, b)
    assert code == 1
    runs = pd.read_csv(b / "runs.csv")
    f20 = runs[(runs["experiment"] == "concurrency") & (runs["platform"] == "function") & (runs["concurrency"] == 20)]
    share_b = 100 * f20["errors"].sum() / (f20["served"] + f20["errors"]).sum()
    assert share_b == 25.0
    r = cell(table, "function", 20)
    assert r["errors_verdict"] == "more errors" and np.isclose(float(r["error_pct_b"]), share_b)
    assert float(r["error_pct_a"]) == 0
    # A has no failure: of 175 failures among 1400 attempts, B's 700 hold every one (Fisher: hypergeometric)
    assert np.isclose(float(r["p_more_errors"]), hypergeometric_at_least(175, 700, 700, 175))
    assert all(x["errors_verdict"] == "same" for x in table if x is not r)
    assert "function c=20 (more errors)" in capsys.readouterr().out


def hypergeometric_at_least(k: int, na: int, nb: int, total: int) -> float:
    """P(B holds at least k of the `total` failures among na + nb attempts), from binomial coefficients."""
    return sum(math.comb(nb, j) * math.comb(na, total - j) for j in range(k, total + 1)) / math.comb(na + nb, total)


def test_the_error_test_counts_over_dispersion(tmp_path: Path) -> None:
    """Failures that cluster in one repetition are weaker evidence than the same number spread evenly: Fisher's
    test (recomputed here) on the counts divided by the repetitions' dispersion, whichever run they cluster in."""
    even = cmp.Side(reps=[np.ones(100)] * 5, attempts=[100] * 5, errors=[4] * 5)
    clustered = cmp.Side(reps=[np.ones(100)] * 5, attempts=[100] * 5, errors=[0, 0, 0, 0, 20])
    none = cmp.Side(reps=[np.ones(100)] * 5, attempts=[100] * 5, errors=[0] * 5)
    spread = cmp.error_test(none, even)
    # no dispersion: B's 500 attempts hold all 20 of the 1000 attempts' failures
    assert spread["error_dispersion"] == 1
    assert np.isclose(spread["p_more_errors"], hypergeometric_at_least(20, 500, 500, 20))
    assert spread["p_more_errors"] < 1e-6
    lumped = cmp.error_test(none, clustered)
    # Pearson chi-square of B's repetitions around its 4 % share: 4 x 4^2/3.84 + 16^2/3.84 over 4 df
    phi = (4 * 16 / 3.84 + 256 / 3.84) / 4
    assert np.isclose(lumped["error_dispersion"], phi)
    # 500 / 20.8 = 24 attempts a side, 20 / 20.8 = 0.96 -> 1 failure: it is B's with probability 24 / 48
    assert np.isclose(lumped["p_more_errors"], 0.5)
    # A's repetitions count as much as B's: the clustering of a run with fewer failures weakens "fewer" alike
    mirrored = cmp.error_test(clustered, none)
    assert np.isclose(mirrored["error_dispersion"], phi) and np.isclose(mirrored["p_fewer_errors"], 0.5)
    # both runs clustered: the chi-square terms of both over 8 df, the same phi
    assert np.isclose(cmp.error_test(clustered, clustered)["error_dispersion"], phi)
    # moderately clustered, B's repetitions 6, 2, 4, 8, 0 of 100: chi-square (4 + 4 + 0 + 16 + 16) / 3.84 on 4 df;
    # 500 / phi attempts a side, 20 / phi failures, all B's; phi estimated on 4 df: the deviate against t(4)
    moderate = cmp.error_test(none, cmp.Side(attempts=[100] * 5, errors=[6, 2, 4, 8, 0]))
    phi = 40 / 3.84 / 4
    assert np.isclose(moderate["error_dispersion"], phi) and moderate["error_dispersion_df"] == 4
    n_eff, k_eff = round(500 / phi), round(20 / phi)
    assert (n_eff, k_eff) == (192, 8)
    fisher = hypergeometric_at_least(k_eff, n_eff, n_eff, k_eff)
    assert np.isclose(moderate["p_more_errors"], st.t.sf(st.norm.isf(fisher), 4))
    assert moderate["p_more_errors"] > 5 * fisher  # what taking phi as known would have claimed
    # 0 failures of 300 against 3 of 300: all three in B
    few = cmp.error_test(cmp.Side(attempts=[100] * 3, errors=[0] * 3), cmp.Side(attempts=[100] * 3, errors=[1] * 3))
    assert few["error_dispersion"] == 1
    assert np.isclose(few["p_more_errors"], math.comb(300, 3) / math.comb(600, 3))


# ------------------------------------------------------------------------------------------ exit status 2
def test_a_run_with_a_cell_removed_exits_2(run_a: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = shutil.copytree(run_a, tmp_path / "cut")
    gone = ("function", 20)

    def drop(t: pd.DataFrame) -> pd.DataFrame:
        return t[~((t["experiment"] == "concurrency") & (t["platform"] == gone[0]) & (t["concurrency"] == gone[1]))]

    rewrite(b, "runs.csv", drop)
    rewrite(b, "requests.csv", drop)
    code, table, _ = compare(tmp_path, run_a, b)
    assert code == 2
    r = cell(table, "function", 20)
    assert r["verdict"] == "not comparable" and r["reason"] == "only run A has this cell"
    printed = capsys.readouterr().out
    assert "cannot be trusted: run B (20261204T120000Z) is incomplete: 5 planned concurrency run(s) missing" in printed
    assert "cannot be trusted: function c=20: only run A has this cell" in printed
    assert {x["verdict"] for x in table if x is not r} == {"same"}


def test_an_incomplete_run_exits_2(run_a: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = write_results(tmp_path / "stopped", Plan(concurrency=[1, 20], requests_per_run=140, seed=5, stop_after=20))
    code, _, _ = compare(tmp_path, run_a, b)
    assert code == 2
    assert "is incomplete: manifest.json status is 'incomplete'" in capsys.readouterr().out


@pytest.mark.parametrize("busy", [0, 1, 2, 3])
def test_busy_repetitions_are_left_out_while_three_quiet_ones_remain(run_a: Path, tmp_path: Path, busy: int,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """runs.csv busy = 1 on the first `busy` of B's 5 container c=1 repetitions (others' CPU 37 %), whose requests
    are also made 1.5 times slower. With 3 or more quiet repetitions left, the cell is judged on those alone (its
    B mean is the geometric mean of the quiet repetitions' mean times, recomputed here from requests.csv), a note
    names what was left out and the exit status is 0; with 2 left, the cell is 'busy machine' and the status 2, the
    repetitions named; busy = 0 everywhere changes nothing."""
    b = shutil.copytree(run_a, tmp_path / f"busy{busy}")
    flagged = [f"concurrency-container-c1-r{n}" for n in range(1, busy + 1)]

    def flag(t: pd.DataFrame) -> pd.DataFrame:
        t["busy"], t["others_cpu_pct"], t["steal_pct"] = 0, 2.0, 0.0
        t.loc[t["run_key"].isin(flagged), ["busy", "others_cpu_pct"]] = [1, 37.0]
        return t

    def slow(t: pd.DataFrame) -> pd.DataFrame:
        t.loc[t["run_key"].isin(flagged), "total_ms"] *= 1.5
        return t

    rewrite(b, "runs.csv", flag)
    rewrite(b, "requests.csv", slow)
    code, table, _ = compare(tmp_path, run_a, b)
    printed = capsys.readouterr().out
    others = {r["verdict"] for r in table if (r["platform"], r["level"]) != ("container", "1.0")}
    assert others == {"same"}
    r = cell(table, "container", 1)
    if busy == 3:
        assert code == 2 and r["verdict"] == "busy machine"
        assert ("cannot be trusted: container c=1: ran on a busy machine: run B repetition(s) r1 (others' CPU 37 %, "
                "steal 0 %), r2" in printed)
        assert "2 repetition(s) on a side without them, 3 needed" in printed
        return
    assert code == 0 and r["verdict"] == "same" and int(r["reps_b"]) == 5 - busy
    req = pd.read_csv(b / "requests.csv")
    quiet = req[(req["experiment"] == "concurrency") & (req["served"] == 1) & (req["platform"] == "container")
                & (req["concurrency"] == 1) & ~req["run_key"].isin(flagged)]
    means = quiet.groupby("run_key")["total_ms"].mean()
    assert len(means) == 5 - busy
    assert float(r["mean_b_ms"]) == pytest.approx(math.exp(np.log(means).mean()), rel=1e-9)
    if busy:
        assert ("repetitions that ran on a busy machine left out, each cell judged on the others (3 or more a "
                "side): container c=1 (run B repetition(s) r1 (others' CPU 37 %" in printed)
    else:
        assert "left out" not in printed


@pytest.mark.parametrize(("repetitions", "verdict", "status"), [(2, "one run", 2), (3, "same", 0)])
def test_fewer_than_three_repetitions_is_one_run(tmp_path: Path, repetitions: int, verdict: str,
                                                 status: int, capsys: pytest.CaptureFixture[str]) -> None:
    """2 repetitions a side: shown, not judged, and with no cell judged the exit status is 2; 3 are judged."""
    plan = {"concurrency": [1], "requests_per_run": 60, "repetitions": repetitions}
    a = write_results(tmp_path / "r-a", Plan(seed=1, **plan))
    b = write_results(tmp_path / "r-b", Plan(seed=1, **plan))
    code, table, _ = compare(tmp_path, a, b)
    assert code == status and {r["verdict"] for r in table} == {verdict}
    if repetitions < 3:
        assert all(r["interval"] == "t over log batch means (within one run)" for r in table)
        assert "cannot be trusted: no cell could be judged" in capsys.readouterr().out


@pytest.mark.parametrize(("served", "verdict"), [(9, "not comparable"), (10, "same")])
def test_too_few_served_requests_is_not_comparable(run_a: Path, tmp_path: Path, served: int, verdict: str) -> None:
    """B's function c=1 serves only `served` of 140 requests in every repetition: below 10 a repetition's mean
    does not count and the cell is not comparable (exit 2); at 10 its latency is judged. Its failures are judged
    either way, and are far more (exit 1 where nothing else is wrong)."""
    plan = Plan(concurrency=[1, 20], requests_per_run=140, seed=5,
                faults={("function", 1, rep): Fault(reset=140 - served) for rep in range(1, 6)})
    b = write_results(tmp_path / f"served{served}", plan)
    code, table, _ = compare(tmp_path, run_a, b)
    r = cell(table, "function", 1)
    assert r["verdict"] == verdict and r["errors_verdict"] == "more errors"
    assert code == (2 if served < 10 else 1)


# ------------------------------------------------------------------------------------------ the committed run
COMPLETE = Path(__file__).resolve().parent / "fixtures" / "results" / "complete"  # 3 x 20 requests per cell


def test_the_committed_run_failing_a_quarter_of_its_function_c20_requests_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """B is the committed run with its function's c=20 failing 5 of the 20 requests of every repetition (its four
    failures topped up with connection resets, taken from its slowest served requests, so what B serves is faster):
    exit 1, the cell and 'more errors' printed. Fisher's test and Holm's correction over the 7 counted tests (6
    latency, 1 errors: only that cell has failures), recomputed here from the CSV files."""
    b = shutil.copytree(COMPLETE, tmp_path / "quarter")
    runs, reqs = pd.read_csv(b / "runs.csv"), pd.read_csv(b / "requests.csv")
    for rep in (1, 2, 3):
        key = f"concurrency-function-c20-r{rep}"
        i = runs.index[runs["run_key"] == key][0]
        extra = 5 - int(runs.at[i, "errors"])
        for col in ("errors", "reset", "failed", "failed_receive"):
            runs.at[i, col] = (0 if pd.isna(runs.at[i, col]) else int(runs.at[i, col])) + extra
        runs.at[i, "served"] = int(runs.at[i, "served"]) - extra
        slowest = reqs[(reqs["run_key"] == key) & (reqs["served"] == 1)].nlargest(extra, "total_ms").index
        reqs.loc[slowest, "served"] = 0
    runs.to_csv(b / "runs.csv", index=False)
    reqs.to_csv(b / "requests.csv", index=False)
    code = main(["compare", str(COMPLETE), str(b), "--out", str(tmp_path / "cmp")])
    printed = capsys.readouterr().out
    assert code == 1
    assert "verdict: 1 of 6 cell(s) worse" in printed and "function c=20 (more errors)" in printed
    table = rows(tmp_path / "cmp" / "tables" / "compare.csv")
    r = cell(table, "function", 20)
    a_runs = [x for x in rows(COMPLETE / "runs.csv") if x["run_key"].startswith("concurrency-function-c20")]
    failed_a = sum(int(x["errors"]) for x in a_runs)
    assert failed_a == 4 and float(r["error_pct_a"]) == pytest.approx(100 * 4 / 60)
    assert float(r["error_pct_b"]) == pytest.approx(25.0)
    p = hypergeometric_at_least(15, 60, 60, 15 + failed_a)
    assert float(r["p_more_errors"]) == pytest.approx(p) and 7 * p < 0.05
    assert float(r["p_more_errors_holm"]) == pytest.approx(7 * p)
    assert r["errors_verdict"] == "more errors" and r["verdict"] != "slower"
    assert {x["errors_verdict"] for x in table if x is not r} == {"same"}


def test_the_committed_run_with_a_cell_removed_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """B is the committed run without its function's c=5 runs: exit 2, the missing cell and the incomplete run
    named; every other cell is the same."""
    b = shutil.copytree(COMPLETE, tmp_path / "cut")

    def drop(t: pd.DataFrame) -> pd.DataFrame:
        return t[~((t["experiment"] == "concurrency") & (t["platform"] == "function") & (t["concurrency"] == 5))]

    rewrite(b, "runs.csv", drop)
    rewrite(b, "requests.csv", drop)
    code = main(["compare", str(COMPLETE), str(b), "--out", str(tmp_path / "cmp")])
    printed = capsys.readouterr().out
    assert code == 2
    assert "cannot be trusted: function c=5: only run A has this cell" in printed
    assert "is incomplete: 3 planned concurrency run(s) missing" in printed
    table = rows(tmp_path / "cmp" / "tables" / "compare.csv")
    assert cell(table, "function", 5)["verdict"] == "not comparable"
    assert {x["verdict"] for x in table if (x["platform"], x["level"]) != ("function", "5.0")} == {"same"}


# ------------------------------------------------------------------------------------------ boundaries
def side(reps: int = 5, served: int = 50, ms: float = 100.0, **kw: object) -> cmp.Side:
    rng = np.random.default_rng(reps * 1000 + served)
    return cmp.Side(reps=[ms * rng.lognormal(0, 0.05, served) for _ in range(reps)], attempts=[served] * reps,
                    errors=[0] * reps, **kw)


@pytest.mark.parametrize(("key", "a", "b", "verdict", "counts"), [
    (("p", "c", 1.0), side(), side(), "judge", False),
    (("p", "c", 1.0), side(), side(reps=2), "one run", False),
    (("p", "c", 1.0), side(reps=3), side(reps=3), "judge", False),
    (("p", "c", 1.0), side(), side(busy={0: "r1 (others' CPU 40 %, steal 0 %)"}), "judge", False),
    (("p", "c", 1.0), side(), side(reps=4, busy={0: "r1 (others' CPU 40 %, steal 0 %)"}), "judge", False),
    (("p", "c", 1.0), side(), side(reps=3, busy={0: "r1 (others' CPU 40 %, steal 0 %)"}), "busy machine",
     True),
    (("p", "c", 1.0), side(reps=4, busy={0: "r1 (x)", 2: "r3 (x)"}), side(), "busy machine", True),
    (("p", "c", 1.0), side(), side(served=9), "not comparable", True),
    (("p", "c", 1.0), side(), side(served=10), "judge", False),
    (("p", "rate %", 90.0), side(offered_rps=100.0), side(offered_rps=105.0), "judge", False),
    (("p", "rate %", 90.0), side(offered_rps=100.0), side(offered_rps=105.1), "different load", False),
    (("p", "rate %", 99.0), side(offered_rps=100.0), side(offered_rps=100.0), "judge", False),
    (("p", "rate %", 100.0), side(offered_rps=100.0), side(offered_rps=100.0), "saturated", False),
    (("p", "rate %", 90.0), side(reps=1), side(reps=1), "one run", False),
    (("p", "rate %", 90.0), side(reps=1, invalid=["k: lag"]), side(reps=1), "invalid run", False),
    (("p", "rate %", 90.0), side(reps=2, invalid=["k: lag"]), side(reps=3), "invalid run", True),
    (("p", "rate %", 90.0), side(reps=3, invalid=["k: lag"]), side(reps=3), "judge", False),
    (("p", "rate rps", 150.0), side(offered_rps=150.0), side(offered_rps=150.0), "judge", False),
    (("p", "c", 1.0), side(), side(ms=0.0), "not comparable", True),
])
def test_every_held_back_branch_at_its_boundary(key: tuple, a: cmp.Side, b: cmp.Side, verdict: str,
                                                counts: bool) -> None:
    """compare_cell's verdict before the family correction, and whether it makes the exit status 2."""
    row, problem = cmp.compare_cell(key, a, b, cmp.Settings(), None)
    assert row["verdict"] == verdict
    assert (problem is not None) == counts


def failing(reps: int = 5, **kw: object) -> cmp.Side:
    x = side(reps=reps, **kw)
    x.errors = [2] * reps
    return x


@pytest.mark.parametrize(("a", "b", "errors_verdict"), [
    (side(), side(), "same"),  # no failure on either side: no test could reject, kept out of the family
    (side(), failing(), "judge"),
    (side(), failing(reps=2), "not judged"),  # one run
    (side(), failing(reps=3, busy={0: "r1 (others' CPU 40 %, steal 0 %)"}), "not judged"),
    (side(), failing(busy={0: "r1 (others' CPU 40 %, steal 0 %)"}), "judge"),  # judged on the other 4
    (side(), failing(served=9), "judge"),  # latency not comparable, failures still judged
])
def test_which_cells_have_their_errors_judged(a: cmp.Side, b: cmp.Side, errors_verdict: str) -> None:
    row, _ = cmp.compare_cell(("p", "c", 1.0), a, b, cmp.Settings(), None)
    assert row["errors_verdict"] == errors_verdict


def test_a_missing_cell_counts_unless_common_cells() -> None:
    row, problem = cmp.compare_cell(("p", "c", 5.0), side(), None, cmp.Settings(), None)
    assert row["verdict"] == "not comparable" and problem == "only run A has this cell"
    row, problem = cmp.compare_cell(("p", "c", 5.0), None, side(), cmp.Settings(common_cells=True), None)
    assert row["verdict"] == "not comparable" and row["reason"] == "only run B has this cell" and problem is None


def judged(**cells: dict[str, float]) -> pd.DataFrame:
    base = {"verdict": "judge", "errors_verdict": "judge", "p_b_slower": 1.0, "p_b_faster": 1.0,
            "p_more_errors": 1.0, "p_fewer_errors": 1.0, "mean_diff_pct_ci_low": -1.0, "mean_diff_pct_ci_high": 1.0,
            "error_diff_pp": 0.0}
    return pd.DataFrame([{**base, "name": name, **values} for name, values in cells.items()]).set_index("name")


def test_every_judged_branch_at_its_boundary() -> None:
    """One cell per test family (so Holm leaves its p alone): strict inequalities at alpha and the thresholds."""
    s = cmp.Settings(threshold_pct=5.0, alpha=0.05, error_threshold_pp=1.0)
    cases = {
        "slower": ({"p_b_slower": 0.0499, "mean_diff_pct_ci_low": 5.01, "mean_diff_pct_ci_high": 9}, "slower"),
        "at alpha": ({"p_b_slower": 0.05, "mean_diff_pct_ci_low": 5.01, "mean_diff_pct_ci_high": 9},
                     "slower (unconfirmed)"),
        "at threshold": ({"p_b_slower": 0.01, "mean_diff_pct_ci_low": 5.0, "mean_diff_pct_ci_high": 9}, "same"),
        "faster": ({"p_b_faster": 0.0499, "mean_diff_pct_ci_low": -9, "mean_diff_pct_ci_high": -5.01}, "faster"),
        "faster at alpha": ({"p_b_faster": 0.05, "mean_diff_pct_ci_low": -9, "mean_diff_pct_ci_high": -5.01},
                            "faster (unconfirmed)"),
        "faster at threshold": ({"p_b_faster": 0.01, "mean_diff_pct_ci_low": -9, "mean_diff_pct_ci_high": -5.0},
                                "same"),
    }
    for name, (values, expected) in cases.items():
        table = judged(x={**values, "errors_verdict": "same"})
        cmp._judge(table, s)
        assert table.loc["x", "verdict"] == expected, name
    errors = {
        "more": ({"p_more_errors": 0.0499, "error_diff_pp": 1.01}, "more errors"),
        "more at alpha": ({"p_more_errors": 0.05, "error_diff_pp": 1.01}, "same"),
        "more at threshold": ({"p_more_errors": 0.001, "error_diff_pp": 1.0}, "same"),
        "fewer": ({"p_fewer_errors": 0.0499, "error_diff_pp": -1.01}, "fewer errors"),
        "fewer at threshold": ({"p_fewer_errors": 0.001, "error_diff_pp": -1.0}, "same"),
    }
    for name, (values, expected) in errors.items():
        table = judged(x={**values, "verdict": "same"})
        cmp._judge(table, s)
        assert table.loc["x", "errors_verdict"] == expected, name


def test_holm_controls_the_family() -> None:
    """Two cells each at p = 0.03: alone either is slower; together Holm doubles the smaller one."""
    ok = {"mean_diff_pct_ci_low": 6.0, "mean_diff_pct_ci_high": 20.0, "errors_verdict": "same"}
    table = judged(x={"p_b_slower": 0.03, **ok}, y={"p_b_slower": 0.03, **ok})
    family = cmp._judge(table, cmp.Settings())
    assert family == {"latency": 2, "errors": 0}
    assert list(table["p_b_slower_holm"]) == [0.06, 0.06] and set(table["verdict"]) == {"slower (unconfirmed)"}
    p = [0.01, 0.04, 0.03, 0.005]
    assert np.allclose(cmp.holm(p), holm_adjusted(p)) and np.allclose(cmp.holm(p), [0.03, 0.06, 0.06, 0.02])


# ------------------------------------------------------------------------------------------ machine speed
def with_reference(folder: Path, ms: float, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    rewrite(folder, "runs.csv", lambda t: t.assign(reference_ms=ms * rng.lognormal(0, 0.01, len(t))))
    return folder


def test_a_slower_machine_is_told_from_a_slower_deployment(run_a: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Every cell 12 % slower and the reference workload 12 % slower too: slower as measured, same once B's times
    are divided by the machine-speed ratio (--adjust-for-machine); a real slowdown on top of it still shows."""
    a = with_reference(shutil.copytree(run_a, tmp_path / "ref-a"), 17.0)
    b = with_reference(scaled_copy(run_a, tmp_path / "ref-b", 1.12), 17.0 * 1.12)
    code, table, _ = compare(tmp_path, a, b)
    assert code == 1 and {r["verdict"] for r in table} == {"slower"}
    assert "machine speed: B's reference workload took +12" in capsys.readouterr().out
    code, table, _ = compare(tmp_path, a, b, "--adjust-for-machine")
    assert code == 0 and {r["verdict"] for r in table} == {"same"}
    for r in table:
        assert r["adjusted_for_machine"] == "1" and np.isclose(float(r["machine_ratio"]), 1.12, atol=0.01)
    c = with_reference(scaled_copy(run_a, tmp_path / "ref-c", 1.12 * 1.2, platform="function"), 17.0 * 1.12)
    code, table, _ = compare(tmp_path, a, c, "--adjust-for-machine")
    assert code == 1 and {r["platform"] for r in table if r["verdict"] == "slower"} == {"function"}


def test_the_machine_adjustment_leaves_the_syn_retry_second_alone(tmp_path: Path) -> None:
    """B's machine is 12 % slower: each request's CPU-bound time is 12 % longer, its SYN retry still 1000 ms. A
    quarter of the function's c=20 requests waited out a retry (ab's connect time holds it). Adjusted, B reads as A
    within 0.5 %; dividing the whole time by 1.12 (what the adjustment must not do) reads more than 3 % faster, and
    not adjusting at all reads slower."""
    a = write_results(tmp_path / "syn-a", Plan(concurrency=[20], requests_per_run=140, seed=8))
    reqs = pd.read_csv(a / "requests.csv")
    conc = (reqs["experiment"] == "concurrency").to_numpy()
    f20 = conc & (reqs["platform"] == "function").to_numpy() & (reqs["served"] == 1).to_numpy()
    planted = f20 & (reqs["connect_ms"] < 1000).to_numpy() & (np.random.default_rng(8).random(len(reqs)) < 0.25)
    for col in ("connect_ms", "total_ms"):
        reqs.loc[planted, col] += 1000.0
    reqs.to_csv(a / "requests.csv", index=False)
    retried = (reqs["connect_ms"] >= 1000).to_numpy()  # the generator's own retries and the planted ones
    assert 0.2 < retried[f20].mean() < 0.35
    b = shutil.copytree(a, tmp_path / "syn-b")
    syn = np.where(retried, 1000.0, 0.0)
    reqs["total_ms"] = np.where(conc, (reqs["total_ms"] - syn) * 1.12 + syn, reqs["total_ms"])
    reqs.to_csv(b / "requests.csv", index=False)
    with_reference(a, 17.0)
    with_reference(b, 17.0 * 1.12)
    a_reps, b_reps = served_by_repetition(a)[("function", 20)], served_by_repetition(b)[("function", 20)]
    code, table, _ = compare(tmp_path, a, b, "--adjust-for-machine")
    f20_row, c20_row = cell(table, "function", 20), cell(table, "container", 20)
    assert f20_row["adjusted_for_machine"] == "1" and np.isclose(float(f20_row["machine_ratio"]), 1.12)
    assert abs(float(f20_row["mean_diff_pct"])) < 0.5 and abs(float(c20_row["mean_diff_pct"])) < 0.5
    assert code == 0 and {r["verdict"] for r in table} == {"same"}
    # the wrong adjustment, and none, on the same repetitions, recomputed here: the test can tell them apart
    assert log_t_interval(a_reps, [x / 1.12 for x in b_reps])[0] < 0.97
    assert 1.05 < log_t_interval(a_reps, b_reps)[0] < 1.10  # unadjusted: the retried quarter is not 12 % slower
    code, table, _ = compare(tmp_path, a, b)
    assert code == 1 and cell(table, "container", 20)["verdict"] == "slower"


# ------------------------------------------------------------------------------------------ open loop
def with_rates(run: Path, dst: Path, rng: np.random.Generator, factor: float, offered: float = 100.0,
               runs: int = 3, invalid: int = 0) -> Path:
    """A copy of the run with `runs` open-loop runs of the container at 90 % of capacity; the last `invalid` of
    them with valid = 0 (the generator fell behind)."""
    folder = shutil.copytree(run, dst)
    run_rows, request_frames = [], []
    for k in range(1, runs + 1):
        latency = rng.lognormal(np.log(50), 0.2, 800) * factor * rng.lognormal(0, 0.03)
        key = f"rate-container-90pct-{k}"
        bad = k > runs - invalid
        run_rows.append({"run_key": key, "experiment": "rate", "platform": "container", "capacity_pct": 90,
                         "offered_rps": offered, "scheduled": 800, "dropped": 0, "served": 800, "errors": 0,
                         "valid": 0 if bad else 1, "invalid_reason": "send lag p99 212 ms > 50 ms" if bad else "",
                         "outcome": "ok"})
        request_frames.append(pd.DataFrame({
            "run_key": key, "platform": "container", "seq": np.arange(1, 801), "scheduled_s": np.arange(800) / 100,
            "latency_ms": latency, "status": 200, "outcome": "served", "served": 1}))
    pd.DataFrame(run_rows).reindex(columns=schema.RATE_RUNS.names).to_csv(folder / "rate_runs.csv", index=False)
    pd.concat(request_frames).reindex(columns=schema.RATE_REQUESTS.names).to_csv(folder / "rate_requests.csv",
                                                                                   index=False)
    return folder


def test_open_loop_cells_are_compared_per_offered_rate(run_a: Path, tmp_path: Path) -> None:
    """Three runs per rate on each side: judged. One run: shown, not judged. Another offered rate: 'different
    load'. Open-loop times are never machine-adjusted."""
    rng = np.random.default_rng(0)
    a, b = with_rates(run_a, tmp_path / "rate-a", rng, 1.0), with_rates(run_a, tmp_path / "rate-b", rng, 1.5)
    code, table, _ = compare(tmp_path, a, b)
    rate = [r for r in table if r["load"] == "rate %"]
    assert code == 1 and len(rate) == 1 and rate[0]["verdict"] == "slower" and rate[0]["level"] == "90.0"
    assert rate[0]["interval"] == "t over log repetition means" and rate[0]["reps_a"] == "3"
    assert {r["verdict"] for r in table if r["load"] == "c"} == {"same"}
    a1 = with_rates(run_a, tmp_path / "rate-a1", rng, 1.0, runs=1)
    b1 = with_rates(run_a, tmp_path / "rate-b1", rng, 1.5, runs=1)
    code, table, out = compare(tmp_path, a1, b1)
    rate = [r for r in table if r["load"] == "rate %"]
    assert code == 0 and rate[0]["verdict"] == "one run" and rate[0]["interval"].startswith("t over log batch")
    assert float(rate[0]["mean_diff_pct"]) > 40 and rate[0]["adjusted_for_machine"] == "0"
    assert "run-to-run noise" in (out / "compare.md").read_text()
    c = with_rates(run_a, tmp_path / "rate-c", rng, 1.5, offered=120.0)
    code, table, _ = compare(tmp_path, a, c)
    assert code == 0 and [r["verdict"] for r in table if r["load"] == "rate %"] == ["different load"]


def test_an_invalid_open_loop_run_is_named_not_a_different_matrix(run_a: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """One run per rate, B's invalid: 'invalid run' with its reason, not a refusal; the exit status is the closed
    loop's. Three runs per rate, one of B's invalid: the cell loses what it needed to be judged: exit 2."""
    rng = np.random.default_rng(1)
    a = with_rates(run_a, tmp_path / "inv-a", rng, 1.0, runs=1)
    b = with_rates(run_a, tmp_path / "inv-b", rng, 1.0, runs=1, invalid=1)
    code, table, _ = compare(tmp_path, a, b)
    r = cell(table, "container", 90.0, "rate %")
    assert code == 0 and r["verdict"] == "invalid run"
    assert r["reason"] == "rate-container-90pct-1: send lag p99 212 ms > 50 ms"
    printed = capsys.readouterr()
    assert "different matrix" not in printed.out + printed.err and "invalid run" not in printed.err
    a3 = with_rates(run_a, tmp_path / "inv-a3", rng, 1.0)
    b3 = with_rates(run_a, tmp_path / "inv-b3", rng, 1.0, invalid=1)
    code, table, _ = compare(tmp_path, a3, b3)
    assert code == 2 and cell(table, "container", 90.0, "rate %")["verdict"] == "invalid run"
    assert "fewer than 3 valid open-loop runs on a side" in capsys.readouterr().out


def with_search(folder: Path, rates: list[float], low: float, high: float,
                shares: tuple[float, float] | None = None) -> Path:
    """Add a capacity search's probes (ordinary rate runs at rates of the run's own choosing, search_probe set)
    and its rate_search.csv row to a run made by with_rates."""
    runs, requests = pd.read_csv(folder / "rate_runs.csv"), pd.read_csv(folder / "rate_requests.csv")
    probe_rows, probe_requests = [], []
    for k, rps in enumerate(rates, start=1):
        key = f"rate-container-{rps:g}rps" + (f"-r{k}" if rates[:k - 1].count(rps) else "")
        probe_rows.append({"run_key": key, "experiment": "rate", "platform": "container", "offered_rps": rps,
                           "scheduled": 400, "dropped": 0, "served": 400, "errors": 0, "valid": 1, "outcome": "ok",
                           "search_probe": k})
        probe_requests.append(pd.DataFrame({"run_key": key, "platform": "container", "seq": np.arange(1, 401),
                                            "scheduled_s": np.arange(400) / rps, "latency_ms": 40.0, "status": 200,
                                            "outcome": "served", "served": 1}))
    pd.concat([runs, pd.DataFrame(probe_rows)]).reindex(columns=schema.RATE_RUNS.names).to_csv(
        folder / "rate_runs.csv", index=False)
    pd.concat([requests, *probe_requests]).reindex(columns=schema.RATE_REQUESTS.names).to_csv(
        folder / "rate_requests.csv", index=False)
    pd.DataFrame([{"run_key": "rate-search-container", "platform": "container", "low_rps": low, "high_rps": high,
                   "converged": 1, "boundary_confirmed": 1, "probes": len(rates),
                   "low_pct": shares[0] if shares else None, "high_pct": shares[1] if shares else None}]).reindex(
        columns=schema.RATE_SEARCH.names).to_csv(folder / "rate_search.csv", index=False)
    return folder


def test_search_probes_are_not_cells_and_the_brackets_are_shown(run_a: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs whose searches probed different rates (as two real searches do) are still the same matrix: the
    probes are left out of the cells, the grid cell is judged as before, and both brackets are printed with the
    distance between their midpoints (A [100, 110] -> 105, B [90, 100] -> 95: -9.5 %)."""
    rng = np.random.default_rng(4)
    a = with_search(with_rates(run_a, tmp_path / "s-a", rng, 1.0), [50.0, 150.0, 100.0, 125.0, 112.5, 100.0],
                    100.0, 110.0)
    b = with_search(with_rates(run_a, tmp_path / "s-b", rng, 1.0), [40.0, 120.0, 80.0, 100.0, 90.0], 90.0, 100.0)
    code, table, out = compare(tmp_path, a, b)
    printed = capsys.readouterr().out
    assert code == 0 and "different matrix" not in printed
    assert [(r["load"], r["level"]) for r in table if r["load"] != "c"] == [("rate %", "90.0")]
    line = next(x for x in printed.splitlines() if "capacity at the objective by search, container" in x)
    assert "A [100, 110] req/s; B [90, 100] req/s (midpoints -9.5 %)" in line and "not judged" in line
    assert "midpoints -9.5 %" in (out / "compare.md").read_text()
    only_a = with_rates(run_a, tmp_path / "s-c", rng, 1.0)
    code, _, _ = compare(tmp_path, a, only_a)
    assert code == 0 and "A [100, 110] req/s, only this run searched" in capsys.readouterr().out


def test_calibrated_searches_show_their_shares_beside_the_rates(run_a: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Calibrated searches (the plan step's) also carry their bracket in % of the throughput measured before each
    probe: both are printed, with the change of their midpoints (A [90, 95] -> 92.5, B [85, 90] -> 87.5: -5.4 %)."""
    rng = np.random.default_rng(5)
    a = with_search(with_rates(run_a, tmp_path / "p-a", rng, 1.0), [90.0, 100.0, 95.0, 90.0], 90.0, 95.0,
                    shares=(90.0, 95.0))
    b = with_search(with_rates(run_a, tmp_path / "p-b", rng, 1.0), [90.0, 85.0, 90.0, 85.0], 85.0, 90.0,
                    shares=(85.0, 90.0))
    code, _, _ = compare(tmp_path, a, b)
    line = next(x for x in capsys.readouterr().out.splitlines()
                if "capacity at the objective by search, container" in x)
    assert code == 0 and "A [90, 95] req/s; B [85, 90] req/s (midpoints -5.4 %)" in line
    assert "of the throughput measured before each probe: A [90, 95] %; B [85, 90] % (midpoints -5.4 %)" in line


def test_both_runs_headline_ratios_are_printed_with_the_change(run_a: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """B's function is 1.1x A's in the paired step and 1.2x under ab: the headline note gives A's own ratios
    (recomputed here from paired.csv and requests.csv) and B's, +10.0 % at c=1 paired and +20.0 % per concurrency."""
    b = scaled_copy(run_a, tmp_path / "headline-b", 1.2, "function")
    rewrite(b, "paired.csv", lambda t: t.assign(response_ms=np.where(t["platform"] == "function",
                                                                      t["response_ms"] * 1.1, t["response_ms"])))
    compare(tmp_path, run_a, b)
    line = next(x for x in capsys.readouterr().out.splitlines() if "headline ratio function / container" in x)
    paired = pd.read_csv(run_a / "paired.csv")
    paired = paired[paired["status"] == 200].pivot(index="round", columns="platform", values="response_ms").dropna()
    median = float(np.median(paired["function"] / paired["container"]))
    assert f"c=1 paired median {median:.2f}x → {1.1 * median:.2f}x (+10.0 %)" in line
    req = pd.read_csv(run_a / "requests.csv")
    req = req[(req["experiment"] == "concurrency") & (req["served"] == 1) & (req["concurrency"] == 20)]
    means = req.groupby(["platform", "repetition"])["total_ms"].mean()
    geo = float(np.exp(np.mean(np.log(means["function"] / means["container"]))))
    assert f"c=20 {geo:.2f}x → {1.2 * geo:.2f}x (+20.0 %)" in line and line.endswith("not judged")


# ------------------------------------------------------------------------------------------ refusals
def _edit_manifest(folder: Path, **changes: object) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    for path, value in changes.items():
        target = m
        *parents, leaf = path.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    (folder / "manifest.json").write_text(json.dumps(m))


def test_a_different_matrix_cannot_be_compared(run_a: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    other = write_results(tmp_path / "other", Plan(concurrency=[1, 5], requests_per_run=140, seed=5))
    code, _, out = compare(tmp_path, run_a, other)
    assert code == 2 and not out.exists()
    assert "different matrix: concurrency A [1, 20], B [1, 5]" in capsys.readouterr().err
    code, table, _ = compare(tmp_path, run_a, other, "--common-cells")  # only c=1 is in both
    assert code == 0 and {r["verdict"] for r in table if r["level"] == "1.0"} == {"same"}
    assert {(r["level"], r["verdict"]) for r in table if r["level"] != "1.0"} == {("5.0", "not comparable"),
                                                                                  ("20.0", "not comparable")}
    printed = capsys.readouterr().out
    assert "different matrix: concurrency A [1, 20], B [1, 5]" in printed and "not compared (--common-cells)" in printed


def test_a_different_payload_cannot_be_compared(run_a: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    b = shutil.copytree(run_a, tmp_path / "payload")
    _edit_manifest(b, config__payload="photo-1024x768.jpg")
    code, _, _ = compare(tmp_path, run_a, b)
    assert code == 2
    assert "different payload: A POSTed photo-500x375.jpg, B photo-1024x768.jpg" in capsys.readouterr().err


def test_a_different_model_cannot_be_compared(run_a: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The model is the sha256 each prediction response carries, as the latency probe kept it."""

    def with_model(name: str, sha: str) -> Path:
        folder = shutil.copytree(run_a, tmp_path / name)
        probe = folder / "raw" / "probe-function"
        probe.mkdir(parents=True)
        (probe / "probe.jsonl").write_text(json.dumps({"seq": 1, "status": 200, "model_sha256": sha}) + "\n")
        return folder

    a, b = with_model("model-a", "37afaa8468df"), with_model("model-b", "0123456789ab")
    code, _, _ = compare(tmp_path, a, b)
    assert code == 2
    assert "different model: A's sha256 begins 37afaa8468df, B's 0123456789ab" in capsys.readouterr().err
    same, _, _ = compare(tmp_path, a, with_model("model-a2", "37afaa8468df"))
    assert same == 0


def test_compare_help_explains_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("RUN_A", "RUN_B", "--threshold", "--error-threshold", "--alpha", "--confidence", "--common-cells",
                 "--adjust-for-machine", "--out", "Exit status", "busy", "incomplete"):
        assert flag in text


# ------------------------------------------------------------------------------------------ throughput
def test_the_concurrency_tables_throughput_counts_served_requests(tmp_path: Path) -> None:
    """A quarter of the function's c=20 attempts fail: its throughput is the served requests per second
    (runs.csv served_per_s), not ab's attempts per second."""
    plan = Plan(concurrency=[20], requests_per_run=80, seed=4,
                faults={("function", 20, rep): Fault(reset=20) for rep in range(1, 6)})
    results = load_results(write_results(tmp_path / "tp", plan))
    conc = tables.concurrency_table(per_run(results), results, tables.Settings(resamples=200))
    runs = pd.read_csv(results.folder / "runs.csv").query("experiment == 'concurrency' and platform == 'function'")
    served = (runs["served"] / runs["time_taken_s"]).to_numpy()
    row = conc[conc["platform"] == "function"].iloc[0]
    assert np.isclose(row["throughput_rps"], served.mean(), rtol=1e-3)
    assert row["throughput_rps"] < 0.8 * runs["requests_per_s"].mean()
