"""The results schema is defined once (analysis/bench/schema.py): the writer and the loader take their columns
from it, and analysis/RESULTS.md must document exactly those columns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis import load
from analysis.bench import schema, tidy

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = (REPO / "analysis" / "RESULTS.md").read_text(encoding="utf-8")


def _section(file: str) -> str:
    match = re.search(rf"^## {re.escape(file)}\b.*?(?=^## |\Z)", RESULTS_MD, re.MULTILINE | re.DOTALL)
    assert match, f"RESULTS.md has no section for {file}"
    return match.group(0)


@pytest.mark.parametrize("table", list(schema.TABLES.values()), ids=list(schema.TABLES))
def test_results_md_documents_every_column(table: schema.Table) -> None:
    text = _section(table.file)
    words = set(re.findall(r"[a-z][a-z0-9_]*", text))
    missing = [c for c in table.names if c not in words]
    assert not missing, f"RESULTS.md's {table.file} section does not name {missing}"


def test_results_md_names_no_column_the_schema_lacks() -> None:
    text = _section("runs.csv")
    documented = set(re.findall(r"^\| ([a-z0-9_, ]+) \|", text, re.MULTILINE))
    names = {n.strip() for row in documented for n in row.split(",")} - {"column"}
    assert names == set(schema.RUNS.names)


def test_one_schema_version_and_one_column_list() -> None:
    assert f"schema version {schema.SCHEMA_VERSION})" in RESULTS_MD
    sources = [p for p in (REPO / "analysis").rglob("*.py") if "SCHEMA_VERSION =" in p.read_text()]
    assert [p.relative_to(REPO).as_posix() for p in sources] == ["analysis/bench/schema.py"]
    assert tidy.RUNS_COLUMNS == schema.RUNS.names and tidy.REQUESTS_COLUMNS == schema.REQUESTS.names
    for file, (columns, _required) in load.TABLES.items():
        assert set(columns) <= set(schema.TABLES[file].names)


def test_error_causes_are_runs_columns() -> None:
    assert set(schema.ERROR_CAUSES) <= set(schema.RUNS.names)


@pytest.mark.parametrize("pct, n", [(50, 11), (90, 64), (95, 130), (99, 662), (99.9, 6636)])
def test_samples_needed_follows_the_loadgen_rule(pct: float, n: int) -> None:
    # MLPerf LoadGen publishes 64 queries for a p90 and 662 for a p99; the others are the same rule worked by hand:
    # the smallest n with P(Binomial(n, tail) <= 1) <= 1 % (p50: 12/2^11 = 0.59 % at n = 11, 11/2^10 = 1.07 % at 10)
    assert schema.samples_needed(pct) == n
