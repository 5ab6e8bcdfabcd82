"""Contract tests: Google's Monitoring v3 REST client against the lab's timeSeries.list.

google-cloud-monitoring generates gRPC transports only, so the REST client here is the
discovery client of google-api-python-client, the one the product uses
(lifeboat/discovery_api.py). Samples are placed in the lab's store by hand, at known
times, so every figure is known; tests/flows/test_watch.py drives real traffic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httplib2
import httpx
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from lab import monitoring
from lab.core.context import LabContext
from lab.monitoring.models import INGESTION_DELAY_S, SAMPLE_PERIOD_S
from lab.regions.metrics import RequestMetrics, Sample
from lifeboat.monitoring import (
    REQUEST_COUNT,
    REQUEST_LATENCIES,
    latency_p95_ms,
    request_counts,
    series_filter,
)

PROJECT = "ml-datadriven-recos"
PRIMARY, SECONDARY = "us-central1", "us-east1"


@pytest.fixture
def store(lab_ctx: LabContext) -> RequestMetrics:
    return lab_ctx.backends.setdefault("metrics", RequestMetrics())


@pytest.fixture
def url(lab_ctx: LabContext, serve: Callable[..., str], store: RequestMetrics) -> str:
    _, app = monitoring.create(lab_ctx)
    return serve(app, "monitoring")


@pytest.fixture
def client(url: str) -> Any:
    return build(
        "monitoring",
        "v3",
        http=httplib2.Http(timeout=10),
        static_discovery=True,
        client_options={"api_endpoint": url},
        cache_discovery=False,
    )


def settled(lab_ctx: LabContext) -> float:
    """A wall time whose sample period has ended and passed Monitoring's delay."""
    scale = lab_ctx.latency.time_scale
    return time.time() - (SAMPLE_PERIOD_S + INGESTION_DELAY_S) * scale * 2


def add(
    store: RequestMetrics,
    at: float,
    service: str,
    status: int,
    n: int,
    *,
    region: str = PRIMARY,
    seconds: float = 0.001,
) -> None:
    for _ in range(n):
        store.add(
            Sample(at, region, service, f"/{service}", status, seconds, PROJECT, f"{service}-1")
        )


def window(minutes: float = 15) -> dict[str, str]:
    end = datetime.now(UTC)
    return {
        "interval_startTime": (end - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
        "interval_endTime": end.isoformat().replace("+00:00", "Z"),
    }


def list_all(client: Any, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every series, following nextPageToken; and how many pages it took."""
    series: list[dict[str, Any]] = []
    pages = 0
    token = None
    while True:
        extra = {"pageToken": token} if token else {}
        reply = (
            client.projects()
            .timeSeries()
            .list(name=f"projects/{PROJECT}", **params, **extra)
            .execute(num_retries=0)
        )
        pages += 1
        series += reply.get("timeSeries", [])
        token = reply.get("nextPageToken")
        if not token:
            return series, pages


def summed(metric: str, location: str, group_by: list[str]) -> dict[str, Any]:
    return {
        "filter": series_filter(metric, location),
        **window(),
        "aggregation_alignmentPeriod": "900s",
        "aggregation_perSeriesAligner": "ALIGN_DELTA",
        "aggregation_crossSeriesReducer": "REDUCE_SUM",
        "aggregation_groupByFields": group_by,
    }


def test_request_count_by_class_per_service_in_one_region(
    client: Any, store: RequestMetrics, lab_ctx: LabContext
) -> None:
    at = settled(lab_ctx)
    add(store, at, "auth-service", 200, 17)
    add(store, at, "auth-service", 500, 3)
    add(store, at, "auth-service", 503, 2)
    add(store, at, "ai-service", 200, 5)
    add(store, at, "auth-service", 500, 40, region=SECONDARY)  # another region: not counted

    series, pages = list_all(
        client,
        **summed(
            REQUEST_COUNT,
            PRIMARY,
            ["resource.label.service_name", "metric.label.response_code_class"],
        ),
    )

    assert pages == 2  # three series, two a page: the client must follow nextPageToken
    assert request_counts(series) == {"auth-service": (22, 5), "ai-service": (5, 0)}
    [five] = [s for s in series if s["metric"]["labels"]["response_code_class"] == "5xx"]
    assert five["resource"] == {
        "type": "cloud_run_revision",
        "labels": {"service_name": "auth-service"},
    }
    assert (five["metricKind"], five["valueType"]) == ("DELTA", "INT64")
    [point] = five["points"]
    assert point["value"] == {"int64Value": "5"}


def test_raw_series_carry_cloud_runs_labels_and_page(
    client: Any, store: RequestMetrics, lab_ctx: LabContext
) -> None:
    at = settled(lab_ctx)
    for code in (200, 404, 500):
        add(store, at, "auth-service", code, 1)
    first = (
        client.projects()
        .timeSeries()
        .list(
            name=f"projects/{PROJECT}",
            filter=series_filter(REQUEST_COUNT, PRIMARY),
            pageSize=1,
            **window(),
        )
        .execute()
    )
    assert len(first["timeSeries"]) == 1 and first["nextPageToken"]
    series, _ = list_all(client, filter=series_filter(REQUEST_COUNT, PRIMARY), **window())
    assert sorted(s["metric"]["labels"]["response_code"] for s in series) == ["200", "404", "500"]
    assert series[0]["resource"]["labels"] == {
        "project_id": PROJECT,
        "service_name": "auth-service",
        "revision_name": "auth-service-1",
        "location": PRIMARY,
        "configuration_name": "auth-service",
    }
    assert series[0]["metric"]["labels"]["response_code_class"] in {"2xx", "4xx", "5xx"}


def test_a_fresh_sample_shows_only_after_monitorings_delay(
    client: Any, store: RequestMetrics, lab_ctx: LabContext
) -> None:
    add(store, time.time(), "auth-service", 500, 4)
    params = summed(REQUEST_COUNT, PRIMARY, ["resource.label.service_name"])
    assert list_all(client, **params)[0] == []  # sampled, not yet visible

    scale = lab_ctx.latency.time_scale
    time.sleep((SAMPLE_PERIOD_S + INGESTION_DELAY_S) * scale + 0.05)
    series, _ = list_all(client, **summed(REQUEST_COUNT, PRIMARY, ["resource.label.service_name"]))
    assert request_counts(series) == {"auth-service": (4, 0)}


def test_latency_distribution_and_the_percentile_aligner_agree(
    client: Any, store: RequestMetrics, lab_ctx: LabContext
) -> None:
    scale = lab_ctx.latency.time_scale
    at = settled(lab_ctx)
    # 90 fast replies (50 ms of lab time) and 10 slow ones (8 s): the p95 is slow.
    add(store, at, "ai-service", 200, 90, seconds=0.050 * scale)
    add(store, at, "ai-service", 200, 10, seconds=8.0 * scale)

    merged, _ = list_all(
        client, **summed(REQUEST_LATENCIES, PRIMARY, ["resource.label.service_name"])
    )
    [one] = merged
    assert (one["valueType"], one["metricKind"]) == ("DISTRIBUTION", "DELTA")
    dist = one["points"][0]["value"]["distributionValue"]
    assert dist["count"] == "100"
    assert dist["bucketOptions"]["exponentialBuckets"]["growthFactor"] > 1
    assert abs(dist["mean"] - (90 * 50 + 10 * 8000) / 100) < 1

    aligned, _ = list_all(
        client,
        filter=series_filter(REQUEST_LATENCIES, PRIMARY),
        **window(),
        aggregation_alignmentPeriod="900s",
        aggregation_perSeriesAligner="ALIGN_PERCENTILE_95",
    )
    [p95] = aligned
    assert p95["valueType"] == "DOUBLE"
    from_aligner = p95["points"][0]["value"]["doubleValue"]
    from_buckets = latency_p95_ms(merged)["ai-service"]
    assert 5000 < from_aligner < 12000
    assert abs(from_aligner - from_buckets) < 1e-6 * from_aligner


def test_the_headers_view_has_no_points(
    client: Any, store: RequestMetrics, lab_ctx: LabContext
) -> None:
    add(store, settled(lab_ctx), "auth-service", 200, 2)
    series, _ = list_all(
        client, filter=series_filter(REQUEST_COUNT, PRIMARY), view="HEADERS", **window()
    )
    assert series and all("points" not in s for s in series)


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        ({"filter": 'resource.type = "cloud_run_revision"'}, 400, "metric type"),
        (
            {"filter": f'metric.type = "{REQUEST_COUNT}" OR metric.type = "{REQUEST_LATENCIES}"'},
            400,
            "filter",
        ),
        ({"filter": "metric.type = run.googleapis.com/request_count"}, 400, "parse"),
        ({"filter": 'metric.type = "run.googleapis.com/no_such_metric"'}, 404, "Cannot find"),
        (
            {
                "filter": f'metric.type = "{REQUEST_COUNT}"',
                "aggregation_perSeriesAligner": "ALIGN_DELTA",
                "aggregation_alignmentPeriod": "30s",
            },
            400,
            "60 seconds",
        ),
        (
            {
                "filter": f'metric.type = "{REQUEST_COUNT}"',
                "aggregation_perSeriesAligner": "ALIGN_DELTA",
            },
            400,
            "alignment period",
        ),
        (
            {
                "filter": f'metric.type = "{REQUEST_COUNT}"',
                "aggregation_crossSeriesReducer": "REDUCE_SUM",
            },
            400,
            "aligner",
        ),
        (
            {
                "filter": f'metric.type = "{REQUEST_COUNT}"',
                "aggregation_perSeriesAligner": "ALIGN_PERCENTILE_95",
                "aggregation_alignmentPeriod": "60s",
            },
            400,
            "INT64",
        ),
    ],
)
def test_requests_google_refuses_are_refused(
    client: Any, params: dict[str, Any], code: int, words: str
) -> None:
    with pytest.raises(HttpError) as caught:
        client.projects().timeSeries().list(
            name=f"projects/{PROJECT}", **window(), **params
        ).execute(num_retries=0)
    assert caught.value.resp.status == code
    assert words in str(caught.value)


def test_a_missing_end_time_is_refused(client: Any) -> None:
    with pytest.raises(HttpError) as caught:
        client.projects().timeSeries().list(
            name=f"projects/{PROJECT}", filter=series_filter(REQUEST_COUNT, PRIMARY)
        ).execute(num_retries=0)
    assert caught.value.resp.status == 400
    assert "interval.endTime is required" in str(caught.value)


def test_enums_sent_as_numbers_are_read_as_googles_proto_clients_send_them(
    url: str, store: RequestMetrics, lab_ctx: LabContext
) -> None:
    add(store, settled(lab_ctx), "auth-service", 500, 3)
    reply = httpx.get(
        f"{url}/v3/projects/{PROJECT}/timeSeries",
        params={
            "$alt": "json;enum-encoding=int",
            "filter": series_filter(REQUEST_COUNT, PRIMARY),
            **{k.replace("_", "."): v for k, v in window().items()},
            "aggregation.alignmentPeriod": "900s",
            "aggregation.perSeriesAligner": "1",  # ALIGN_DELTA
            "aggregation.crossSeriesReducer": "4",  # REDUCE_SUM
        },
    )
    assert reply.status_code == 200, reply.text
    [series] = reply.json()["timeSeries"]
    assert series["points"][0]["value"] == {"int64Value": "3"}


def test_an_error_has_monitorings_one_platform_shape(url: str) -> None:
    reply = httpx.get(
        f"{url}/v3/projects/{PROJECT}/timeSeries",
        params={"filter": "nonsense", "interval.endTime": "2026-01-01T00:00:00Z"},
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "errors" not in reply.json()["error"]
