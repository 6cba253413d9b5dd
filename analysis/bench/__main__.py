"""Entry point of `python -m analysis.bench`."""

import sys

from analysis.bench.cli import main

sys.exit(main())
