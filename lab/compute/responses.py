"""Compute v1 routes for url maps, backend services and global operations: parse, call the
backend, reply.

The REST clients add ``$alt=json;enum-encoding=int`` to every call; replies use enum
names, which the clients accept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lab.compute.exceptions import InvalidField, ResourceNotFound
from lab.compute.models import ComputeBackend
from lab.core.http import json_response, read_json, reads

GLOBAL = "/compute/v1/projects/{project}/global"
Endpoint = Callable[[Request], Awaitable[Response]]


class ComputeResponses:
    def __init__(self, backend: ComputeBackend) -> None:
        self.backend = backend

    def routes(self) -> list[Route]:
        backend = self.backend
        return [
            Route(GLOBAL + "/urlMaps", lists(backend.list_url_maps), methods=["GET"]),
            Route(GLOBAL + "/urlMaps/{name}", gets(backend.get_url_map), methods=["GET"]),
            Route(
                GLOBAL + "/urlMaps/{url_map}/invalidateCache",
                self.invalidate_cache,
                methods=["POST"],
            ),
            Route(
                GLOBAL + "/backendServices", lists(backend.list_backend_services), methods=["GET"]
            ),
            Route(
                GLOBAL + "/backendServices/{name}",
                gets(backend.get_backend_service),
                methods=["GET"],
            ),
            Route(GLOBAL + "/operations", lists(backend.list_operations), methods=["GET"]),
            Route(GLOBAL + "/operations/{name}", gets(backend.get_operation), methods=["GET"]),
            Route(GLOBAL + "/operations/{operation}/wait", self.wait_operation, methods=["POST"]),
            # Unknown paths get Google's 404 JSON rather than Starlette's plain text.
            Route("/{path:path}", unknown_path, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]

    async def invalidate_cache(self, request: Request) -> Response:
        params = request.path_params
        body = await read_json(request)  # a CacheInvalidationRule
        host, path = body.get("host"), body.get("path")
        if not isinstance(path, str):
            raise InvalidField("Required field 'resource.path' not specified")
        if host is not None and not isinstance(host, str):
            raise InvalidField(f"Invalid value for field 'resource.host': {host!r}")
        operation = self.backend.invalidate_cache(
            params["project"],
            params["url_map"],
            host or None,
            path,
            request.query_params.get("requestId"),
        )
        return json_response(operation)

    @reads
    async def wait_operation(self, request: Request) -> Response:
        params = request.path_params
        # wait blocks on a condition, so keep it off the event loop.
        operation = await run_in_threadpool(
            self.backend.wait_operation, params["project"], params["operation"]
        )
        return json_response(operation)


def lists(method: Callable[[str, int | None, str | None], dict[str, Any]]) -> Endpoint:
    """A handler for a global collection's list: project, maxResults, pageToken."""

    async def handler(request: Request) -> Response:
        max_results, page_token = _list_params(request)
        return json_response(method(request.path_params["project"], max_results, page_token))

    return handler


def gets(method: Callable[[str, str], dict[str, Any]]) -> Endpoint:
    """A handler for one global resource's get, by project and name."""

    async def handler(request: Request) -> Response:
        params = request.path_params
        return json_response(method(params["project"], params["name"]))

    return handler


async def unknown_path(request: Request) -> Response:
    raise ResourceNotFound(request.url.path)


def _list_params(request: Request) -> tuple[int | None, str | None]:
    query = request.query_params
    # Rather than ignore a filter and return too much, say the lab does not support it.
    for unsupported in ("filter", "orderBy"):
        if query.get(unsupported):
            raise InvalidField(f"The lab's Compute emulator does not support '{unsupported}'")
    raw = query.get("maxResults")
    try:
        max_results = int(raw) if raw is not None else None
    except ValueError:
        raise InvalidField(f"Invalid value for field 'maxResults': {raw!r}") from None
    return max_results, query.get("pageToken")
