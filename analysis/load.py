"""Read one results folder (schema in analysis/RESULTS.md) and refuse, with a useful message, anything that
would make the report wrong: a missing or truncated file, a missing column, a value that is not a number, or two
tables that disagree about how many requests a run had.

An *incomplete* run is not an error: it is loaded, and ``Results.incomplete_reasons`` says what is missing so the
report can say so at the top instead of averaging over whatever happened to finish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.bench import schema
from analysis.bench.schema import SCHEMA_VERSION

REBUILD_HINT = "rebuild the tidy tables from raw/ with `python -m analysis.bench finalize RUN_DIR`"

# The columns the analysis reads, by kind, come from the one schema definition (analysis/bench/schema.py, each
# table's `needed`): "str" / "int" / "float" must be filled in every row; a trailing "?" allows empty cells. Other
# columns the schema lists are not needed here: their absence is a warning, not an error (SPEC_ONLY).
SPEC_ONLY: dict[str, tuple[str, ...]] = {t.file: t.spec_only for t in schema.TABLES.values()}
TABLES: dict[str, tuple[dict[str, str], bool]] = {  # file -> (columns, required)
    t.file: (t.needed, t.required) for t in schema.TABLES.values()
}
MANIFEST_KEYS = ("schema_version", "run_id", "status", "config", "platforms", "runs_planned", "runs_done")
CONFIG_KEYS = ("concurrency", "repetitions", "requests_per_run")
EXPERIMENTS = ("warmup", "concurrency", "overload", "nowarmup")  # overload, nowarmup: issue 11


# Runs recorded before platforms carried a kind, a role and `via` (results folders of 2026-11) used three fixed
# names; this is what those names meant.
LEGACY_SETTINGS: dict[str, dict[str, Any]] = {
    "function": {"role": "function", "via": None, "label": "Kubeless 1.0.0-alpha.8 function"},
    "container": {"role": "baseline", "via": None, "label": "container (gunicorn)"},
    "function_ingress": {"role": "function", "via": "function", "label": "through ingress-nginx 0.16.2"},
}


class ResultsError(Exception):
    """The folder cannot be analysed as it is; ``problems`` lists every reason found, each naming its file."""

    def __init__(self, folder: Path, problems: list[str]) -> None:
        self.folder = folder
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cannot analyse results folder {folder}:\n{lines}")


@dataclass
class Results:
    """One benchmark run, validated. Tables are pandas DataFrames with the columns of RESULTS.md; optional tables
    that were not written are empty DataFrames with those columns."""

    folder: Path
    manifest: dict[str, Any]
    runs: pd.DataFrame
    requests: pd.DataFrame
    probe: pd.DataFrame
    predictions: pd.DataFrame
    coldstart: pd.DataFrame
    resources: pd.DataFrame
    missing_tables: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    incomplete_reasons: list[str] = field(default_factory=list)
    missing_cells: list[tuple[str, int, int]] = field(default_factory=list)  # (platform, concurrency, repetition)
    failed_runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # ab runs that did not finish, set apart
    # issue 11: failed requests by layer (errors_by_layer.csv) and the oversized-body check (bodylimit.csv)
    error_layers: pd.DataFrame = field(default_factory=pd.DataFrame)
    bodylimit: pd.DataFrame = field(default_factory=pd.DataFrame)
    # issue 24: the paired step's requests (paired.csv); empty, with its columns, for runs made before it
    paired: pd.DataFrame = field(default_factory=lambda: _empty(schema.PAIRED.needed))

    @property
    def has_paired(self) -> bool:
        """Whether the run has the paired step's table (runs made before issue 24 do not)."""
        return "paired.csv" not in self.missing_tables and len(self.paired) > 0

    @property
    def complete(self) -> bool:
        return not self.incomplete_reasons

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    @property
    def platforms(self) -> list[str]:
        """Platforms in report order: the configuration's (the inventory's `platforms:` list)."""
        return list(self.manifest["platforms"])

    def platform_setting(self, name: str, key: str) -> Any:
        """A platform's setting as the run recorded it, or, for a run made before platform kinds were plug-ins,
        what that run's fixed names meant (LEGACY_SETTINGS)."""
        recorded = self.manifest["platforms"].get(name) or {}
        if key in recorded:
            return recorded[key]
        return LEGACY_SETTINGS.get(name, {}).get(key)

    def role(self, name: str) -> str:
        return self.platform_setting(name, "role") or "function"

    def via(self, name: str) -> str | None:
        return self.platform_setting(name, "via")

    def label(self, name: str) -> str:
        return self.platform_setting(name, "label") or name

    @property
    def baseline(self) -> str | None:
        """The platform every function platform is compared with (role baseline), if the run has one."""
        return next((p for p in self.platforms if self.role(p) == "baseline"), None)

    @property
    def function_platforms(self) -> list[str]:
        return [p for p in self.platforms if self.role(p) == "function"]

    @property
    def headline(self) -> str | None:
        """The paper's function: the first function platform reached directly (not via another hop)."""
        return next((p for p in self.function_platforms if self.via(p) is None), None)


def newest_results_dir(root: Path) -> Path:
    """The newest run under ``root``; run ids are UTC timestamps (20261128T120000Z), so the newest sorts last."""
    if not root.is_dir():
        raise ResultsError(root, [f"{root} does not exist: pass RESULTS_DIR, or run `ansible-playbook bench.yml` "
                                  "first (it writes results/<run_id>/)"])
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)
    if not runs:
        raise ResultsError(root, [f"{root} holds no run folders: run `ansible-playbook bench.yml` first"])
    return runs[-1]


def load_results(folder: Path | str) -> Results:
    """Read and validate ``folder``; raises ResultsError listing every problem found."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(folder, [f"{folder} is not a folder"])
    problems: list[str] = []
    warnings: list[str] = []
    manifest = _read_manifest(folder, problems)
    tables: dict[str, pd.DataFrame] = {}
    missing_tables: list[str] = []
    for name, (columns, required) in TABLES.items():
        path = folder / name
        if not path.exists():
            if required:
                problems.append(f"{name} is missing in {folder}: {REBUILD_HINT}")
            else:
                missing_tables.append(name)
            tables[name] = _empty(columns)
            continue
        before = len(problems)
        tables[name] = _read_table(path, columns, problems)
        absent = [c for c in SPEC_ONLY.get(name, ()) if c not in tables[name].columns]
        if absent and len(problems) == before:
            warnings.append(f"{name} lacks column(s) {', '.join(absent)} that analysis/RESULTS.md lists; the "
                            "analysis does not need them")
    if problems:
        raise ResultsError(folder, problems)
    assert manifest is not None  # _read_manifest reports a problem whenever it returns None
    _check_values(manifest, tables, problems, warnings)
    if problems:
        raise ResultsError(folder, problems)
    failed_runs = _set_apart_unfinished(tables)
    _check_counts(manifest, tables, problems, warnings)
    if problems:
        raise ResultsError(folder, problems)
    results = Results(
        folder=folder, manifest=manifest, runs=tables["runs.csv"], requests=tables["requests.csv"],
        probe=tables["probe.csv"], predictions=tables["predictions.csv"], coldstart=tables["coldstart.csv"],
        resources=tables["resources.csv"], missing_tables=missing_tables, warnings=warnings, failed_runs=failed_runs,
        error_layers=tables["errors_by_layer.csv"], bodylimit=tables["bodylimit.csv"], paired=tables["paired.csv"],
    )
    _check_completeness(results)
    return results


def _read_manifest(folder: Path, problems: list[str]) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    if not path.exists():
        problems.append(f"manifest.json is missing in {folder}: this is not a results folder written by bench.yml "
                        "(or the run died before writing it); pass the run folder itself, results/<run_id>/")
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        problems.append(f"manifest.json is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                        "it may have been cut off while bench.yml was writing it")
        return None
    if not isinstance(manifest, dict):
        problems.append("manifest.json must hold a JSON object")
        return None
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        problems.append(f"manifest.json lacks key(s) {', '.join(missing)} (schema version {SCHEMA_VERSION} "
                        "in analysis/RESULTS.md)")
        return None
    if manifest["schema_version"] != SCHEMA_VERSION:
        problems.append(f"manifest.json has schema_version {manifest['schema_version']!r}; this analysis reads "
                        f"version {SCHEMA_VERSION} only")
    config = manifest["config"]
    if not isinstance(config, dict) or any(k not in config for k in CONFIG_KEYS):
        problems.append(f"manifest.json: config must be an object with {', '.join(CONFIG_KEYS)}")
    if not isinstance(manifest["platforms"], dict) or not manifest["platforms"]:
        problems.append("manifest.json: platforms must be a non-empty object (e.g. function, container)")
    for key in ("runs_planned", "runs_done"):
        if not isinstance(manifest[key], int):
            problems.append(f"manifest.json: {key} must be an integer, got {manifest[key]!r}")
    return manifest


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if k == "str" else float) for c, k in columns.items()})


def _read_table(path: Path, columns: dict[str, str], problems: list[str]) -> pd.DataFrame:
    name = path.name
    if path.stat().st_size == 0:
        problems.append(f"{name} is empty (not even a header line): the run was probably interrupted; "
                        f"{REBUILD_HINT}")
        return _empty(columns)
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        if fh.read(1) != b"\n":
            problems.append(f"{name} looks truncated: its last line has no line ending, so it was cut off while "
                            f"being written; {REBUILD_HINT}")
            return _empty(columns)
    str_cols = {c: str for c, k in columns.items() if k == "str"}
    try:
        df = pd.read_csv(path, dtype=str_cols, keep_default_na=True, na_values=[""])
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{name} cannot be parsed as CSV ({exc}); {REBUILD_HINT}")
        return _empty(columns)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        problems.append(f"{name} lacks column(s) {', '.join(missing)}; schema version {SCHEMA_VERSION} expects "
                        f"{', '.join(columns)}")
        return _empty(columns)
    before = len(problems)
    for col, kind in columns.items():
        values = df[col]
        if kind in ("int", "float", "int?", "float?") and not pd.api.types.is_numeric_dtype(values):
            numeric = pd.to_numeric(values, errors="coerce")
            bad = numeric.isna() & values.notna()
            if bad.any():
                line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
                problems.append(f"{name} line {line}: column {col} holds {values[bad].iloc[0]!r}, not a number")
                continue
            df[col] = numeric
            values = df[col]
        if not kind.endswith("?"):
            empty = values.isna().to_numpy()
            if empty.any():
                line = int(np.flatnonzero(empty)[0]) + 2
                problems.append(f"{name} line {line}: column {col} is empty ({int(empty.sum())} row(s) in all); "
                                f"a row cut short means the file was truncated; {REBUILD_HINT}")
                continue
        if kind.startswith("int"):
            ints = values.to_numpy(dtype=float)
            fractional = np.mod(ints, 1) != 0  # NaN compares unequal: excluded
            fractional &= ~np.isnan(ints)
            if fractional.any():
                line = int(np.flatnonzero(fractional)[0]) + 2
                problems.append(f"{name} line {line}: column {col} must be a whole number, got {ints[line - 2]}")
                continue
            if kind == "int":
                df[col] = values.astype(np.int64)
    if len(problems) > before:
        return _empty(columns)
    return df


def _check_values(manifest: dict[str, Any], tables: dict[str, pd.DataFrame], problems: list[str],
                  warnings: list[str]) -> None:
    platforms = set(manifest["platforms"])
    for name, df in tables.items():
        if "platform" in df.columns and len(df):
            unknown = sorted(set(df["platform"].unique()) - platforms)
            if unknown:
                problems.append(f"{name}: platform(s) {', '.join(map(str, unknown))} are not in manifest.json "
                                f"platforms ({', '.join(sorted(platforms))})")
    runs = tables["runs.csv"]
    if not len(runs):
        problems.append(f"runs.csv has a header but no runs: nothing was measured; {REBUILD_HINT}")
        return
    odd = sorted(set(runs["experiment"]) - set(EXPERIMENTS))
    if odd:
        problems.append(f"runs.csv: experiment must be one of {', '.join(EXPERIMENTS)}, found {', '.join(odd)}")
    if (runs["concurrency"] < 1).any():
        problems.append("runs.csv: concurrency must be at least 1")
    dup = runs["run_key"][runs["run_key"].duplicated()]
    if len(dup):
        problems.append(f"runs.csv lists run_key {dup.iloc[0]!r} more than once")
    cells = runs[runs["experiment"] == "concurrency"][["platform", "concurrency", "repetition"]]
    dup_cells = cells[cells.duplicated()]
    if len(dup_cells):
        p, c, r = dup_cells.iloc[0]
        problems.append(f"runs.csv has two concurrency runs for platform {p}, c={c}, repetition {r}")
    over = (runs["completed"] > runs["requests"]).to_numpy()
    if over.any():
        key = runs["run_key"][over].iloc[0]
        problems.append(f"runs.csv run {key}: completed exceeds requests")
    causes = runs[list(schema.ERROR_CAUSES)].sum(axis=1)
    counted = runs["errors"].notna() & runs["completed"].notna()
    for key in runs["run_key"][(causes != runs["errors"]) & counted]:
        problems.append(f"runs.csv run {key}: errors is not the sum of its causes ({', '.join(schema.ERROR_CAUSES)})")
    for key in runs["run_key"][(runs["served"] + runs["errors"] - runs["timeout"] != runs["completed"])
                               & counted]:
        problems.append(f"runs.csv run {key}: served + errors does not account for every completed request")
    for name in ("probe.csv", "paired.csv"):  # paired.csv: issue 24
        table = tables[name]
        if len(table) and (table["response_ms"].isna() & (table["status"] == 200)).any():
            problems.append(f"{name}: a request with status 200 has no response_ms")
    paired = tables["paired.csv"]
    if len(paired) and paired.duplicated(["round", "platform"]).any():
        r = paired[paired.duplicated(["round", "platform"])].iloc[0]
        problems.append(f"paired.csv: platform {r['platform']} appears twice in round {int(r['round'])}; "
                        f"{REBUILD_HINT}")


def _set_apart_unfinished(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Take out the ab runs that did not finish normally (bench.yml's ``outcome`` column is ``aborted`` or
    ``interrupted``, or ab printed no counts at all): their statistics would describe a partial run. They are
    returned so the report can list them; their cells then count as short of a repetition."""
    runs = tables["runs.csv"]
    bad = runs["completed"].isna().to_numpy().copy()  # pandas' copy-on-write hands out read-only views
    if "outcome" in runs.columns:
        bad |= (runs["outcome"].astype(object).fillna("ok").astype(str) != "ok").to_numpy()
    if not bad.any():
        return runs.iloc[0:0]
    failed = runs[bad]
    tables["runs.csv"] = runs[~bad].reset_index(drop=True)
    for name in ("requests.csv", "predictions.csv", "resources.csv"):
        df = tables[name]
        if len(df):
            tables[name] = df[~df["run_key"].isin(failed["run_key"])].reset_index(drop=True)
    return failed


def _check_counts(manifest: dict[str, Any], tables: dict[str, pd.DataFrame], problems: list[str],
                  warnings: list[str]) -> None:
    """The tables must agree with each other: ab -g writes one row per completed request."""
    if manifest["runs_done"] > manifest["runs_planned"]:
        problems.append(f"manifest.json: runs_done ({manifest['runs_done']}) exceeds runs_planned "
                        f"({manifest['runs_planned']})")
    runs = tables["runs.csv"].set_index("run_key")
    requests = tables["requests.csv"]
    counts = requests.groupby("run_key", sort=False).size()
    strays = counts.index.difference(runs.index)
    if len(strays):
        problems.append(f"requests.csv has {int(counts[strays].sum())} row(s) for run(s) not in runs.csv "
                        f"(e.g. {strays[0]!r}); {REBUILD_HINT}")
    expected = runs["completed"]
    got = counts.reindex(expected.index, fill_value=0)
    for key in expected.index[got.to_numpy() != expected.to_numpy()]:
        problems.append(f"requests.csv has {int(got[key])} row(s) for run {key} but runs.csv says ab completed "
                        f"{int(expected[key])}; the two tables disagree, {REBUILD_HINT}")
    ident = requests.drop_duplicates(["run_key", "experiment", "platform", "concurrency", "repetition"])
    ident = ident[ident["run_key"].isin(runs.index)]
    if ident["run_key"].duplicated().any():
        key = ident["run_key"][ident["run_key"].duplicated()].iloc[0]
        problems.append(f"requests.csv: the rows of run {key} disagree about its platform/concurrency/repetition")
    else:
        ref = runs.loc[ident["run_key"], ["experiment", "platform", "concurrency", "repetition"]]
        mismatch = (ident[["experiment", "platform", "concurrency", "repetition"]].to_numpy()
                    != ref.to_numpy()).any(axis=1)
        if mismatch.any():
            key = ident["run_key"].to_numpy()[mismatch][0]
            problems.append(f"requests.csv: run {key} has a different experiment/platform/concurrency/repetition "
                            "than its row in runs.csv")
    resources = tables["resources.csv"]
    if len(resources):
        stray = sorted(set(resources["run_key"]) - set(runs.index))
        if stray:
            warnings.append(f"resources.csv has samples for run(s) not in runs.csv, e.g. {stray[0]!r}; ignored")
    if "mean_ms" not in runs.columns:
        return
    # runs.csv mean_ms (served requests) and the served rows of the per-request table must describe the same run.
    served = requests[requests["served"] == 1]
    means = served.groupby("run_key", sort=False)["total_ms"].mean().reindex(runs.index)
    off = (means - pd.to_numeric(runs["mean_ms"], errors="coerce")).abs() > 1.0
    off &= means.notna()
    for key in runs.index[off.to_numpy()]:
        warnings.append(f"runs.csv run {key}: mean_ms {runs.loc[key, 'mean_ms']:.1f} differs from the mean of its "
                        f"rows in requests.csv ({means[key]:.1f}); the report uses requests.csv")


def _check_completeness(results: Results) -> None:
    m, cfg = results.manifest, results.config
    reasons = results.incomplete_reasons
    if m["status"] != "complete":
        reasons.append(f"manifest.json status is {m['status']!r}, not 'complete'")
    elif not m.get("finished_utc"):
        results.warnings.append("manifest.json says complete but has no finished_utc")
    if m["runs_done"] < m["runs_planned"]:
        reasons.append(f"manifest.json: {m['runs_done']} of {m['runs_planned']} planned runs done")
    runs = results.runs[results.runs["experiment"] == "concurrency"]
    have = set(zip(runs["platform"], runs["concurrency"], runs["repetition"], strict=True))
    described = m.get("platforms") or {}
    for platform in results.platforms:
        bound = (described.get(platform) or {}).get("max_concurrency") if isinstance(described, dict) else None
        for c in cfg["concurrency"]:
            if bound is not None and int(c) > int(bound):
                continue  # the plan leaves a bounded platform's higher levels out (PlatformConfig.max_concurrency)
            for r in range(1, int(cfg["repetitions"]) + 1):
                if (platform, int(c), r) not in have:
                    results.missing_cells.append((platform, int(c), r))
    if results.missing_cells:
        cells = ", ".join(f"{p} c={c} r{r}" for p, c, r in results.missing_cells[:8])
        more = len(results.missing_cells) - 8
        reasons.append(f"{len(results.missing_cells)} planned concurrency run(s) missing: {cells}"
                       + (f" and {more} more" if more > 0 else ""))
    failed = results.failed_runs
    for row in failed.itertuples(index=False):
        outcome = getattr(row, "outcome", None)
        error = getattr(row, "error", None)
        how = outcome if isinstance(outcome, str) and outcome != "ok" else "gave no counts"
        why = f": {error}" if isinstance(error, str) and error else ""
        text = f"ab run {row.run_key} {how}{why}; it is left out of every statistic"
        if row.experiment in ("warmup", "overload", "nowarmup"):  # overload/nowarmup: a finding (issue 11)
            results.warnings.append(text)
        else:
            reasons.append(text)
    short = runs[runs["completed"] < runs["requests"]]
    if len(short):
        results.warnings.append(f"{len(short)} concurrency run(s) completed fewer requests than asked "
                                f"(e.g. {short['run_key'].iloc[0]}): ab gave up or timed out")
    if cfg.get("paired_requests") and "paired.csv" not in results.missing_tables and not len(results.paired):
        reasons.append(f"paired.csv has no rows although the run planned {cfg['paired_requests']} paired rounds")
    for name, column, want in (("probe.csv", "platform", cfg.get("probe_requests", 0)),
                               ("coldstart.csv", "platform", cfg.get("coldstart_repetitions", 0))):
        if not want:
            continue
        df = results.probe if name == "probe.csv" else results.coldstart
        counts = df.groupby(column).size() if len(df) else pd.Series(dtype=int)
        for platform in results.platforms:
            got = int(counts.get(platform, 0))
            planned = want * (_restart_kinds(results.manifest["platforms"][platform]) if name == "coldstart.csv" else 1)
            if got < planned:
                reasons.append(f"{name}: {got} of {planned} planned row(s) for {platform}")


def _restart_kinds(platform: Any) -> int:
    """How many cold-start kinds the plan gave a platform: none for `restart: none` (e.g. the function through
    the local ingress, whose container the direct path already restarts), one per listed kubectl kind."""
    restart = platform.get("restart", "docker") if isinstance(platform, dict) else "docker"
    if isinstance(restart, list | tuple):
        return len([r for r in restart if r != "none"])
    return 0 if restart in ("none", "", None) else 1
