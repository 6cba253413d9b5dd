"""Kubeless 1.0.0-alpha.8 python function: the faithful runtime (function/) locally, the real one on the paper's
cluster. Its runtime reports function_duration_seconds and answers 408 at the function timeout."""

from analysis.bench.platforms import Kind, register

KUBELESS = register(Kind(
    name="kubeless",
    role="function",
    label="Kubeless 1.0.0-alpha.8 function",
    server_time_metric="function_duration_seconds",
    body_limit_check=True,
    warmup_env="WARMUP_CALLS",
    upstream="kubeless/kubeless v1.0.0-alpha.8 (python runtime kubeless.py)",
))
