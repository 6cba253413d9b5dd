"""python -m analysis on the committed result folders (tests/fixtures/results/): every number in the output tables
is recomputed here from the fixture CSVs with numpy/scipy, independently of analysis/; every figure is written;
every kind of broken folder is refused with a message that names the file and what is wrong."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis.__main__ import EXIT_BAD_INPUT, EXIT_INCOMPLETE, main
from analysis.load import ResultsError, load_results
from analysis.stats import bootstrap_overhead, mean_ci, median_ci, median_ranks

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "results"
COMPLETE = FIXTURES / "complete"
INCOMPLETE = FIXTURES / "incomplete"
PLATFORMS = ("function", "container")
FIGURES = ("response_vs_concurrency", "latency_cdf", "breakdown", "coldstart", "resources", "cross_platform")
TABLES = ("table1", "table1_overhead", "concurrency", "overhead", "breakdown", "coldstart", "resources", "per_run",
          "cross_platform")


# ---------------------------------------------------------------- independent readers (csv module + numpy only)

def rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def num(x: str) -> float:
    return float(x) if x != "" else float("nan")


def out_table(out: Path, name: str) -> list[dict[str, str]]:
    with (out / "tables" / f"{name}.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def find(table: list[dict[str, str]], **key: object) -> dict[str, str]:
    hits = [r for r in table if all(r[k] == str(v) for k, v in key.items())]
    assert len(hits) == 1, f"expected one row for {key}, got {len(hits)}"
    return hits[0]


def t_ci(x: list[float] | np.ndarray) -> tuple[float, float, float]:
    x = np.asarray(x, dtype=float)
    lo, hi = st.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=st.sem(x))
    return float(x.mean()), float(lo), float(hi)


def close(got: str, want: float, rel: float = 1e-9, abs_: float = 1e-9) -> bool:
    return bool(np.isclose(num(got), want, rtol=rel, atol=abs_, equal_nan=True))


def assert_ci(row: dict[str, str], name: str, want: tuple[float, float, float]) -> None:
    got = (row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"])
    assert all(close(g, w) for g, w in zip(got, want, strict=True)), f"{name}: got {got}, want {want}"


def per_rep(folder: Path) -> dict[tuple[str, int], dict[int, np.ndarray]]:
    """(platform, concurrency) -> repetition -> the run's served total_ms values; warm-up rows and failed attempts
    (served = 0) skipped."""
    out: dict[tuple[str, int], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows(folder, "requests.csv"):
        if r["experiment"] == "concurrency" and r["served"] == "1":
            out[(r["platform"], int(r["concurrency"]))][int(r["repetition"])].append(float(r["total_ms"]))
    return {k: {rep: np.array(v) for rep, v in d.items()} for k, d in out.items()}


def runs_by_cell(folder: Path) -> dict[tuple[str, int], dict[int, dict[str, str]]]:
    out: dict[tuple[str, int], dict[int, dict[str, str]]] = defaultdict(dict)
    for r in rows(folder, "runs.csv"):
        if r["experiment"] == "concurrency":
            out[(r["platform"], int(r["concurrency"]))][int(r["repetition"])] = r
    return out


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def complete_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("complete") / "report"
    assert main([str(COMPLETE), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def incomplete_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("incomplete") / "report"
    assert main([str(INCOMPLETE), "--out", str(out)]) == 0
    return out


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "20261204T120000Z"
    shutil.copytree(COMPLETE, target)
    return target


# ---------------------------------------------------------------- the fixtures are what the tests claim

def test_fixture_has_length_mismatches_and_one_non_2xx() -> None:
    runs = [r for r in rows(COMPLETE, "runs.csv") if r["experiment"] == "concurrency"]
    assert sum(int(r["length_mismatch"]) for r in runs) == 2
    assert sum(int(r["empty_reply"]) for r in runs) == 2
    assert sum(int(r["reset"]) for r in runs) == 1
    assert sum(int(r["non_2xx"]) for r in runs) == 1
    # every failed attempt without a reply has its -g row marked served = 0, and only those
    requests = [r for r in rows(COMPLETE, "requests.csv") if r["experiment"] == "concurrency"]
    assert sum(1 for r in requests if r["served"] == "0") == 3
    means = {p: np.mean([float(r["mean_ms"]) for r in runs if r["platform"] == p]) for p in PLATFORMS}
    assert means["function"] > means["container"]


# ---------------------------------------------------------------- tables against independent computation

def test_concurrency_table(complete_out: Path) -> None:
    table = out_table(complete_out, "concurrency")
    reps, runs = per_rep(COMPLETE), runs_by_cell(COMPLETE)
    assert len(table) == len(reps) == 6
    for (platform, c), by_rep in reps.items():
        row = find(table, platform=platform, concurrency=c)
        order = sorted(by_rep)
        x = [by_rep[r] for r in order]
        assert row["repetitions"] == "3" and row["complete"] == "True"
        assert int(row["requests"]) == sum(len(v) for v in x)
        assert_ci(row, "mean_ms", t_ci([v.mean() for v in x]))
        # p95/p99 pool the cell's timed rows; 3 x 20 requests are fewer than a p95 (133) or a p99 (662) needs
        assert int(row["timed"]) == sum(len(v) for v in x) < 133
        # served: complete 2xx answers, the timed rows less the non-2xx replies among them (each failure once)
        cell = runs[(platform, c)]
        assert int(row["served"]) == sum(len(v) for v in x) - sum(int(cell[r]["non_2xx"]) for r in order)
        assert int(row["served"]) == sum(int(cell[r]["completed"]) - int(cell[r]["errors"]) for r in order)
        for p in ("p95_ms", "p99_ms"):
            assert (row[p], row[f"{p}_ci_low"], row[f"{p}_ci_high"]) == ("", "", "")
        per_rep_medians = np.array([np.median(v) for v in x])
        cv = per_rep_medians.std(ddof=1) / per_rep_medians.mean() * 100
        assert close(row["median_cv_pct"], cv)
        assert row["unstable"] == str(bool(cv > 5.0)) and row["extra_repetitions"] == "0"
        medians = sorted(float(np.median(v)) for v in x)
        # 3 repetitions: the widest order-statistic interval [min, max] covers the median with 1 - 2/2^3 = 75 %.
        assert_ci(row, "median_ms", (float(np.median(medians)), medians[0], medians[-1]))
        assert close(row["median_ci_level"], 0.75)
        assert close(row["min_ms"], min(v.min() for v in x))
        assert close(row["max_ms"], max(v.max() for v in x))
        cell = runs[(platform, c)]
        # errors: requests without a complete 2xx answer = attempts minus served rows... plus the non-2xx
        # replies, which ab's -g rows cannot tell apart (they stay among the served rows)
        attempts = sum(int(cell[r]["completed"]) for r in order)
        no_reply = attempts - sum(len(v) for v in x)
        non_2xx = sum(int(cell[r]["non_2xx"]) for r in order)
        assert int(row["errors"]) == no_reply + non_2xx
        # throughput: complete 2xx answers (served rows less the non-2xx among them) per second, not ab's attempts
        # per second: ab's rate times the share of its attempts that were answered; runs.csv keeps its rates to
        # 0.01 req/s, hence the tolerance
        rates = [float(cell[r]["requests_per_s"]) * (len(by_rep[r]) - int(cell[r]["non_2xx"]))
                 / int(cell[r]["completed"]) for r in order]
        got = [num(row[k]) for k in ("throughput_rps", "throughput_rps_ci_low", "throughput_rps_ci_high")]
        assert np.allclose(got, t_ci(rates), rtol=1e-3), (got, t_ci(rates))
        assert int(row["length_mismatches"]) == sum(int(cell[r]["length_mismatch"]) for r in order)
    # 2xx replies of another length are not errors; the one 408 is, and so are the two empty replies and the
    # reset (connections closed with no response).
    assert find(table, platform="function", concurrency=5)["errors"] == "0"
    assert find(table, platform="function", concurrency=5)["length_mismatches"] == "2"
    assert find(table, platform="function", concurrency=20)["errors"] == "4"
    row = find(table, platform="function", concurrency=20)
    causes = (row["non_2xx"], row["reset"], row["empty_reply"], row["refused"], row["timeout"])
    assert causes == ("1", "1", "2", "0", "0")
    assert find(table, platform="function", concurrency=20)["length_mismatches"] == "0"  # the 408 page's length
    assert sum(int(r["errors"]) for r in table) == 4


def test_cross_platform_table_compares_the_function_with_the_baseline(complete_out: Path) -> None:
    """The ratio per concurrency, recomputed from requests.csv: the geometric mean over repetitions of the function's
    mean served time over the container's of the same repetition, with a t-interval on the log ratios."""
    reqs = rows(COMPLETE, "requests.csv")
    table = out_table(complete_out, "cross_platform")
    assert {r["platform"] for r in table} == {"function"} and {r["baseline"] for r in table} == {"container"}
    for conc in sorted({int(r["concurrency"]) for r in reqs if r["experiment"] == "concurrency"}):
        means: dict[tuple[str, int], float] = {}
        for platform in PLATFORMS:
            for rep in {int(r["repetition"]) for r in reqs}:
                times = [float(r["total_ms"]) for r in reqs if r["experiment"] == "concurrency"
                         and r["platform"] == platform and int(r["concurrency"]) == conc
                         and int(r["repetition"]) == rep and r["served"] == "1"]
                if times:
                    means[platform, rep] = float(np.mean(times))
        logs = np.log([means["function", rep] / means["container", rep]
                       for rep in sorted({rep for _, rep in means}) if ("function", rep) in means
                       and ("container", rep) in means])
        estimate, low, high = (float(np.exp(v)) for v in t_ci(logs))
        row = find(table, platform="function", concurrency=conc)
        assert float(row["mean_ratio"]) == pytest.approx(estimate, rel=1e-6)
        assert float(row["mean_ratio_ci_low"]) == pytest.approx(low, rel=1e-6)
        assert float(row["mean_ratio_ci_high"]) == pytest.approx(high, rel=1e-6)
        assert int(row["repetitions"]) == len(logs)


def test_table1(complete_out: Path) -> None:
    table = out_table(complete_out, "table1")
    probe = rows(COMPLETE, "probe.csv")
    paper = {"function": (120, 200), "container": (100, 130)}
    for platform in PLATFORMS:
        ok = [r for r in probe if r["platform"] == platform and r["status"] == "200"]
        row = find(table, platform=platform)
        assert int(row["requests_ok"]) == len(ok) == 10
        assert_ci(row, "prediction_ms", t_ci([float(r["prediction_ms"]) for r in ok]))
        assert_ci(row, "response_ms", t_ci([float(r["response_ms"]) for r in ok]))
        assert (float(row["paper_prediction_ms"]), float(row["paper_response_ms"])) == paper[platform]


def _probe(platform: str, col: str) -> np.ndarray:
    return np.array([float(r[col]) for r in rows(COMPLETE, "probe.csv")
                     if r["platform"] == platform and r["status"] == "200"])


def _scipy_bootstrap(f: np.ndarray, c: np.ndarray, stat: str) -> tuple[float, float]:
    fns = {
        "ms": lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
        "pct": lambda a, b, axis: 100 * (a.mean(axis=axis) / b.mean(axis=axis) - 1),
        "pct_of_function": lambda a, b, axis: 100 * (1 - b.mean(axis=axis) / a.mean(axis=axis)),
    }
    res = st.bootstrap((f, c), fns[stat], paired=False, vectorized=True, method="percentile", n_resamples=20_000,
                       rng=np.random.default_rng(99))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def test_table1_overhead(complete_out: Path) -> None:
    table = out_table(complete_out, "table1_overhead")
    for metric in ("prediction", "response"):
        f, c = _probe("function", f"{metric}_ms"), _probe("container", f"{metric}_ms")
        row = find(table, metric=metric)
        points = {"ms": f.mean() - c.mean(), "pct": 100 * (f.mean() / c.mean() - 1),
                  "pct_of_function": 100 * (1 - c.mean() / f.mean())}
        for stat, point in points.items():
            name = f"overhead_{stat}"
            assert close(row[name], point)
            lo, hi = _scipy_bootstrap(f, c, stat)
            tol = 0.08 * (hi - lo)  # two Monte-Carlo bootstraps agree to a few % of the interval's width
            assert abs(num(row[f"{name}_ci_low"]) - lo) < tol and abs(num(row[f"{name}_ci_high"]) - hi) < tol
        pf, pc = {"prediction": (120, 100), "response": (200, 130)}[metric]
        assert close(row["paper_overhead_ms"], pf - pc)
        assert close(row["paper_overhead_pct"], 100 * (pf / pc - 1))
        assert close(row["paper_overhead_pct_of_function"], 100 * (1 - pc / pf))
    assert close(find(table, metric="response")["paper_overhead_pct_of_function"], 35.0)  # the paper's "35 %"


def test_overhead_table(complete_out: Path) -> None:
    table = out_table(complete_out, "overhead")
    reps = per_rep(COMPLETE)
    for c in (1, 5, 20):
        f = {r: v.mean() for r, v in reps[("function", c)].items()}
        k = {r: v.mean() for r, v in reps[("container", c)].items()}
        order = sorted(f)
        fm, km = np.array([f[r] for r in order]), np.array([k[r] for r in order])
        row = find(table, setting="concurrency", concurrency=c)
        assert row["n"] == "3" and row["unit"] == "repetitions"
        # Exact paired bootstrap over 3 repetitions: the 27 equally likely resamples. The lowest and highest
        # resample each carry 1/27 = 3.7 % > 2.5 %, so the 95 % percentile interval is their value.
        boot = {"ms": [], "pct": [], "pct_of_function": []}
        for idx in itertools.product(range(3), repeat=3):
            a, b = fm[list(idx)].mean(), km[list(idx)].mean()
            boot["ms"].append(a - b)
            boot["pct"].append(100 * (a / b - 1))
            boot["pct_of_function"].append(100 * (1 - b / a))
        points = {"ms": fm.mean() - km.mean(), "pct": 100 * (fm.mean() / km.mean() - 1),
                  "pct_of_function": 100 * (1 - km.mean() / fm.mean())}
        for stat, values in boot.items():
            assert_ci(row, f"overhead_{stat}", (points[stat], min(values), max(values)))
        assert close(row["function_ms"], fm.mean()) and close(row["container_ms"], km.mean())
    probe = find(table, setting="probe")
    f, c = _probe("function", "response_ms"), _probe("container", "response_ms")
    assert close(probe["overhead_ms"], f.mean() - c.mean())
    paper = find(table, setting="paper")
    assert close(paper["overhead_ms"], 70.0) and close(paper["overhead_pct_of_function"], 35.0)


def test_breakdown_table(complete_out: Path) -> None:
    table = out_table(complete_out, "breakdown")
    reps, runs = per_rep(COMPLETE), runs_by_cell(COMPLETE)
    parts = {}
    for (platform, c), cell in runs.items():
        client = np.mean([v.mean() for v in reps[(platform, c)].values()])
        server = np.mean([float(r["server_mean_ms"]) for r in cell.values()])
        pred = np.mean([float(r["prediction_mean_ms"]) for r in cell.values()])
        want = {"client_ms": client, "server_ms": server, "network_http_ms": client - server,
                "runtime_ms": server - pred, "model_ms": pred}
        parts[(platform, c)] = want
        row = find(table, platform=platform, concurrency=c)
        for col, value in want.items():
            assert close(row[col], value), (platform, c, col)
    for c in (1, 5, 20):
        row = find(table, platform="function - container", concurrency=c)
        for col in ("client_ms", "network_http_ms", "runtime_ms", "model_ms"):
            assert close(row[col], parts[("function", c)][col] - parts[("container", c)][col])


def test_coldstart_table(complete_out: Path) -> None:
    table = out_table(complete_out, "coldstart")
    cs = rows(COMPLETE, "coldstart.csv")
    for platform in PLATFORMS:
        x = np.array([float(r["start_to_first_200_ms"]) for r in cs if r["platform"] == platform])
        row = find(table, platform=platform, kind="container_restart")
        assert_ci(row, "start_to_first_200_ms", t_ci(x))
        assert close(row["median_ms"], np.median(x)) and close(row["min_ms"], x.min())
        assert close(row["max_ms"], x.max())
        assert close(row["attempts_mean"], np.mean([int(r["attempts"]) for r in cs if r["platform"] == platform]))
        assert row["never_ready"] == "0"


def test_resources_table(complete_out: Path) -> None:
    table = out_table(complete_out, "resources")
    for (platform, c), cell in runs_by_cell(COMPLETE).items():
        row = find(table, platform=platform, concurrency=c)
        peak = max(float(r["mem_max_bytes"]) for r in cell.values())
        limit = max(float(r["mem_limit_bytes"]) for r in cell.values())
        assert close(row["cpu_mean_pct"], np.mean([float(r["cpu_mean_pct"]) for r in cell.values()]))
        assert close(row["cpu_max_pct"], max(float(r["cpu_max_pct"]) for r in cell.values()))
        assert close(row["mem_peak_mib"], peak / 2**20)
        assert close(row["mem_peak_pct_of_limit"], 100 * peak / limit)
        assert close(row["mem_peak_pct_of_paper_2gb"], 100 * peak / 2**31)


def test_pooled_percentiles_need_their_samples_and_extra_repetitions_count(tmp_path: Path) -> None:
    """6 x 140 requests per cell pool to 840 >= 662 served requests: p99 is shown, with the order-statistic interval
    of its pooled requests; a cell that lost 200 requests to empty replies and resets is short of a p99 but has its
    p95. A repetition beyond the planned ones (r6 of 5) is an extra repetition and is used."""
    from analysis.synthetic import Fault, Plan, write_results

    folder = write_results(tmp_path / "run", Plan(concurrency=[1, 20], repetitions=6, requests_per_run=140,
                                                  faults={("function", 20, 2): Fault(empty_reply=100),
                                                          ("function", 20, 3): Fault(reset=100)}, seed=7))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["config"]["repetitions"] = 5  # repetition 6 becomes an extra one
    (folder / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "report"
    assert main([str(folder), "--out", str(out)]) == 0
    table = out_table(out, "concurrency")
    for (platform, c), by_rep in per_rep(folder).items():
        row = find(table, platform=platform, concurrency=c)
        pooled = np.concatenate([by_rep[r] for r in sorted(by_rep)])
        assert row["repetitions"] == "6" and row["extra_repetitions"] == "1" and int(row["served"]) == len(pooled)
        for p, needed in ((95, 133), (99, 662)):
            if len(pooled) < needed:
                assert row[f"p{p}_ms"] == "", (platform, c, p)
                continue
            # textbook distribution-free interval: [x_(l), x_(u+1)], l, u = the binomial's 2.5 % / 97.5 % points
            lo_rank, hi_rank = st.binom.interval(0.95, len(pooled), p / 100)
            x = np.sort(pooled)
            want = (float(np.percentile(pooled, p)), float(x[int(lo_rank) - 1]),
                    float(x[min(int(hi_rank) + 1, len(x)) - 1]))
            assert_ci(row, f"p{p}_ms", want)
        medians = np.array([np.median(by_rep[r]) for r in sorted(by_rep)])
        assert close(row["median_cv_pct"], medians.std(ddof=1) / medians.mean() * 100)
    short = find(table, platform="function", concurrency=20)
    assert 133 <= int(short["served"]) < 662 and short["p99_ms"] == "" and short["p95_ms"] != ""
    assert find(table, platform="container", concurrency=20)["p99_ms"] != ""
    report = (out / "report.md").read_text()
    assert f"too few samples ({short['served']} of 662)" in report
    assert "(+1 extra)" in report


def test_warmup_runs_do_not_change_any_statistic(copy: Path, tmp_path: Path) -> None:
    path = copy / "requests.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("total_ms")
    for i, line in enumerate(lines[1:], start=1):
        fields = line.split(",")
        if fields[1] == "warmup":
            fields[col] = "99999.0"
            lines[i] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    assert main([str(copy), "--out", str(tmp_path / "warm")]) == 0
    assert main([str(COMPLETE), "--out", str(tmp_path / "ref")]) == 0
    for name in ("concurrency", "overhead", "breakdown"):
        assert (tmp_path / "warm" / "tables" / f"{name}.csv").read_text() == \
               (tmp_path / "ref" / "tables" / f"{name}.csv").read_text()


# ---------------------------------------------------------------- statistics helpers

def test_median_interval_matches_binomial_order_statistics() -> None:
    rng = np.random.default_rng(3)
    for n in range(6, 121):
        x = rng.lognormal(3, 0.5, n)
        ci = median_ci(x)
        ref = st.quantile_test(x, q=np.median(x), p=0.5).confidence_interval(0.95)
        assert (ci.low, ci.high) == (ref.low, ref.high), n
        assert ci.level >= 0.95
    assert median_ranks(70)[:2] == (27, 44)  # Le Boudec, Table A.1
    for n in range(2, 6):  # no 95 % interval exists: [min, max] with its true, lower coverage
        j, k, level = median_ranks(n)
        assert (j, k) == (1, n) and level == pytest.approx(1 - 2 * 0.5**n)


def test_mean_interval_matches_scipy() -> None:
    x = np.array([3.0, 4.5, 5.0, 7.5, 4.0])
    ci = mean_ci(x)
    assert (ci.low, ci.high) == pytest.approx(st.t.interval(0.95, 4, loc=x.mean(), scale=st.sem(x)))
    assert np.isnan(mean_ci([1.0]).low)


def test_bootstrap_paired_requires_equal_sizes() -> None:
    with pytest.raises(ValueError, match="equal size"):
        bootstrap_overhead([1.0, 2.0], [1.0], paired=True)


# ---------------------------------------------------------------- report and figures

def test_every_figure_is_written(complete_out: Path) -> None:
    for name in FIGURES:
        png = complete_out / "figures" / f"{name}.png"
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_every_table_is_a_csv(complete_out: Path) -> None:
    for name in TABLES:
        assert len(out_table(complete_out, name)) > 0, name


def test_reports_are_written_and_self_contained(complete_out: Path) -> None:
    md = (complete_out / "report.md").read_text()
    page = (complete_out / "report.html").read_text()
    for name in FIGURES:
        assert f"](figures/{name}.png)" in md
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert "src=\"figures/" not in page
    for text in ("## Verdict", "Table 1", "(paper: Kubeless)", "| 200 |", "| 130 |", "35", "INCOMPLETE"):
        assert (text in md) == (text != "INCOMPLETE"), text
    row = find(out_table(complete_out, "concurrency"), platform="function", concurrency=20)
    assert f"| function | 20 | 3/3 | {row['requests']} | {float(row['mean_ms']):.1f} [" in md
    assert row["requests"] == "57"  # 60 attempts, 3 of them failed without a reply: latency of the served 57
    assert "ab also flagged 2 response(s)" in md and "4 real error(s)" in md
    assert "by what the client saw: 1 non 2xx, 1 reset, 2 empty reply" in md


def test_verdict_follows_the_numbers(complete_out: Path) -> None:
    md = (complete_out / "report.md").read_text()
    over = find(out_table(complete_out, "table1_overhead"), metric="response")
    # The fixture's function is ~3.5x slower than the container: far more than the paper's 35 %.
    assert num(over["overhead_pct_of_function_ci_low"]) > 45
    assert "~35 % response-time overhead: holds in direction only" in md
    assert "by much more than the paper found" in md


def test_a_bounded_platforms_unplanned_levels_are_not_missing(tmp_path: Path) -> None:
    """A platform run at bounded concurrency (max_concurrency, e.g. OpenFaaS's classic watchdog) has no runs above
    its bound because the plan leaves them out: a complete run stays complete. Above the bound nothing is missing;
    at or below it a removed run still is."""
    folder = tmp_path / "bounded"
    shutil.copytree(COMPLETE, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["platforms"]["function"]["max_concurrency"] = 5
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with open(folder / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    drop = {(r["run_key"]) for r in rows if r["experiment"] == "concurrency" and r["platform"] == "function"
            and int(r["concurrency"]) > 5}
    assert drop  # the fixture has function runs above c=5 to drop
    for name in ("runs.csv", "requests.csv"):
        with open(folder / name, newline="") as f:
            reader = csv.DictReader(f)
            kept = [r for r in reader if r["run_key"] not in drop]
            fields = reader.fieldnames
        with open(folder / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
    assert load_results(folder).missing_cells == []
    manifest["platforms"]["function"]["max_concurrency"] = 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert load_results(folder).missing_cells == []
    manifest["platforms"]["function"].pop("max_concurrency")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    missing = load_results(folder).missing_cells
    assert missing and all(p == "function" and c > 5 for p, c, _ in missing)


def test_incomplete_run_is_flagged(incomplete_out: Path) -> None:
    results = load_results(INCOMPLETE)
    assert not results.complete
    assert sorted(results.missing_cells) == [("container", 5, 3), ("container", 20, 3), ("function", 20, 3)]
    reasons = " ".join(results.incomplete_reasons)
    assert "status is 'incomplete'" in reasons and "17 of 20 planned runs" in reasons
    md = (incomplete_out / "report.md").read_text()
    assert md.splitlines()[2].startswith("> **⚠ INCOMPLETE RUN")
    assert "PROVISIONAL (incomplete run)" in md
    assert '<div class="banner"><h2>⚠ INCOMPLETE RUN' in (incomplete_out / "report.html").read_text()
    table = out_table(incomplete_out, "concurrency")
    short = find(table, platform="function", concurrency=20)
    assert (short["repetitions"], short["complete"]) == ("2", "False")
    assert "| function | 20 | 2/3 (incomplete) |" in md
    reps = per_rep(INCOMPLETE)[("function", 20)]
    assert_ci(short, "mean_ms", t_ci([v.mean() for v in reps.values()]))
    # coldstart.csv was never written: the section says so and no figure is drawn
    assert "No cold-start repetitions were recorded" in md
    assert not (incomplete_out / "figures" / "coldstart.png").exists()


def test_incomplete_run_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(INCOMPLETE), "--out", str(tmp_path / "a"), "--fail-on-incomplete"]) == EXIT_INCOMPLETE
    assert "WARNING: INCOMPLETE RUN" in capsys.readouterr().err
    assert (tmp_path / "a" / "report.md").exists()


def test_default_results_dir_is_the_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "results"
    shutil.copytree(INCOMPLETE, root / "20261101T000000Z")
    shutil.copytree(COMPLETE, root / "20261204T120000Z")
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    assert (root / "20261204T120000Z" / "report" / "report.html").exists()
    assert not (root / "20261101T000000Z" / "report").exists()


# ---------------------------------------------------------------- bad input: one message per problem

def _drop_column(folder: Path, name: str, column: str) -> None:
    with (folder / name).open(newline="") as fh:
        data = list(csv.DictReader(fh))
    fields = [f for f in data[0] if f != column]
    with (folder / name).open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(data)


def _edit_lines(folder: Path, name: str, fn: Callable[[str], str]) -> None:
    path = folder / name
    path.write_text(fn(path.read_text()))


def _drop_first_row(folder: Path, name: str, prefix: str) -> None:
    lines = (folder / name).read_text().splitlines(keepends=True)
    lines.remove(next(line for line in lines if line.startswith(prefix)))
    (folder / name).write_text("".join(lines))


def _set_manifest(folder: Path, **changes: object) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    m.update(changes)
    (folder / "manifest.json").write_text(json.dumps(m))


BROKEN = {
    "missing manifest": (lambda d: (d / "manifest.json").unlink(), ["manifest.json is missing"]),
    "manifest not JSON": (lambda d: _edit_lines(d, "manifest.json", lambda t: t[:40]),
                          ["manifest.json is not valid JSON"]),
    "manifest lacks keys": (lambda d: (d / "manifest.json").write_text('{"schema_version": 1}'),
                            ["manifest.json lacks key(s) run_id, status, config"]),
    "wrong schema version": (lambda d: _set_manifest(d, schema_version=1), ["schema_version 1"]),
    "missing runs.csv": (lambda d: (d / "runs.csv").unlink(), ["runs.csv is missing"]),
    "empty requests.csv": (lambda d: (d / "requests.csv").write_text(""), ["requests.csv is empty"]),
    "truncated mid-line": (lambda d: _edit_lines(d, "requests.csv", lambda t: t[: len(t) // 2]),
                           ["requests.csv looks truncated"]),
    "truncated row": (lambda d: _edit_lines(d, "requests.csv",
                                            lambda t: t.rstrip("\n").rsplit(",", 3)[0] + "\n"),
                      ["requests.csv line 401: column total_ms is empty"]),
    "missing column": (lambda d: _drop_column(d, "requests.csv", "total_ms"),
                       ["requests.csv lacks column(s) total_ms"]),
    "missing column in runs": (lambda d: _drop_column(d, "runs.csv", "non_2xx"),
                               ["runs.csv lacks column(s) non_2xx"]),
    "not a number": (lambda d: _edit_lines(d, "probe.csv", lambda t: t.replace(",200,", ",OK,", 1)),
                     ["probe.csv line 2: column status holds 'OK', not a number"]),
    "inconsistent counts": (lambda d: _drop_first_row(d, "requests.csv", "concurrency-function-c1-r1,"),
                            ["requests.csv has 19 row(s) for run concurrency-function-c1-r1 but runs.csv says ab "
                             "completed 20"]),
    "stray requests": (lambda d: _edit_lines(d, "requests.csv",
                                             lambda t: t + "ghost-run,concurrency,function,1,1,1,0,1,1,1,1\n"),
                       ["requests.csv has 1 row(s) for run(s) not in runs.csv (e.g. 'ghost-run')"]),
    "unknown platform": (lambda d: _edit_lines(d, "coldstart.csv", lambda t: t.replace("\ncontainer,", "\nlambda,", 1)),
                         ["coldstart.csv: platform(s) lambda are not in manifest.json"]),
    "runs_done over planned": (lambda d: _set_manifest(d, runs_done=99), ["runs_done (99) exceeds runs_planned"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_bad_input_is_refused_with_its_message(case: str, copy: Path) -> None:
    breaker, messages = BROKEN[case]
    breaker(copy)
    with pytest.raises(ResultsError) as err:
        load_results(copy)
    text = str(err.value)
    for message in messages:
        assert message in text, text


def test_unfinished_ab_run_is_set_apart_and_flagged(copy: Path, tmp_path: Path) -> None:
    """bench.yml records an ab run that aborted (e.g. 'Connection reset by peer' at c=20) with outcome 'aborted'
    and no counts; it must not be averaged in, and the report must say the run is short of it."""
    key = "concurrency-function-c20-r2"
    with (copy / "runs.csv").open(newline="") as fh:
        data = list(csv.DictReader(fh))
    for r in data:
        r["outcome"], r["error"] = "ok", ""
        if r["run_key"] == key:
            for col in ("completed", "failed", "failed_connect", "failed_receive", "failed_length",
                        "failed_exceptions", "non_2xx", "time_taken_s", "requests_per_s", "mean_ms"):
                r[col] = ""
            r["outcome"], r["error"] = "aborted", "apr_socket_recv: Connection reset by peer (104)"
    with (copy / "runs.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(data[0]))
        w.writeheader()
        w.writerows(data)
    _edit_lines(copy, "requests.csv", lambda t: "".join(
        line for line in t.splitlines(keepends=True) if not line.startswith(key + ",")))
    results = load_results(copy)
    assert list(results.failed_runs["run_key"]) == [key]
    assert ("function", 20, 2) in results.missing_cells
    assert any("aborted: apr_socket_recv" in r for r in results.incomplete_reasons)
    out = tmp_path / "out"
    assert main([str(copy), "--out", str(out)]) == 0
    row = find(out_table(out, "concurrency"), platform="function", concurrency=20)
    kept = {r: v for r, v in per_rep(copy)[("function", 20)].items()}
    assert sorted(kept) == [1, 3] and row["repetitions"] == "2"
    assert_ci(row, "mean_ms", t_ci([v.mean() for v in kept.values()]))
    md = (out / "report.md").read_text()
    assert "INCOMPLETE RUN" in md and f"{key} aborted" in md and "did not finish at all" in md


def test_columns_the_analysis_does_not_use_may_be_absent(copy: Path) -> None:
    """RESULTS.md lists start_s (ab's 1-second start column); the analysis does not use it, so it may be absent."""
    _edit_lines(copy, "requests.csv", lambda t: t.replace("start_s", "start_renamed", 1))
    results = load_results(copy)
    assert any("requests.csv lacks column(s) start_s" in w and "does not need them" in w for w in results.warnings)


def test_header_only_optional_tables_are_read_as_empty(copy: Path) -> None:
    """bench writes every CSV, header-only when a step was not configured (e.g. no cold starts)."""
    header = (copy / "coldstart.csv").read_text().splitlines()[0]
    (copy / "coldstart.csv").write_text(header + "\n")
    results = load_results(copy)
    assert results.coldstart.empty


def test_cli_reports_bad_input_with_status_2(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (copy / "manifest.json").unlink()
    assert main([str(copy)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "manifest.json is missing" in err and str(copy) in err


def test_cli_reports_missing_results_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--results-root", str(tmp_path / "nowhere")]) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="is not a folder"):
        load_results(tmp_path / "missing")


# ---------------------------------------------------------------- CLI

def test_cli_help_explains_every_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "analysis", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    for subcommand in ("report", "benchmark"):
        assert f"    {subcommand}" in out
    out = subprocess.run([sys.executable, "-m", "analysis", "report", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    for flag in ("RESULTS_DIR", "--out", "--results-root", "--confidence", "--bootstrap-resamples", "--seed",
                 "--fail-on-incomplete"):
        assert flag in out
    out = subprocess.run([sys.executable, "-m", "analysis", "benchmark", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    for flag in ("--rows", "--keep", "--report"):
        assert flag in out


def test_benchmark_script_runs_small(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", "--rows", "2000"]) == 0
    out = capsys.readouterr().out
    assert "per-request rows: 2,040 (2,000 measured + 40 warm-up)" in out and "summarization total" in out


def test_a_run_without_the_container_platform_is_reported(copy: Path, tmp_path: Path) -> None:
    """A run of the function paths alone (e.g. -e to leave the app out) still gets a report; the overheads that
    need the container say 'not measured' instead of crashing."""
    for name in ("runs.csv", "requests.csv", "probe.csv", "predictions.csv", "coldstart.csv", "resources.csv"):
        with (copy / name).open(newline="") as fh:
            reader = csv.DictReader(fh)
            fields, kept = reader.fieldnames, [r for r in reader if r["platform"] != "container"]
        with (copy / name).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["platforms"]["container"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "report"
    assert main([str(copy), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "response-time overhead: not measured" in md and "| container |" not in md


def test_a_cell_of_fast_rejections_gets_no_mean_ratio() -> None:
    """ab times non-2xx replies among the served requests, so a platform answering most of a cell with a fast 429
    would read as many times faster than the baseline: above NON_2XX_TIMED_LIMIT_PCT % of its attempts the cross-
    platform ratio is left empty, with the reason; at or below it the ratio is the one the repetitions give."""
    from analysis import tables
    from analysis.summarize import per_run

    results = load_results(COMPLETE)
    s = tables.Settings()
    runs = per_run(results)
    conc = tables.concurrency_table(runs, results, s)
    empty = pd.DataFrame()
    before = tables.cross_platform_table(runs, results, conc, empty, empty, empty, s)
    cell = (conc["platform"] == "function") & (conc["concurrency"] == 20)
    attempts = int(conc.loc[cell, "served"].iloc[0] + conc.loc[cell, "errors"].iloc[0])
    limit = tables.NON_2XX_TIMED_LIMIT_PCT
    for non_2xx, shown in ((int(attempts * limit / 100), True), (int(attempts * limit / 100) + 1, False)):
        edited = conc.copy()
        edited.loc[cell, "non_2xx"] = non_2xx
        row = find_row(tables.cross_platform_table(runs, results, edited, empty, empty, empty, s), "function", 20)
        if shown:
            assert row["mean_ratio"] == find_row(before, "function", 20)["mean_ratio"] and row["ratio_note"] == ""
        else:
            assert np.isnan(row["mean_ratio"]) and np.isnan(row["p99_ratio"])
            assert "non-2xx" in row["ratio_note"] and "function" in row["ratio_note"]
    other = find_row(before, "function", 1)
    assert np.isfinite(other["mean_ratio"])


def test_the_headline_gives_no_ratio_to_a_cell_of_fast_rejections() -> None:
    """The headline's per-concurrency rows follow the same rule as the cross-platform table: a cell where more than
    NON_2XX_TIMED_LIMIT_PCT % of a side's attempts were non-2xx has no ratio, and says why (run 20261205T090426Z
    showed Fission's 429s at c=5 as 0.16x the container)."""
    from analysis import headline, tables
    from analysis.summarize import per_run

    results = load_results(COMPLETE)
    runs = per_run(results)

    def row_at(frame, c):
        hit = frame[(frame["platform"] == "function") & (frame["source"] == "repetitions")
                    & (frame["concurrency"] == c)]
        assert len(hit) == 1
        return hit.iloc[0]

    before = headline.headline_table(results, runs)
    edited = runs.copy()
    mask = (edited["platform"] == "function") & (edited["concurrency"] == 20)
    attempts = int(edited.loc[mask, "completed"].sum())
    limit = tables.NON_2XX_TIMED_LIMIT_PCT
    for non_2xx, shown in ((int(attempts * limit / 100), True), (int(attempts * limit / 100) + 1, False)):
        edited.loc[mask, "non_2xx"] = 0
        edited.loc[edited.index[mask][0], "non_2xx"] = non_2xx
        row = row_at(headline.headline_table(results, edited), 20)
        if shown:
            assert row["ratio"] == row_at(before, 20)["ratio"] and not row["ratio_note"]
        else:
            assert np.isnan(row["ratio"]) and "non-2xx" in row["ratio_note"] and "function" in row["ratio_note"]
    assert np.isfinite(row_at(before, 1)["ratio"])


def test_each_warmup_free_run_names_its_platform(copy: Path) -> None:
    """With several platforms, the WARMUP_CALLS=0 table has one row per platform's nowarmup run, and each row says
    whose it is (run 20261205T090426Z printed seven identical variant names)."""
    from analysis import ingress
    from analysis.summarize import per_run

    def rows_of(name: str) -> tuple[list[str], list[dict]]:
        with open(copy / name, newline="") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames), list(reader)

    fields, runs = rows_of("runs.csv")
    rfields, requests = rows_of("requests.csv")
    added = {}
    for platform in ("container", "function"):
        source = next(r for r in runs if r["experiment"] == "concurrency" and r["platform"] == platform
                      and r["concurrency"] == "1")
        key = f"nowarmup-{platform}-c1-r1"
        runs.append({**source, "run_key": key, "experiment": "nowarmup"})
        copied = [{**r, "run_key": key, "experiment": "nowarmup"} for r in requests
                  if r["run_key"] == source["run_key"] and r["served"] == "1"]
        requests.extend(copied)
        added[platform] = len(copied)
    for name, head, body in (("runs.csv", fields, runs), ("requests.csv", rfields, requests)):
        with open(copy / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=head)
            writer.writeheader()
            writer.writerows(body)
    results = load_results(copy)
    table = ingress.nowarmup(per_run(results), results)
    variants = table[table["variant"].str.startswith("WARMUP_CALLS=0")]
    assert dict(zip(variants["platform"], variants["served"], strict=True)) == added


def find_row(frame, platform: str, concurrency: int):
    hit = frame[(frame["platform"] == platform) & (frame["concurrency"] == concurrency)]
    assert len(hit) == 1
    return hit.iloc[0]
