"""`python -m analysis compare RUN_A RUN_B` on synthetic results folders (analysis/synthetic.py): a run against
itself is "same" everywhere (exit 0); a copy whose function requests take 20 % longer is "slower" there and only
there (exit 1); a faster copy is "faster" (exit 0); runs of a different matrix, payload or model cannot be compared
(exit 2, naming the difference). Expected values are recomputed here from the CSV files with numpy/scipy."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis.__main__ import main
from analysis.bench import schema
from analysis.synthetic import Plan, write_results


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def served_by_repetition(folder: Path) -> dict[tuple[str, int], list[np.ndarray]]:
    out: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows(folder / "requests.csv"):
        if r["experiment"] == "concurrency" and r["served"] == "1":
            out[(r["platform"], int(r["concurrency"]))][r["run_key"]].append(float(r["total_ms"]))
    return {k: [np.array(v[key]) for key in sorted(v)] for k, v in out.items()}


def served_by_cell(folder: Path) -> dict[tuple[str, int], np.ndarray]:
    return {k: np.concatenate(reps) for k, reps in served_by_repetition(folder).items()}


def welch_p_slower(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """One-sided Welch t-test of B's repetition means against A's, written out (not scipy's ttest_ind)."""
    ma, mb = np.array([x.mean() for x in a]), np.array([x.mean() for x in b])
    va, vb = ma.var(ddof=1) / len(ma), mb.var(ddof=1) / len(mb)
    t = (mb.mean() - ma.mean()) / np.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(ma) - 1) + vb**2 / (len(mb) - 1))
    return float(st.t.sf(t, dof))


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
    code = main(["compare", str(a), str(b), "--out", str(out), "--bootstrap-resamples", "500", *extra])
    table = rows(out / "tables" / "compare.csv") if (out / "tables" / "compare.csv").exists() else []
    return code, table, out


@pytest.fixture(scope="module")
def run_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 5 x 140 requests: 700 served per cell, enough for a p99
    return write_results(tmp_path_factory.mktemp("a") / "a", Plan(concurrency=[1, 20], requests_per_run=140, seed=5))


def test_a_run_compared_with_itself_is_same_everywhere(run_a: Path, tmp_path: Path) -> None:
    code, table, out = compare(tmp_path, run_a, run_a)
    assert code == 0
    assert len(table) == 4 and {r["verdict"] for r in table} == {"same"}
    for r in table:
        assert float(r["mean_diff_ms"]) == 0 and float(r["median_diff_ms"]) == 0 and float(r["p99_diff_ms"]) == 0
        assert float(r["mean_diff_pct_ci_low"]) <= 0 <= float(r["mean_diff_pct_ci_high"])
        assert float(r["p_b_slower"]) > 0.4  # identical samples: U = n^2/2
    assert (out / "compare.md").exists() and (out / "figures" / "compare.png").stat().st_size > 1000
    html = (out / "compare.html").read_text()
    assert "data:image/png;base64," in html and "same" in html


def test_two_independent_runs_of_the_same_system_are_same(run_a: Path, tmp_path: Path) -> None:
    """A/A: another draw of the same synthetic system (its bimodal c=20 function cell included) is 'same'."""
    again = write_results(tmp_path / "again", Plan(concurrency=[1, 20], requests_per_run=140, seed=6))
    code, table, _ = compare(tmp_path, run_a, again)
    assert code == 0 and {r["verdict"] for r in table} == {"same"}
    f20 = next(r for r in table if r["platform"] == "function" and r["level"] == "20.0")
    assert float(f20["slow_share_a"]) > 0  # the SYN-retry mode is there, and the mean still agrees


def test_a_slower_function_is_slower_with_exit_1(run_a: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    slow = scaled_copy(run_a, tmp_path / "b", 1.20, platform="function")
    code, table, _ = compare(tmp_path, run_a, slow)
    assert code == 1
    a_cells, b_cells = served_by_cell(run_a), served_by_cell(slow)
    a_reps, b_reps = served_by_repetition(run_a), served_by_repetition(slow)
    for r in table:
        key = (r["platform"], int(float(r["level"])))
        a, b = a_cells[key], b_cells[key]
        assert int(r["n_a"]) == len(a) and int(r["n_b"]) == len(b)
        assert int(r["reps_a"]) == len(a_reps[key]) == 5 and int(r["reps_b"]) == 5
        assert np.isclose(float(r["mean_diff_pct"]), 100 * (b.mean() / a.mean() - 1))
        assert np.isclose(float(r["mean_diff_ms"]), b.mean() - a.mean())
        assert np.isclose(float(r["median_diff_ms"]), np.median(b) - np.median(a))
        assert np.isclose(float(r["p99_diff_ms"]), np.percentile(b, 99) - np.percentile(a, 99))
        assert r["test"] == "welch-t over repetition means"
        assert np.isclose(float(r["p_b_slower"]), welch_p_slower(a_reps[key], b_reps[key]))
        if key[0] == "function":
            assert np.isclose(float(r["mean_diff_pct"]), 20.0)
            assert r["verdict"] == "slower" and float(r["mean_diff_pct_ci_low"]) > 5
        else:
            assert r["verdict"] == "same" and float(r["mean_diff_ms"]) == 0
    printed = capsys.readouterr().out
    assert "verdict: 2 of 4 cell(s) slower beyond 5 %: function c=1, function c=20" in printed


def test_repetition_drift_is_noise_not_a_slowdown(tmp_path: Path) -> None:
    """Two runs of one system whose repetitions each drift by a shared factor (sigma 6 %, as a cloud VM's do): the
    two-stage interval carries that spread and the verdict is 'same' everywhere, where an interval over requests
    alone (recomputed here) calls several cells significantly different."""
    plan = {"concurrency": [1, 5, 10, 20], "requests_per_run": 140, "rep_jitter": 0.06}
    a = write_results(tmp_path / "drift-a", Plan(seed=11, **plan))
    b = write_results(tmp_path / "drift-b", Plan(seed=12, **plan))
    code, table, _ = compare(tmp_path, a, b)
    assert code == 0 and {r["verdict"] for r in table} == {"same"}
    rng = np.random.default_rng(0)
    a_cells, b_cells = served_by_cell(a), served_by_cell(b)
    request_level = []
    for key in a_cells:
        x, y = a_cells[key], b_cells[key]
        boot = np.array([100 * (rng.choice(y, len(y)).mean() / rng.choice(x, len(x)).mean() - 1) for _ in range(500)])
        lo, hi = np.percentile(boot, [2.5, 97.5])
        request_level.append(lo > 0 or hi < 0)
        row = next(r for r in table if (r["platform"], int(float(r["level"]))) == key)
        width = float(row["mean_diff_pct_ci_high"]) - float(row["mean_diff_pct_ci_low"])
        assert width > hi - lo  # the repetitions' spread widens the interval
    # a correct 95 % interval misses zero in 3 or more of 8 cells of identical systems 0.6 % of the time
    assert sum(request_level) >= 3


def test_a_slower_machine_is_told_from_a_slower_deployment(run_a: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Every cell 12 % slower and the reference workload 12 % slower too: slower as measured, same once B's times
    are divided by the machine-speed ratio (--adjust-for-machine)."""
    rng = np.random.default_rng(3)

    def with_reference(folder: Path, ms: float) -> Path:
        runs = pd.read_csv(folder / "runs.csv")
        runs["reference_ms"] = ms * rng.lognormal(0, 0.01, len(runs))
        runs.to_csv(folder / "runs.csv", index=False)
        return folder

    a = with_reference(shutil.copytree(run_a, tmp_path / "ref-a"), 17.0)
    b = with_reference(scaled_copy(run_a, tmp_path / "ref-b", 1.12), 17.0 * 1.12)
    code, table, _ = compare(tmp_path, a, b)
    assert code == 1 and {r["verdict"] for r in table} == {"slower"}
    assert "machine speed: B's reference workload took +12" in capsys.readouterr().out
    code, table, _ = compare(tmp_path, a, b, "--adjust-for-machine")
    assert code == 0 and {r["verdict"] for r in table} == {"same"}
    for r in table:
        assert abs(float(r["mean_diff_pct"])) < 1.5 and r["adjusted_for_machine"] == "1"
        assert np.isclose(float(r["machine_ratio"]), 1.12, atol=0.01)
    # a real slowdown on top of the machine's still shows
    c = with_reference(scaled_copy(run_a, tmp_path / "ref-c", 1.12 * 1.2, platform="function"), 17.0 * 1.12)
    code, table, _ = compare(tmp_path, a, c, "--adjust-for-machine")
    assert code == 1
    assert {r["platform"] for r in table if r["verdict"] == "slower"} == {"function"}


def test_a_faster_run_is_faster_with_exit_0(run_a: Path, tmp_path: Path) -> None:
    fast = scaled_copy(run_a, tmp_path / "fast", 0.8)
    code, table, _ = compare(tmp_path, run_a, fast)
    assert code == 0 and {r["verdict"] for r in table} == {"faster"}


def test_the_threshold_decides_what_counts(run_a: Path, tmp_path: Path) -> None:
    """4 % longer: significant (Welch over repetitions) but within a 5 % threshold; beyond a 1 % one."""
    b = scaled_copy(run_a, tmp_path / "b4", 1.04, platform="container")
    code, table, _ = compare(tmp_path, run_a, b)
    assert code == 0 and {r["verdict"] for r in table} == {"same"}
    code, table, _ = compare(tmp_path, run_a, b, "--threshold", "1")
    assert code == 1
    verdicts = {(r["platform"], r["level"]): r["verdict"] for r in table}
    assert {k for k, v in verdicts.items() if v == "slower"} == {("container", "1.0"), ("container", "20.0")}


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
    assert code == 0 and sorted({r["level"] for r in table}) == ["1.0"]
    assert "different matrix: concurrency A [1, 20], B [1, 5]" in capsys.readouterr().out


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


def test_open_loop_cells_are_compared_per_offered_rate(run_a: Path, tmp_path: Path) -> None:
    """Folders with the open-loop tables get one more cell per platform and rate (here: 90 % of capacity). With three
    runs per rate on each side the cell is judged; with one run its run-to-run noise is unmeasured and it is shown,
    not judged; a different offered rate is 'different load'."""
    rng = np.random.default_rng(0)

    def with_rates(name: str, factor: float, offered: float = 100.0, runs: int = 3) -> Path:
        folder = shutil.copytree(run_a, tmp_path / name)
        run_rows, request_frames = [], []
        for k in range(1, runs + 1):
            latency = rng.lognormal(np.log(50), 0.2, 800) * factor * rng.lognormal(0, 0.03)
            key = f"rate-container-90pct-{k}"
            run_rows.append({"run_key": key, "experiment": "rate", "platform": "container", "capacity_pct": 90,
                             "offered_rps": offered, "scheduled": 800, "dropped": 0, "served": 800, "errors": 0,
                             "valid": 1, "outcome": "ok"})
            request_frames.append(pd.DataFrame({
                "run_key": key, "platform": "container", "seq": np.arange(1, 801), "scheduled_s": np.arange(800) / 100,
                "latency_ms": latency, "status": 200, "outcome": "served", "served": 1}))
        pd.DataFrame(run_rows).reindex(columns=schema.RATE_RUNS.names).to_csv(folder / "rate_runs.csv", index=False)
        pd.concat(request_frames).reindex(columns=schema.RATE_REQUESTS.names).to_csv(folder / "rate_requests.csv",
                                                                                       index=False)
        return folder

    a, b = with_rates("rate-a", 1.0), with_rates("rate-b", 1.5)
    code, table, _ = compare(tmp_path, a, b)
    rate = [r for r in table if r["load"] == "rate %"]
    assert code == 1 and len(rate) == 1 and rate[0]["verdict"] == "slower" and rate[0]["level"] == "90.0"
    assert rate[0]["test"] == "welch-t over repetition means" and rate[0]["reps_a"] == "3"
    assert {r["verdict"] for r in table if r["load"] == "c"} == {"same"}
    # one run per side: batch means give an interval, but no verdict
    a1, b1 = with_rates("rate-a1", 1.0, runs=1), with_rates("rate-b1", 1.5, runs=1)
    code, table, out = compare(tmp_path, a1, b1)
    rate = [r for r in table if r["load"] == "rate %"]
    assert code == 0 and rate[0]["verdict"] == "one run" and rate[0]["test"] == "welch-t over batch means"
    assert rate[0]["reps_a"] == "5" and float(rate[0]["mean_diff_pct"]) > 40
    assert "run-to-run noise" in (out / "compare.md").read_text()
    # 90 % of B's own closed-loop capacity was 120 req/s, not A's 100: a different load, not a slower platform
    c = with_rates("rate-c", 1.5, offered=120.0)
    code, table, _ = compare(tmp_path, a, c)
    rate = [r for r in table if r["load"] == "rate %"]
    assert code == 0 and rate[0]["verdict"] == "different load"


def test_compare_help_explains_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("RUN_A", "RUN_B", "--threshold", "--alpha", "--confidence", "--bootstrap-resamples", "--seed",
                 "--common-cells", "--out", "Exit status"):
        assert flag in text
