"""The benchmark driver: `python -m analysis.bench SUBCOMMAND` — what bench.yml runs, one step at a time.

It records, it does not summarise: every step leaves the tools' own output under `RUN_DIR/raw/<run_key>/`
and writes `done.json` there last, so an interrupted benchmark resumes by skipping the steps that have
one. `finalize` rebuilds the tidy CSVs from `raw/`. The folder layout is specified in analysis/RESULTS.md.

Modules: schema (the results folder's files and columns: the one definition), platforms and kinds/
(the platform kinds, one module each: the plug-in registry), config (knobs and platforms, the plan),
manifest (the run folder, versions, host facts), client (HTTP over TCP and the Docker socket), metrics
(Prometheus /metrics), logs (the serving container's stdout), resources (CPU/memory sampling), runner (the
steps), tidy (the CSVs), cli (argparse).
"""

from analysis.bench.schema import SCHEMA_VERSION  # re-exported: defined once, in schema.py

__all__ = ["SCHEMA_VERSION"]
