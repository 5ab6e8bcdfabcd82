"""A timeSeries.list request read from the wire: filter, interval, aggregation, view, page.

What Google documents, and the lab enforces (a request Google refuses is refused here):
- the filter names exactly one ``metric.type`` and may narrow by ``resource.type``,
  ``resource.labels.KEY``, ``metric.labels.KEY`` and ``project``, joined by ``AND``
  (monitoring/api/v3/filters: "you must specify a single metric type");
- ``interval.endTime`` is required (ListTimeSeriesRequest.interval);
- an aligner other than ALIGN_NONE needs an ``alignmentPeriod`` of at least 60 s, and a
  ``crossSeriesReducer`` needs an aligner (monitoring/api/ref_v3/rest/v3/Aggregation).

The lab's filter is a subset of Google's language: comparisons with ``=`` against quoted
strings, joined by ``AND``. ``OR``, ``NOT``, ``!=``, ``starts_with`` and regular expressions
are refused with 400 naming the gap, never read as something else.

The REST clients generated from protos send enums as numbers (``$alt=json;enum-encoding=int``),
the discovery client as names: both are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from starlette.datastructures import QueryParams

from lab.monitoring.exceptions import InvalidArgument

ALIGNERS = {
    "ALIGN_NONE": 0,
    "ALIGN_DELTA": 1,
    "ALIGN_RATE": 2,
    "ALIGN_INTERPOLATE": 3,
    "ALIGN_NEXT_OLDER": 4,
    "ALIGN_MIN": 10,
    "ALIGN_MAX": 11,
    "ALIGN_MEAN": 12,
    "ALIGN_COUNT": 13,
    "ALIGN_SUM": 14,
    "ALIGN_STDDEV": 15,
    "ALIGN_COUNT_TRUE": 16,
    "ALIGN_COUNT_FALSE": 24,
    "ALIGN_FRACTION_TRUE": 17,
    "ALIGN_PERCENTILE_99": 18,
    "ALIGN_PERCENTILE_95": 19,
    "ALIGN_PERCENTILE_50": 20,
    "ALIGN_PERCENTILE_05": 21,
    "ALIGN_PERCENT_CHANGE": 23,
}
REDUCERS = {
    "REDUCE_NONE": 0,
    "REDUCE_MEAN": 1,
    "REDUCE_MIN": 2,
    "REDUCE_MAX": 3,
    "REDUCE_SUM": 4,
    "REDUCE_STDDEV": 5,
    "REDUCE_COUNT": 6,
    "REDUCE_COUNT_TRUE": 7,
    "REDUCE_COUNT_FALSE": 15,
    "REDUCE_FRACTION_TRUE": 8,
    "REDUCE_PERCENTILE_99": 9,
    "REDUCE_PERCENTILE_95": 10,
    "REDUCE_PERCENTILE_50": 11,
    "REDUCE_PERCENTILE_05": 12,
}
VIEWS = {"FULL": 0, "HEADERS": 1}

_TERM = re.compile(r'^\s*(?P<field>[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*$')
_FIELD = re.compile(r"^(metric\.type|resource\.type|project|(metric|resource)\.labels?\.(\w+))$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


@dataclass(frozen=True)
class Selector:
    """What the filter asks: the metric type, and exact values for other fields."""

    metric_type: str
    equals: dict[str, str] = field(default_factory=dict)  # "resource.type", "metric.<k>", ...


@dataclass(frozen=True)
class Query:
    selector: Selector
    start: float | None
    end: float
    aligner: str
    period_s: float | None
    reducer: str
    group_by: tuple[str, ...]
    headers_only: bool
    page_size: int
    page_token: str


def _enum(raw: str | None, names: dict[str, int], what: str, default: str) -> str:
    if raw is None or raw == "":
        return default
    if raw in names:
        return raw
    by_number = {str(v): k for k, v in names.items()}
    if raw in by_number:
        return by_number[raw]
    raise InvalidArgument(f"Invalid value at '{what}', \"{raw}\"")


def parse_filter(text: str) -> Selector:
    if not text.strip():
        raise InvalidArgument("Field filter is required and must specify a metric type.")
    if re.search(r"\b(OR|NOT)\b|!=|starts_with|ends_with|has_substring|monitoring\.regex", text):
        raise InvalidArgument(
            f'The lab\'s Monitoring reads filters of `field = "value"` terms joined by AND '
            f"only; it does not implement the rest of Google's filter language: {text!r}"
        )
    metric_type: str | None = None
    equals: dict[str, str] = {}
    for term in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.match(term)
        if match is None:
            raise InvalidArgument(f"Could not parse filter {text!r} at {term!r}.")
        name, value = match["field"], match["value"].replace('\\"', '"')
        parts = _FIELD.match(name)
        if parts is None:
            raise InvalidArgument(f"Unrecognized field in filter: {name!r}.")
        if name == "metric.type":
            if metric_type is not None and metric_type != value:
                raise InvalidArgument("A filter must specify a single metric type.")
            metric_type = value
        elif parts.group(2):
            equals[f"{parts.group(2)}.{parts.group(3)}"] = value
        else:
            equals[name] = value
    if metric_type is None:
        raise InvalidArgument(f"The filter {text!r} must specify a metric type (metric.type).")
    return Selector(metric_type, equals)


def parse_time(raw: str, what: str) -> float:
    """An RFC 3339 timestamp (``Z`` or an offset, up to nanoseconds) as epoch seconds."""
    text = raw.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Python reads at most microseconds: cut nanoseconds down.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"Invalid value at '{what}' (type.googleapis.com/google.protobuf.Timestamp), \"{raw}\""
        ) from None
    if moment.tzinfo is None:
        raise InvalidArgument(f"Invalid value at '{what}': a timestamp needs 'Z' or an offset")
    return moment.timestamp()


def parse_duration(raw: str) -> float:
    match = _DURATION.match(raw.strip())
    if match is None:
        raise InvalidArgument(
            f"Invalid value at 'aggregation.alignment_period' (type.googleapis.com/"
            f'google.protobuf.Duration), "{raw}"'
        )
    return float(match.group(1))


def parse_query(params: QueryParams) -> Query:
    selector = parse_filter(params.get("filter", ""))
    end_raw = params.get("interval.endTime")
    if not end_raw:
        raise InvalidArgument("Field interval.endTime is required.")
    end = parse_time(end_raw, "interval.end_time")
    start_raw = params.get("interval.startTime")
    start = parse_time(start_raw, "interval.start_time") if start_raw else None
    if start is not None and start > end:
        raise InvalidArgument("The start time must be before the end time.")
    aligner = _enum(
        params.get("aggregation.perSeriesAligner"),
        ALIGNERS,
        "aggregation.per_series_aligner",
        "ALIGN_NONE",
    )
    reducer = _enum(
        params.get("aggregation.crossSeriesReducer"),
        REDUCERS,
        "aggregation.cross_series_reducer",
        "REDUCE_NONE",
    )
    period_raw = params.get("aggregation.alignmentPeriod")
    period = parse_duration(period_raw) if period_raw else None
    if aligner != "ALIGN_NONE":
        if period is None:
            raise InvalidArgument(
                "The alignment period must be specified when a per-series aligner is given."
            )
        if period < 60:
            raise InvalidArgument(
                f"The alignment period must be at least 60 seconds, got {period_raw}."
            )
    if reducer != "REDUCE_NONE" and aligner == "ALIGN_NONE":
        raise InvalidArgument(
            "A per-series aligner other than ALIGN_NONE is required when a cross-series "
            "reducer is given."
        )
    view = _enum(params.get("view"), VIEWS, "view", "FULL")
    try:
        page_size = int(params.get("pageSize", "0") or "0")
    except ValueError:
        raw = params.get("pageSize")
        raise InvalidArgument(f"Invalid value at 'page_size', \"{raw}\"") from None
    return Query(
        selector=selector,
        start=start,
        end=end,
        aligner=aligner,
        period_s=period,
        reducer=reducer,
        group_by=tuple(params.getlist("aggregation.groupByFields")),
        headers_only=view == "HEADERS",
        page_size=page_size,
        page_token=params.get("pageToken", ""),
    )
