"""The argparse pieces shared by the subcommands that work on a run folder (cli.py, rate.py).

Each such subcommand takes the folder made by `init` as its first argument and prints one line per step it ran;
declaring that once keeps the RUN_DIR help and the step commands' output the same everywhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

Command = Callable[[argparse.Namespace], int]


def run_dir_parser(sub: Any, name: str, func: Command, **kwargs: Any) -> argparse.ArgumentParser:
    """The subcommand `name RUN_DIR ...` that calls `func(args)`; `kwargs` go to add_parser (help, description)."""
    p = sub.add_parser(name, **kwargs)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder made by init")
    p.set_defaults(func=func)
    return p


def print_step(result: Any) -> int:
    """Print a step's progress line (a runner.StepResult) as it happens; a step that ran is a success (0)."""
    print(result.line, flush=True)
    return 0
