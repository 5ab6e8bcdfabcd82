"""Reading Cloud Monitoring's replies: counts by class, p95 from buckets, the serving region."""

from __future__ import annotations

import math
from typing import Any

import pytest

from flows.watch import serving_role
from lab.monitoring import distribution as lab_distribution
from lab.monitoring.query import ALIGNERS, REDUCERS, VIEWS
from lifeboat.monitoring import (
    alignment_period,
    bucket_bounds,
    latency_p95_ms,
    merged,
    percentile,
    request_counts,
    series_filter,
)
from lifeboat.topology import RegionRole, load_topology
from tasks.errors import PermanentError

EXPONENTIAL = {"exponentialBuckets": {"numFiniteBuckets": 4, "growthFactor": 2, "scale": 100}}
LINEAR = {"linearBuckets": {"numFiniteBuckets": 3, "width": 10, "offset": 0}}
EXPLICIT = {"explicitBuckets": {"bounds": [1, 5, 10]}}


def count_series(service: str, klass: str, *counts: int) -> dict[str, Any]:
    return {
        "metric": {"labels": {"response_code_class": klass}},
        "resource": {"labels": {"service_name": service}},
        "points": [{"value": {"int64Value": str(c)}} for c in counts],
    }


def latency_series(service: str, options: dict[str, Any], *counts: list[int]) -> dict[str, Any]:
    return {
        "resource": {"labels": {"service_name": service}},
        "points": [
            {
                "value": {
                    "distributionValue": {
                        "count": str(sum(c)),
                        "bucketOptions": options,
                        "bucketCounts": [str(n) for n in c],
                    }
                }
            }
            for c in counts
        ],
    }


def test_the_error_rate_is_the_share_of_5xx_across_classes_and_points() -> None:
    series = [
        count_series("auth-service", "2xx", 60, 30),
        count_series("auth-service", "5xx", 7, 3),
        count_series("auth-service", "4xx", 5),
        count_series("ai-service", "2xx", 12),
    ]
    assert request_counts(series) == {"auth-service": (105, 10), "ai-service": (12, 0)}


def test_bucket_edges_of_each_layout() -> None:
    assert bucket_bounds(EXPONENTIAL, 0) == (0.0, 100.0)  # underflow
    assert bucket_bounds(EXPONENTIAL, 1) == (100.0, 200.0)
    assert bucket_bounds(EXPONENTIAL, 4) == (800.0, 1600.0)
    assert bucket_bounds(EXPONENTIAL, 5) == (1600.0, math.inf)  # overflow
    assert bucket_bounds(LINEAR, 2) == (10.0, 20.0)
    assert bucket_bounds(EXPLICIT, 3) == (10.0, math.inf)
    with pytest.raises(ValueError, match="unknown bucket options"):
        bucket_bounds({"customBuckets": {}}, 1)


def test_p95_is_interpolated_inside_the_bucket_that_holds_the_rank() -> None:
    # 100 values: 90 in [100, 200), 10 in [400, 800): rank 95 is the 5th of the 10.
    dist = {"bucketOptions": EXPONENTIAL, "bucketCounts": ["0", "90", "0", "10"]}
    assert percentile(dist, 0.95) == pytest.approx(400 + 400 * 5 / 10)
    assert percentile(dist, 0.50) == pytest.approx(100 + 100 * 50 / 90)
    # A rank in the overflow bucket has no upper edge: its lower edge is the answer.
    assert percentile({"bucketOptions": EXPONENTIAL, "bucketCounts": [0, 0, 0, 0, 0, 3]}, 0.95) == (
        1600.0
    )
    assert percentile({"bucketOptions": EXPONENTIAL, "bucketCounts": []}, 0.95) == 0.0


def test_p95_per_service_merges_every_point_first() -> None:
    series = [latency_series("ai-service", LINEAR, [0, 10], [0, 0, 0, 10])]
    # Merged: 10 in [0, 10), 10 in [20, 30): rank 19 is the 9th of the upper 10.
    assert latency_p95_ms(series) == {"ai-service": pytest.approx(20 + 10 * 9 / 10)}


def test_distributions_of_different_layouts_are_not_merged() -> None:
    with pytest.raises(ValueError, match="different bucket layouts"):
        merged(
            [
                {"bucketOptions": LINEAR, "bucketCounts": [1]},
                {"bucketOptions": EXPLICIT, "bucketCounts": [1]},
            ]
        )


def test_the_product_and_the_lab_read_the_same_p95_from_the_labs_buckets() -> None:
    values = [50.0] * 90 + [8000.0] * 10
    dist = lab_distribution.distribution(values)
    assert percentile(dist, 0.95) == pytest.approx(lab_distribution.percentile(values, 0.95))


def test_filter_and_alignment_period_are_googles() -> None:
    assert series_filter("run.googleapis.com/request_count", "us-east1") == (
        'metric.type = "run.googleapis.com/request_count" AND resource.type = '
        '"cloud_run_revision" AND resource.labels.location = "us-east1"'
    )
    assert alignment_period(600) == "600s"
    assert alignment_period(20) == "60s"  # Google's minimum
    assert alignment_period(300.5) == "301s"


def test_the_labs_enum_numbers_are_the_protos() -> None:
    from google.cloud import monitoring_v3

    aligners = {a.name: a.value for a in monitoring_v3.Aggregation.Aligner}
    reducers = {r.name: r.value for r in monitoring_v3.Aggregation.Reducer}
    views = {v.name: v.value for v in monitoring_v3.ListTimeSeriesRequest.TimeSeriesView}
    assert (aligners, reducers, views) == (ALIGNERS, REDUCERS, VIEWS)


def test_the_serving_region_is_the_one_every_record_points_at() -> None:
    topo = load_topology("lab")
    [record] = topo.dns.records
    primary, secondary = record.rrdatas[RegionRole.primary], record.rrdatas[RegionRole.secondary]
    assert serving_role(topo, {record.name: primary}) is RegionRole.primary
    assert serving_role(topo, {record.name: list(reversed(secondary))}) is RegionRole.secondary
    with pytest.raises(PermanentError, match="neither region"):
        serving_role(topo, {record.name: ["192.0.2.1"]})
    with pytest.raises(PermanentError, match="missing"):
        serving_role(topo, {})
