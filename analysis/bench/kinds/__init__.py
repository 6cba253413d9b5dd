"""One module per platform kind; each registers a `analysis.bench.platforms.Kind`. See analysis/bench/platforms.py."""
