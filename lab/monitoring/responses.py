"""Cloud Monitoring v3 routes: ``GET /v3/projects/{project}/timeSeries`` (timeSeries.list).

The discovery client (google-api-python-client) and the REST clients generated from
protos both send the request as query parameters: ``filter``, ``interval.startTime``,
``interval.endTime``, ``aggregation.*``, ``view``, ``pageSize``, ``pageToken``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lab.core.http import json_response
from lab.monitoring.exceptions import InvalidArgument
from lab.monitoring.models import MonitoringBackend
from lab.monitoring.query import parse_query

TIME_SERIES = "/v3/projects/{project}/timeSeries"


class MonitoringResponses:
    def __init__(self, backend: MonitoringBackend) -> None:
        self.backend = backend

    def routes(self) -> list[Route]:
        return [
            Route(TIME_SERIES, self.list_time_series, methods=["GET"]),
            Route("/{path:path}", unknown_path, methods=["GET", "POST", "PATCH", "DELETE"]),
        ]

    async def list_time_series(self, request: Request) -> Response:
        query = parse_query(request.query_params)
        return json_response(self.backend.list_time_series(request.path_params["project"], query))


async def unknown_path(request: Request) -> Response:
    raise InvalidArgument(f"The lab's Monitoring does not serve {request.method} {request.url}")
