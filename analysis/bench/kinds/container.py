"""The containerized model server (image/): gunicorn, one sync worker per CPU. The baseline of every comparison."""

from analysis.bench.platforms import Kind, register

CONTAINER = register(Kind(
    name="container",
    role="baseline",
    label="container (gunicorn)",
    server_time_metric="http_request_duration_seconds",
    upstream="",
))
