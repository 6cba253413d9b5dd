"""Prometheus metrics of the model server, correct across gunicorn's worker processes.

Each gunicorn worker is its own process, so plain in-memory metrics would show one random worker per
scrape. prometheus_client's multiprocess mode keeps each worker's values in files under
PROMETHEUS_MULTIPROC_DIR and sums them at scrape time. That variable must be set before this module is
imported; `image.gunicorn_conf` does it in the master, so every worker inherits it. Without it (the app
run in a single process) the default in-memory registry is used.

Only `POST /predict` requests are counted in the http_* metrics: probes and scrapes would otherwise
pollute the server-side request time the benchmark reads (`http_request_duration_seconds`).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Predictions take milliseconds: the default buckets (5 ms .. 10 s) would put them all in one or two.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from receiving a POST /predict request to having its response, by HTTP status.",
    ["status"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS = Counter("http_requests", "POST /predict requests answered, by HTTP status.", ["status"])
IN_FLIGHT = Gauge(
    "http_requests_in_flight",
    "POST /predict requests being processed now, summed over live workers.",
    multiprocess_mode="livesum",
)
PREDICTION_DURATION = Histogram(
    "model_prediction_duration_seconds",
    "Decode + preprocess + model time of one image (the core's prediction_ms), by backend.",
    ["backend"],
    buckets=LATENCY_BUCKETS,
)
READY_WORKERS = Gauge(
    "model_ready_workers",
    "Workers that have loaded the model and run their warm-up predictions.",
    multiprocess_mode="livesum",
)
LOAD_SECONDS = Gauge(
    "model_load_seconds",
    "Seconds a live worker took to import the backend, load the model and warm it up.",
    multiprocess_mode="liveall",
)


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type, aggregated over all workers in multiprocess mode."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
