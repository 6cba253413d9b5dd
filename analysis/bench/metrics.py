"""The services' Prometheus /metrics: scrape before and after a run, and the server-side mean from the delta.

Both services expose a latency histogram (Kubeless: `function_duration_seconds`, which includes the
runtime's fork; the container app: its own request histogram). (sum_after - sum_before) /
(count_after - count_before) is the mean server-side time of the requests served between the scrapes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from analysis.bench.client import request

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def scrape(url: str, timeout: float) -> tuple[str | None, str | None]:
    """(text, None) on HTTP 200, else (None, reason)."""
    resp = request("GET", url, timeout=timeout)
    if resp.status == 200:
        return resp.body.decode("utf-8", "replace"), None
    if resp.status is None:
        return None, f"GET {url}: {resp.error}"
    return None, f"GET {url}: HTTP {resp.status}"


def parse(text: str) -> list[Sample]:
    """Samples of the Prometheus text format (comments and malformed lines are skipped)."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(match.group("labels") or ""))
        samples.append(Sample(match.group("name"), labels, value))
    return samples


def _about_metrics_endpoint(labels: dict[str, str]) -> bool:
    """Series that time the /metrics endpoint itself must not dilute the mean."""
    return any(v.rstrip("/").endswith("/metrics") or v == "metrics" for v in labels.values())


def histogram_totals(text: str, metric: str) -> tuple[float, float] | None:
    """(sum in the metric's unit, count) over all series of `metric`; None when the metric is absent."""
    total = count = 0.0
    found = False
    for sample in parse(text):
        if _about_metrics_endpoint(sample.labels):
            continue
        if sample.name == f"{metric}_sum":
            total += sample.value
            found = True
        elif sample.name == f"{metric}_count":
            count += sample.value
    return (total, count) if found else None


def server_mean_ms(before: Path, after: Path, metric: str | None) -> float | None:
    """Mean server time (ms) of the requests between the two scrapes; None if it cannot be known.

    The metric is taken to be in seconds, as Prometheus names ending `_seconds` are; other names are assumed
    to be milliseconds already.
    """
    if not metric or not before.exists() or not after.exists():
        return None
    a = histogram_totals(before.read_text(encoding="utf-8", errors="replace"), metric)
    b = histogram_totals(after.read_text(encoding="utf-8", errors="replace"), metric)
    if a is None or b is None:
        return None
    d_sum, d_count = b[0] - a[0], b[1] - a[1]
    if d_count <= 0 or d_sum < 0 or math.isnan(d_sum):
        return None  # nothing served, or the service restarted between the scrapes (counters reset)
    scale = 1000.0 if metric.endswith("_seconds") else 1.0
    return d_sum / d_count * scale
