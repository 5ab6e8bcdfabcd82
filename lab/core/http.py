"""The wire plumbing every REST emulator shares: request log, fault injection, error JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lab.core.context import LabContext
from lab.core.errors import ApiError, error_for_status
from lab.core.schema import SchemaMiddleware, refused_by_schema, schema_for

log = logging.getLogger(__name__)


def json_response(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def api_error_response(error: ApiError) -> Response:
    return JSONResponse(error.to_json(), status_code=error.code)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_READS = "lab_reads"

E = TypeVar("E", bound=Callable[..., Any])


def reads(endpoint: E) -> E:
    """Mark an endpoint served by POST that changes nothing: an operation's ``wait``, a
    batch (each of its parts is logged, and judged, on its own)."""
    setattr(endpoint, _READS, True)
    return endpoint


def is_write(method: str, scope: Scope) -> bool:
    """Whether the call changes state: any method but GET/HEAD/OPTIONS, unless the endpoint
    routed to says it only reads. Judged by the emulator, so no test keeps its own list."""
    if method.upper() in SAFE_METHODS or refused_by_schema(scope):
        return False
    return not getattr(scope.get("endpoint"), _READS, False)


class LabMiddleware:
    """Logs each call and applies injected faults before the emulator sees it."""

    def __init__(self, app: ASGIApp, ctx: LabContext, api: str):
        self.app = app
        self.ctx = ctx
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        rule = self.ctx.faults.match(self.api, method, path)
        if rule is not None and rule.latency_s:
            # A held call models a server slow to act on a request it has received whole:
            # the body is read first, so a client that gives up during the hold leaves a
            # request that is still acted on as sent (its etag or precondition included),
            # never one read back empty after the disconnect.
            receive = await _received_whole(receive)
            await asyncio.sleep(rule.latency_s)
        if rule is not None and rule.status is not None:
            error = error_for_status(rule.status, f"injected fault {rule.id}", rule.reason)
            self.ctx.requests.record(
                self.api,
                method,
                path,
                rule.status,
                injected=True,
                query=query,
                write=is_write(method, scope),
            )
            await api_error_response(error)(scope, receive, send)
            return

        recorded = False

        async def send_wrapper(message: Message) -> None:
            nonlocal recorded
            # Log before the reply leaves, so a client never sees a reply the log lacks.
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                self.ctx.requests.record(
                    self.api,
                    method,
                    path,
                    message["status"],
                    rule is not None,
                    query,
                    is_write(method, scope),
                )
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not recorded:
                self.ctx.requests.record(
                    self.api, method, path, 500, rule is not None, query, is_write(method, scope)
                )


async def _received_whole(receive: Receive) -> Receive:
    """Read the request body now; a ``receive`` that replays what came, then the
    connection's own (a disconnect before the body was whole is replayed as it came)."""
    body: list[bytes] = []
    ending: Message | None = None
    while True:
        message = await receive()
        if message["type"] != "http.request":
            ending = message
            break
        body.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    pending: list[Message] = [ending] if ending is not None else []
    whole = b"".join(body)
    pending.append({"type": "http.request", "body": whole, "more_body": ending is not None})

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


async def _unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("emulator bug on %s %s", request.method, request.url.path)
    return api_error_response(error_for_status(500, f"lab emulator error: {exc}"))


def build_app(ctx: LabContext, api: str, routes: Sequence[BaseRoute]) -> ASGIApp:
    """A Starlette app for one emulated API, wrapped in the lab's middleware, and for a
    Google API in the judge of its discovery document (lab/core/schema.py)."""
    app: ASGIApp = Starlette(
        routes=list(routes),
        exception_handlers={ApiError: _api_error_handler, Exception: _unexpected_error_handler},
    )
    schema = schema_for(api)
    if schema is not None:
        app = SchemaMiddleware(app, schema, ctx.violations, routes)
    return LabMiddleware(app, ctx, api)


async def read_json(request: Request) -> dict[str, object]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise error_for_status(400, f"request body is not JSON: {exc}", "parseError") from exc
    if not isinstance(body, dict):
        raise error_for_status(400, "request body must be a JSON object", "parseError")
    return body
