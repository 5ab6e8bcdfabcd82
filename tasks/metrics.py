"""Request metrics per service from Cloud Monitoring: request count, 5xx and p95 latency.

The watch reads Cloud Run's own metrics through Monitoring v3 ``projects.timeSeries.list``
(monitoring/api/ref_v3/rest/v3/projects.timeSeries/list), one call per metric and window,
aligned over the whole window (ALIGN_DELTA) and summed per service (REDUCE_SUM grouped by
``service_name``, and by ``response_code_class`` for the count). lifeboat/monitoring.py
builds the filter and reads the figures.

Monitoring shows a sample up to about three minutes after Cloud Run took it
(monitoring/api/v3/latency-n-retention): a window's last minutes are always missing, so
a sample that just crossed a threshold shows on a later run, not at once.

Failed health checks do not come from here: Cloud Run's request metrics carry no path
label, so they cannot say which check failed, and Monitoring's uptime checks would have
to be created in the user's project first (Lifeboat writes nothing outside its flows).
The watch probes the topology's checks itself (tasks/health.py ``health_count_failures``).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

from lifeboat import monitoring, runtime
from lifeboat.monitoring import ServiceMetrics
from lifeboat.topology import Topology
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task

__all__ = ["ServiceMetrics", "list_series", "metrics_sample_services"]


def _project_of(topo: Topology, region: str) -> str:
    for candidate in (topo.regions.primary, topo.regions.secondary):
        if candidate.name == region:
            return candidate.project
    raise PermanentError(f"metrics: {region} is neither region of {topo.environment}")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def list_series(
    environment: str,
    project: str,
    metric_type: str,
    location: str,
    window_s: float,
    group_by: list[str],
) -> list[dict[str, Any]]:
    """Every series of one metric in one region over the last ``window_s``, all pages."""
    api = runtime.clients(environment).monitoring
    end = datetime.now(UTC)
    params: dict[str, Any] = {
        "name": f"projects/{project}",
        "filter": monitoring.series_filter(metric_type, location),
        "interval_startTime": _rfc3339(end - timedelta(seconds=window_s)),
        "interval_endTime": _rfc3339(end),
        "aggregation_alignmentPeriod": monitoring.alignment_period(window_s),
        "aggregation_perSeriesAligner": "ALIGN_DELTA",
        "aggregation_crossSeriesReducer": "REDUCE_SUM",
        "aggregation_groupByFields": group_by,
    }
    series: list[dict[str, Any]] = []
    while True:
        page = api.call(
            functools.partial(_list_request, params=dict(params)),
            runtime.call_timeout(environment),
        )
        series.extend(page.get("timeSeries", []))
        if not page.get("nextPageToken"):
            return series
        params["pageToken"] = page["nextPageToken"]


def _list_request(service: Any, params: dict[str, Any]) -> Any:
    return service.projects().timeSeries().list(**params)


@cloud_task(timeout_seconds=60, retries=3, task_run_name="metrics-{region}-{window_s}s")
def metrics_sample_services(
    environment: str, region: str, window_s: float
) -> dict[str, ServiceMetrics]:
    """Per-service request metrics of one region over the last ``window_s`` seconds.

    Args:
        environment: the topology to use.
        region: the region whose Cloud Run services are sampled, e.g. ``us-east1``.
        window_s: how far back to look.

    Returns:
        Service name → its metrics; a service with no traffic Monitoring shows is absent.

    Idempotent: a read.
    """
    topo = runtime.topology(environment)
    project = _project_of(topo, region)
    with calling("list-time-series", f"request_count {region} {window_s:.0f}s"):
        counts = monitoring.request_counts(
            list_series(
                environment,
                project,
                monitoring.REQUEST_COUNT,
                region,
                window_s,
                ["resource.label.service_name", "metric.label.response_code_class"],
            )
        )
    with calling("list-time-series", f"request_latencies {region} {window_s:.0f}s"):
        p95 = monitoring.latency_p95_ms(
            list_series(
                environment,
                project,
                monitoring.REQUEST_LATENCIES,
                region,
                window_s,
                ["resource.label.service_name"],
            )
        )
    return {
        name: ServiceMetrics(requests=requests, errors=errors, p95_s=p95.get(name, 0.0) / 1000.0)
        for name, (requests, errors) in counts.items()
    }
