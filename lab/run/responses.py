"""Cloud Run Admin API v2 REST routes: read the request, call the backend, reply in JSON.

Handlers are async only to read the body; the backend runs in the threadpool because
its calls take locks and ``operations:wait`` blocks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from lab.core.http import json_response, read_json, reads
from lab.run.exceptions import InvalidRequest, ResourceNotFound
from lab.run.models import RunBackend

PARENT = "/v2/projects/{project}/locations/{location}"
SERVICE = PARENT + "/services/{service}"
REVISION = SERVICE + "/revisions/{revision}"
OPERATION = PARENT + "/operations/{operation}"

# How long one operations:wait call may block, whatever the client asks for.
MAX_WAIT_SECONDS = 60.0
DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


def routes(backend: RunBackend) -> list[BaseRoute]:
    async def list_services(request: Request) -> Response:
        p = request.path_params
        return await _call(backend.list_services, p["project"], p["location"], *_page(request))

    async def create_service(request: Request) -> Response:
        p = request.path_params
        _refuse_validate_only(request)
        service_id = request.query_params.get("serviceId", "")
        if not service_id:
            raise InvalidRequest("serviceId is required")
        body = await read_json(request)
        return await _call(
            backend.begin_create_service, p["project"], p["location"], service_id, body
        )

    async def get_service(request: Request) -> Response:
        p = request.path_params
        return await _call(backend.get_service, p["project"], p["location"], p["service"])

    async def update_service(request: Request) -> Response:
        p = request.path_params
        _refuse_validate_only(request)
        body = await read_json(request)
        mask = [m for m in request.query_params.get("updateMask", "").split(",") if m]
        allow_missing = _flag(request, "allowMissing")
        return await _call(
            backend.begin_update_service,
            p["project"], p["location"], p["service"], body, mask or None, allow_missing,
        )  # fmt: skip

    async def delete_service(request: Request) -> Response:
        p = request.path_params
        _refuse_validate_only(request)
        etag = request.query_params.get("etag", "")
        return await _call(backend.delete_service, p["project"], p["location"], p["service"], etag)

    async def list_revisions(request: Request) -> Response:
        p = request.path_params
        return await _call(
            backend.list_revisions, p["project"], p["location"], p["service"], *_page(request)
        )

    async def get_revision(request: Request) -> Response:
        p = request.path_params
        return await _call(
            backend.get_revision, p["project"], p["location"], p["service"], p["revision"]
        )

    async def delete_revision(request: Request) -> Response:
        p = request.path_params
        _refuse_validate_only(request)
        etag = request.query_params.get("etag", "")
        return await _call(
            backend.delete_revision,
            p["project"], p["location"], p["service"], p["revision"], etag,
        )  # fmt: skip

    async def list_operations(request: Request) -> Response:
        p = request.path_params
        done = _done_filter(request.query_params.get("filter", ""))
        return await _call(
            backend.list_operations, p["project"], p["location"], done, *_page(request)
        )

    async def get_operation(request: Request) -> Response:
        p = request.path_params
        return await _call(backend.get_operation, p["project"], p["location"], p["operation"])

    async def delete_operation(request: Request) -> Response:
        p = request.path_params
        await run_in_threadpool(
            backend.delete_operation, p["project"], p["location"], p["operation"]
        )
        return json_response({})

    @reads
    async def wait_operation(request: Request) -> Response:
        p = request.path_params
        body = await read_json(request)
        timeout = min(_duration(body.get("timeout")), MAX_WAIT_SECONDS)
        return await _call(
            backend.wait_operation, p["project"], p["location"], p["operation"], timeout
        )

    async def unknown(request: Request) -> Response:
        raise ResourceNotFound("Method", f"{request.method} {request.url.path}")

    return [
        Route(PARENT + "/services", list_services, methods=["GET"]),
        Route(PARENT + "/services", create_service, methods=["POST"]),
        Route(SERVICE, get_service, methods=["GET"]),
        Route(SERVICE, update_service, methods=["PATCH"]),
        Route(SERVICE, delete_service, methods=["DELETE"]),
        Route(SERVICE + "/revisions", list_revisions, methods=["GET"]),
        Route(REVISION, get_revision, methods=["GET"]),
        Route(REVISION, delete_revision, methods=["DELETE"]),
        Route(PARENT + "/operations", list_operations, methods=["GET"]),
        Route(OPERATION + ":wait", wait_operation, methods=["POST"]),
        Route(OPERATION, get_operation, methods=["GET"]),
        Route(OPERATION, delete_operation, methods=["DELETE"]),
        # Google's JSON 404 instead of Starlette's plain-text one, so clients parse it.
        Route("/{path:path}", unknown, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
    ]


async def _call(fn: Callable[..., dict[str, Any]], *args: Any) -> Response:
    return json_response(await run_in_threadpool(fn, *args))


def _page(request: Request) -> tuple[int, str]:
    raw = request.query_params.get("pageSize", "0")
    try:
        size = int(raw)
    except ValueError as exc:
        raise InvalidRequest(f"pageSize {raw!r} is not an integer") from exc
    return size, request.query_params.get("pageToken", "")


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in {"true", "1"}


def _refuse_validate_only(request: Request) -> None:
    # Ignoring it would apply what the caller meant as a dry run.
    if _flag(request, "validateOnly"):
        raise InvalidRequest("validateOnly is not supported by the lab's Cloud Run emulator")


def _done_filter(text: str) -> bool | None:
    """``done:true`` / ``done = false`` / empty, the filters Cloud Run documents."""
    compact = text.replace(" ", "").lower()
    if not compact:
        return None
    if compact in {"done:true", "done=true"}:
        return True
    if compact in {"done:false", "done=false"}:
        return False
    raise InvalidRequest(f"unsupported filter {text!r}; use done:true or done:false")


def _duration(value: object) -> float:
    """A google.protobuf.Duration in JSON ("1.5s"); absent means the longest wait."""
    if value is None:
        return MAX_WAIT_SECONDS
    match = DURATION.match(str(value))
    if match is None:
        raise InvalidRequest(f"timeout {value!r} is not a duration like '1.5s'")
    return float(match.group(1))
