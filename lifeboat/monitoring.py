"""Cloud Monitoring reads for the watch: the filter it sends, and figures from the replies.

Pure functions, no client: the task (tasks/metrics.py) sends, this module reads.

Two Cloud Run metrics, both DELTA on the ``cloud_run_revision`` resource
(cloud.google.com/monitoring/api/metrics_gcp_p_z, "run"):
- ``run.googleapis.com/request_count`` (INT64) by ``response_code_class``: the share of
  ``5xx`` is the error rate;
- ``run.googleapis.com/request_latencies`` (DISTRIBUTION, ms): the p95 is read from the
  distribution's buckets, whose layout each reply carries in ``bucketOptions``
  (monitoring/api/ref_v3/rest/v3/TypedValue#Distribution): linear, exponential or explicit.

A percentile from buckets is an estimate: the bucket that holds the rank is found, then
the value is interpolated linearly inside it (what Google's percentile aligners must do
too, as the raw values are gone). With Cloud Run's buckets the estimate is within the
width of one bucket of the truth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
RESOURCE_TYPE = "cloud_run_revision"
# "The value must be at least 60 seconds" (Aggregation.alignmentPeriod).
MIN_ALIGNMENT_S = 60


class ServiceMetrics(BaseModel):
    """One service's request figures over one window, as Monitoring shows them."""

    requests: int = 0
    errors: int = 0
    p95_s: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def availability(self) -> float:
        """The share of replies that are not 5xx; 1.0 with no traffic (nothing failed)."""
        return 1.0 - self.error_rate


def series_filter(metric_type: str, location: str) -> str:
    """The monitoring filter for one Cloud Run metric in one region (monitoring/api/v3/filters)."""
    return (
        f'metric.type = "{metric_type}" AND resource.type = "{RESOURCE_TYPE}" '
        f'AND resource.labels.location = "{location}"'
    )


def alignment_period(window_s: float) -> str:
    """One alignment period covering the whole window, as a protobuf Duration string."""
    return f"{max(MIN_ALIGNMENT_S, math.ceil(window_s))}s"


def _labels(series: Mapping[str, Any], kind: str) -> Mapping[str, str]:
    labels: Mapping[str, str] = series.get(kind, {}).get("labels", {})
    return labels


def request_counts(series: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """service → (requests, 5xx replies), from request_count series grouped by service
    and response_code_class; every point of a series is added (one per alignment period)."""
    out: dict[str, tuple[int, int]] = {}
    for one in series:
        service = _labels(one, "resource").get("service_name", "")
        klass = _labels(one, "metric").get("response_code_class", "")
        count = sum(int(p.get("value", {}).get("int64Value", 0)) for p in one.get("points", []))
        requests, errors = out.get(service, (0, 0))
        out[service] = (requests + count, errors + (count if klass == "5xx" else 0))
    return out


def latency_p95_ms(series: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """service → p95 in ms, from request_latencies series grouped by service (their
    distributions merged across points first)."""
    by_service: dict[str, list[Mapping[str, Any]]] = {}
    for one in series:
        service = _labels(one, "resource").get("service_name", "")
        for point in one.get("points", []):
            value = point.get("value", {}).get("distributionValue")
            if value:
                by_service.setdefault(service, []).append(value)
    return {name: percentile(merged(dists), 0.95) for name, dists in by_service.items()}


def merged(distributions: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Bucket counts of distributions that share one layout, added up."""
    layout = distributions[0].get("bucketOptions", {})
    counts: list[int] = []
    for dist in distributions:
        if dist.get("bucketOptions", {}) != layout:
            raise ValueError("distributions with different bucket layouts cannot be merged")
        for index, raw in enumerate(dist.get("bucketCounts", [])):
            if index == len(counts):
                counts.append(0)
            counts[index] += int(raw)
    return {"bucketOptions": layout, "bucketCounts": counts, "count": sum(counts)}


def bucket_bounds(options: Mapping[str, Any], index: int) -> tuple[float, float]:
    """[lower, upper) of bucket ``index``: 0 is the underflow, N+1 the overflow."""
    if "exponentialBuckets" in options:
        e = options["exponentialBuckets"]
        n, growth, scale = int(e["numFiniteBuckets"]), float(e["growthFactor"]), float(e["scale"])
        edges = [scale * growth**i for i in range(n + 1)]
    elif "linearBuckets" in options:
        lin = options["linearBuckets"]
        n, width, offset = int(lin["numFiniteBuckets"]), float(lin["width"]), float(lin["offset"])
        edges = [offset + width * i for i in range(n + 1)]
    elif "explicitBuckets" in options:
        edges = [float(b) for b in options["explicitBuckets"]["bounds"]]
    else:
        raise ValueError(f"unknown bucket options: {sorted(options)}")
    if index == 0:
        return (min(0.0, edges[0]), edges[0])
    if index >= len(edges):
        return (edges[-1], math.inf)
    return (edges[index - 1], edges[index])


def percentile(dist: Mapping[str, Any], fraction: float) -> float:
    """The ``fraction`` percentile of a distribution, interpolated inside its bucket."""
    counts = [int(c) for c in dist.get("bucketCounts", [])]
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = fraction * total
    seen = 0
    options = dist.get("bucketOptions", {})
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            lower, upper = bucket_bounds(options, index)
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return bucket_bounds(options, len(counts) - 1)[0]
