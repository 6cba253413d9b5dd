"""`python -m image`: run the model server or show its settings.

python -m image serve                 # gunicorn with the production config (what the image's CMD runs)
python -m image settings              # every environment knob, its default and its value here

Its benchmark lives with the other measurements (image/README.md, "Tests and benchmark").
"""

from __future__ import annotations

import argparse
import os
import sys

from image import settings


def _settings() -> int:
    width = max(len(name) for name in settings.KNOBS)
    for name, (default, meaning) in settings.KNOBS.items():
        value = os.environ.get(name, "")
        print(f"{name:<{width}}  {value or '(default) ' + default}\n{'':<{width}}  {meaning}")
    print(f"\nthis machine: {settings.cpu_limit()} CPUs usable -> {settings.workers()} workers")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m image", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run gunicorn with image/gunicorn_conf.py (settings from the environment)")
    sub.add_parser("settings", help="print the environment knobs and their values")
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        gunicorn = [sys.executable, "-m", "gunicorn", "--config", "python:image.gunicorn_conf"]
        os.execv(sys.executable, [*gunicorn, *rest, "image.server:application"])  # noqa: S606 - replaces this process
    return _settings()


if __name__ == "__main__":
    sys.exit(main())
