"""Cloud Monitoring's time series of Cloud Run, made from the region apps' real traffic.

Every reply a region app sends is one sample (lab/regions/metrics.py). This backend turns
the samples into the two Cloud Run metrics the watch reads, as Google documents them
(cloud.google.com/monitoring/api/metrics_gcp_p_z, "run"):

- ``run.googleapis.com/request_count``: DELTA, INT64, unit 1, labels ``response_code``
  and ``response_code_class``;
- ``run.googleapis.com/request_latencies``: DELTA, DISTRIBUTION, unit ms, same labels;

on the monitored resource ``cloud_run_revision`` (labels project_id, service_name,
revision_name, location, configuration_name).

Google samples them every 60 s, and a sample "is not visible for up to 180 seconds"
(the metrics list; monitoring/api/v3/latency-n-retention). The lab cuts its samples into
60-second periods and shows a period only once it has ended and 180 s more have passed:
the worst case, every time, so a test that forgets the delay fails every time too.

Time: the lab's past runs ``time_scale`` times faster than the world it models. A wire
time D seconds before the request's arrival is D * time_scale wall seconds before it, so a
15-minute window at time_scale 0.01 covers the last 9 wall seconds, and a reply that took
0.06 wall seconds counts as 6000 ms. Periods and the delay scale alike.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lab.core.context import LabContext
from lab.core.errors import BadRequest
from lab.core.paging import paginate
from lab.monitoring.distribution import distribution, percentile
from lab.monitoring.exceptions import InvalidArgument, MetricNotFound
from lab.monitoring.query import Query
from lab.regions.metrics import Sample

RESOURCE_TYPE = "cloud_run_revision"
SAMPLE_PERIOD_S = 60.0
INGESTION_DELAY_S = 180.0
# "If page_size is empty or more than 100,000 results, the effective page_size is 100,000"
# (ListTimeSeriesRequest.page_size); the lab's page_cap then makes every list page.
DEFAULT_PAGE = 100_000


@dataclass(frozen=True)
class MetricSpec:
    type: str
    value_type: str  # INT64 or DISTRIBUTION
    unit: str


METRICS = {
    spec.type: spec
    for spec in (
        MetricSpec("run.googleapis.com/request_count", "INT64", "1"),
        MetricSpec("run.googleapis.com/request_latencies", "DISTRIBUTION", "ms"),
    )
}

Labels = tuple[tuple[str, str], ...]  # sorted ("metric.x" | "resource.x", value) pairs
# One window's data: request counts per raw point, or latencies in ms.
Window = list[float]


@dataclass
class Series:
    labels: Labels
    metric_kind: str
    value_type: str
    # window key → the data; a window key is (start, end) in wire seconds.
    points: dict[tuple[float, float], Window]


def wire_time(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class MonitoringBackend:
    """``projects.timeSeries.list`` over the samples the region apps record."""

    def __init__(self, ctx: LabContext, samples: Callable[[], Iterable[Sample]]):
        self.ctx = ctx
        self._samples = samples

    def list_time_series(self, project: str, query: Query) -> dict[str, Any]:
        spec = METRICS.get(query.selector.metric_type)
        if spec is None:
            raise MetricNotFound(
                f'Cannot find metric(s) that match type = "{query.selector.metric_type}". '
                "If a metric was created recently, it could take up to 10 minutes to "
                "become available. Please try again soon."
            )
        wanted_type = query.selector.equals.get("resource.type", RESOURCE_TYPE)
        raw = self._raw_series(project, spec, query) if wanted_type == RESOURCE_TYPE else []
        series = raw if query.aligner == "ALIGN_NONE" else _aligned(raw, spec, query)
        if query.reducer != "REDUCE_NONE":
            series = _reduced(series, query)
        series.sort(key=lambda s: s.labels)
        try:
            page, token = paginate(
                series,
                query.page_size,
                query.page_token,
                default=min(DEFAULT_PAGE, self.ctx.settings.page_cap),
                maximum=self.ctx.settings.page_cap,
            )
        except BadRequest as exc:
            raise InvalidArgument(exc.message) from exc
        body: dict[str, Any] = {}
        if page:
            body["timeSeries"] = [_series_json(s, spec, query) for s in page]
        if token:
            body["nextPageToken"] = token
        return body

    # -- raw points: one per 60-s sample period, visible 180 s after it ends ---------------
    def _raw_series(self, project: str, spec: MetricSpec, query: Query) -> list[Series]:
        now = time.time()
        scale = max(self.ctx.latency.time_scale, 0.001)
        period = SAMPLE_PERIOD_S * scale
        visible_until = now - INGESTION_DELAY_S * scale

        def wire(wall: float) -> float:
            return now - (now - wall) / scale

        start = query.start if query.start is not None else query.end
        found: dict[Labels, Series] = {}
        for sample in self._samples():
            if sample.project != project:
                continue
            index = math.floor(sample.at / period)
            begins, ends = index * period, (index + 1) * period
            if ends > visible_until:
                continue
            window = (wire(begins), wire(ends))
            if not start <= window[1] <= query.end:
                continue
            labels = _labels(sample)
            if not _selected(labels, query):
                continue
            series = found.setdefault(labels, Series(labels, "DELTA", spec.value_type, {}))
            data = series.points.setdefault(window, [])
            if spec.value_type == "INT64":
                data.append(1.0)
            else:
                data.append(sample.seconds / scale * 1000.0)
        for series in found.values():
            if spec.value_type == "INT64":  # one point per period: its count
                series.points = {w: [float(len(d))] for w, d in series.points.items()}
        return list(found.values())


def _labels(sample: Sample) -> Labels:
    return tuple(
        sorted(
            {
                "resource.project_id": sample.project,
                "resource.service_name": sample.service,
                "resource.revision_name": sample.revision,
                "resource.location": sample.region,
                "resource.configuration_name": sample.service,
                "metric.response_code": str(sample.status),
                "metric.response_code_class": f"{sample.status // 100}xx",
            }.items()
        )
    )


def _selected(labels: Labels, query: Query) -> bool:
    have = dict(labels)
    for key, value in query.selector.equals.items():
        if key == "resource.type":
            continue
        name = "resource.project_id" if key == "project" else key
        if have.get(name) != value:
            return False
    return True


# -- alignment ------------------------------------------------------------------------------
_NUMERIC_ALIGNERS = {
    "ALIGN_DELTA",
    "ALIGN_SUM",
    "ALIGN_RATE",
    "ALIGN_MEAN",
    "ALIGN_MIN",
    "ALIGN_MAX",
    "ALIGN_COUNT",
}
_DISTRIBUTION_ALIGNERS = {
    "ALIGN_DELTA",
    "ALIGN_SUM",
    "ALIGN_MEAN",
    "ALIGN_COUNT",
    "ALIGN_PERCENTILE_99",
    "ALIGN_PERCENTILE_95",
    "ALIGN_PERCENTILE_50",
    "ALIGN_PERCENTILE_05",
}
_PERCENTILES = {"99": 0.99, "95": 0.95, "50": 0.50, "05": 0.05}


def _aligned(raw: list[Series], spec: MetricSpec, query: Query) -> list[Series]:
    allowed = _NUMERIC_ALIGNERS if spec.value_type == "INT64" else _DISTRIBUTION_ALIGNERS
    if query.aligner not in allowed:
        raise InvalidArgument(
            f"The aligner {query.aligner} cannot be applied to metrics with kind DELTA and "
            f"value type {spec.value_type} (or the lab does not implement it)."
        )
    assert query.period_s is not None
    period, end = query.period_s, query.end
    out: list[Series] = []
    for series in raw:
        windows: dict[tuple[float, float], Window] = defaultdict(list)
        counts: dict[tuple[float, float], int] = defaultdict(int)
        for (_, point_end), data in series.points.items():
            k = max(1, math.ceil((end - point_end) / period - 1e-9))
            window = (end - k * period, end - (k - 1) * period)
            windows[window].extend(data)
            counts[window] += 1
        kind, value_type = _aligned_kind(query.aligner, spec.value_type)
        points: dict[tuple[float, float], Window] = {
            # A distribution stays a distribution: its samples, merged over the window.
            window: data
            if value_type == "DISTRIBUTION"
            else [_align_value(query.aligner, data, counts[window], period, spec)]
            for window, data in windows.items()
        }
        out.append(Series(series.labels, kind, value_type, points))
    return out


def _aligned_kind(aligner: str, value_type: str) -> tuple[str, str]:
    if aligner in {"ALIGN_DELTA", "ALIGN_SUM"}:
        return "DELTA", value_type
    if aligner == "ALIGN_COUNT":
        return "GAUGE", "INT64"
    if aligner in {"ALIGN_MIN", "ALIGN_MAX"}:
        return "GAUGE", value_type
    return "GAUGE", "DOUBLE"


def _align_value(aligner: str, data: Window, points: int, period: float, spec: MetricSpec) -> float:
    if aligner == "ALIGN_COUNT":
        return float(points)
    if spec.value_type == "DISTRIBUTION":
        if aligner.startswith("ALIGN_PERCENTILE_"):
            return percentile(data, _PERCENTILES[aligner.rsplit("_", 1)[1]])
        return sum(data) / len(data) if aligner == "ALIGN_MEAN" and data else 0.0
    return {
        "ALIGN_DELTA": sum(data),
        "ALIGN_SUM": sum(data),
        "ALIGN_RATE": sum(data) / period,
        "ALIGN_MEAN": sum(data) / len(data),
        "ALIGN_MIN": min(data),
        "ALIGN_MAX": max(data),
    }[aligner]


# -- reduction --------------------------------------------------------------------------------
_REDUCERS = {"REDUCE_SUM", "REDUCE_MEAN", "REDUCE_MIN", "REDUCE_MAX", "REDUCE_COUNT"}


def _group_key(field: str) -> str:
    """``resource.label.x`` or ``resource.labels.x`` → ``resource.x`` (Google takes both)."""
    for prefix in ("resource", "metric"):
        for middle in (".labels.", ".label."):
            if field.startswith(prefix + middle):
                return prefix + "." + field[len(prefix + middle) :]
    if field == "resource.type":
        return field
    raise InvalidArgument(f"Invalid group-by field: {field!r}.")


def _reduced(series: list[Series], query: Query) -> list[Series]:
    if query.reducer not in _REDUCERS:
        raise InvalidArgument(f"The lab does not implement the reducer {query.reducer}.")
    keys = [_group_key(f) for f in query.group_by]
    groups: dict[Labels, list[Series]] = defaultdict(list)
    for s in series:
        have = dict(s.labels)
        groups[tuple(sorted((k, have.get(k, "")) for k in keys if k != "resource.type"))].append(s)
    out: list[Series] = []
    for labels, members in groups.items():
        value_type = members[0].value_type
        if value_type == "DISTRIBUTION" and query.reducer not in {"REDUCE_SUM", "REDUCE_COUNT"}:
            raise InvalidArgument(f"The lab does not implement {query.reducer} on distributions.")
        windows: dict[tuple[float, float], list[Window]] = defaultdict(list)
        for m in members:
            for window, data in m.points.items():
                windows[window].append(data)
        points: dict[tuple[float, float], Window] = {}
        for window, datas in windows.items():
            if query.reducer == "REDUCE_COUNT":
                points[window] = [float(len(datas))]
            elif value_type == "DISTRIBUTION":
                points[window] = [v for d in datas for v in d]
            else:
                values = [d[0] for d in datas]
                points[window] = [
                    {
                        "REDUCE_SUM": sum(values),
                        "REDUCE_MEAN": sum(values) / len(values),
                        "REDUCE_MIN": min(values),
                        "REDUCE_MAX": max(values),
                    }[query.reducer]
                ]
        reduced_type = value_type
        if query.reducer == "REDUCE_COUNT":
            reduced_type = "INT64"
        elif query.reducer == "REDUCE_MEAN":
            reduced_type = "DOUBLE"
        out.append(Series(labels, members[0].metric_kind, reduced_type, points))
    return out


# -- wire shape --------------------------------------------------------------------------------
def _series_json(series: Series, spec: MetricSpec, query: Query) -> dict[str, Any]:
    metric_labels = {
        k.removeprefix("metric."): v for k, v in series.labels if k.startswith("metric.")
    }
    resource_labels = {
        k.removeprefix("resource."): v for k, v in series.labels if k.startswith("resource.")
    }
    body: dict[str, Any] = {
        "metric": {"type": spec.type, **({"labels": metric_labels} if metric_labels else {})},
        "resource": {"type": RESOURCE_TYPE, "labels": resource_labels},
        "metricKind": series.metric_kind,
        "valueType": series.value_type,
        "unit": spec.unit if series.value_type in {"INT64", "DISTRIBUTION"} else "",
    }
    if not body["unit"]:
        del body["unit"]
    if query.headers_only:
        return body
    points = []
    # Newest first, as Google returns them ("in reverse time order", TimeSeries.points).
    for (begins, ends), data in sorted(series.points.items(), key=lambda p: -p[0][1]):
        interval = {"endTime": wire_time(ends)}
        if series.metric_kind == "DELTA":
            interval["startTime"] = wire_time(begins)
        points.append({"interval": interval, "value": _value(series.value_type, data)})
    body["points"] = points
    return body


def _value(value_type: str, data: Window) -> dict[str, Any]:
    if value_type == "DISTRIBUTION":
        return {"distributionValue": distribution(data)}
    if value_type == "INT64":
        return {"int64Value": str(round(data[0]))}
    return {"doubleValue": data[0]}
