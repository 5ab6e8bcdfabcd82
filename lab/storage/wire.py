"""Request helpers shared by the JSON and media routes."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from lab.storage.conditions import Preconditions, parse_int
from lab.storage.exceptions import NotModified

Endpoint = Callable[[Request], Awaitable[Response]]


def route(path: str, endpoint: Endpoint, methods: list[str]) -> Route:
    """A Route whose endpoint may raise NotModified (a 304 has no body, so it cannot go
    through the shared ApiError → JSON handler) or lose its client mid-upload (routine
    for resumable uploads, not an emulator bug worth a 500 and a stack trace)."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except NotModified:
            return Response(status_code=304)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody reads it; it names the event in the log

    return Route(path, guarded, methods=methods)


def base_url(request: Request) -> str:
    """This server's own address, so selfLink and mediaLink lead back to it."""
    return str(request.base_url).rstrip("/")


def conditions(request: Request, *, source: bool = False) -> Preconditions:
    return Preconditions.from_query(request.query_params, source=source)


def int_param(request: Request, name: str) -> int | None:
    return parse_int(request.query_params.get(name), name)


def path_param(request: Request, name: str) -> str:
    value = request.path_params[name]
    assert isinstance(value, str)
    return value
