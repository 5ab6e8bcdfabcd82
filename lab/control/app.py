"""Outages, fault injection, IAM grants, the request log, state, config and reset."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.errors import ApiError
from lab.core.faults import FaultRule
from lab.mongo.history import roll_history

M = TypeVar("M", bound=BaseModel)


class OutageRequest(BaseModel):
    region: str
    down: bool


class ConfigRequest(BaseModel):
    time_scale: float | None = Field(None, ge=0)
    latency: dict[str, float] = Field(default_factory=dict)


class IamGrantRequest(BaseModel):
    """What the caller holds on one project, as testIamPermissions answers it: ``held``
    None keeps every permission; ``revoked`` takes these away from what is held."""

    project: str
    held: list[str] | None = None
    revoked: list[str] = Field(default_factory=list)


class OplogRollRequest(BaseModel):
    database: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")


class StorageRewritesRequest(BaseModel):
    """How the Cloud Storage emulator's rewrites behave from now until a reset: the bytes
    a call moves across locations when the caller sets no maximum (a multiple of 1 MiB),
    and how many of the next copies into each bucket land with a byte flipped."""

    step_bytes: int | None = Field(None, gt=0)
    corrupt: dict[str, int] = Field(default_factory=dict)


class SqlOperationFailureRequest(BaseModel):
    operation_type: str = Field(min_length=1)
    code: str = Field(min_length=1)
    message: str = Field(min_length=1)
    count: int = Field(1, ge=1)


class RevisionHealthRequest(BaseModel):
    project: str
    location: str
    revision: str
    healthy: bool


def _bad(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)


async def _parse(request: Request, model: type[M]) -> M | Response:
    try:
        return model.model_validate(json.loads(await request.body() or b"{}"))
    except (ValidationError, json.JSONDecodeError) as exc:
        return _bad(str(exc))


def create_control_app(
    ctx: LabContext,
    known_regions: list[str],
    reset: Callable[[], None],
    state: Callable[[], dict[str, Any]],
    mongo_data_dir: Path | None = None,
) -> ASGIApp:
    received: list[dict[str, Any]] = []
    webhook_lock = threading.Lock()

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def outage(request: Request) -> Response:
        body = await _parse(request, OutageRequest)
        if isinstance(body, Response):
            return body
        if body.region not in known_regions:
            return _bad(f"region: unknown region {body.region!r}; known: {known_regions}")
        ctx.set_outage(body.region, body.down)
        return JSONResponse({"outages": ctx.outages()})

    async def faults(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([r.model_dump() for r in ctx.faults.rules()])
        if request.method == "DELETE":
            ctx.faults.clear()
            return JSONResponse([])
        rule = await _parse(request, FaultRule)
        if isinstance(rule, Response):
            return rule
        return JSONResponse(ctx.faults.add(rule).model_dump(), status_code=201)

    def requests(request: Request) -> Response:
        q = request.query_params
        entries = ctx.requests.entries(
            api=q.get("api"), method=q.get("method"), since=int(q.get("since", "0"))
        )
        return JSONResponse(
            {"last_seq": ctx.requests.last_seq, "entries": [e.to_json() for e in entries]}
        )

    def schema_violations(request: Request) -> Response:
        """Replies that broke Google's discovery schema (``kind`` response: lab bugs) and
        calls refused for breaking it (``kind`` request), since ``since``."""
        q = request.query_params
        entries = ctx.violations.entries(since=int(q.get("since", "0")), kind=q.get("kind"))
        return JSONResponse(
            {"last_seq": ctx.violations.last_seq, "entries": [e.to_json() for e in entries]}
        )

    async def config(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(ctx.latency.snapshot())
        body = await _parse(request, ConfigRequest)
        if isinstance(body, Response):
            return body
        try:
            ctx.latency.configure(body.time_scale, body.latency)
        except ValueError as exc:
            return _bad(str(exc))
        return JSONResponse(ctx.latency.snapshot())

    async def revision_health(request: Request) -> Response:
        body = await _parse(request, RevisionHealthRequest)
        if isinstance(body, Response):
            return body
        ctx.backends["run"].set_revision_health(
            body.project, body.location, body.revision, body.healthy
        )
        return JSONResponse(body.model_dump())

    async def sql_operation_failures(request: Request) -> Response:
        body = await _parse(request, SqlOperationFailureRequest)
        if isinstance(body, Response):
            return body
        ctx.backends["sql"].fail_operations(
            body.operation_type, body.code, body.message, body.count
        )
        return JSONResponse(body.model_dump(), status_code=201)

    async def iam(request: Request) -> Response:
        """The caller's grants per project (Resource Manager's testIamPermissions); a
        reset gives back every permission everywhere."""
        backend = ctx.backends["resourcemanager"]
        if request.method == "GET":
            return JSONResponse(backend.snapshot())
        body = await _parse(request, IamGrantRequest)
        if isinstance(body, Response):
            return body
        try:
            grant = backend.set_grant(body.project, body.held, body.revoked)
        except KeyError:
            known = backend.snapshot()["projects"]
            return _bad(f"project: unknown project {body.project!r}; known: {known}")
        return JSONResponse({"project": body.project, **grant.to_json()})

    async def roll_oplog(request: Request) -> Response:
        """Drop the database's change history, as an oplog that wrapped around would: a
        change stream resumed from before now fails with ChangeStreamHistoryLost."""
        body = await _parse(request, OplogRollRequest)
        if isinstance(body, Response):
            return body
        if mongo_data_dir is None:
            return _bad("this lab has no MongoDB")
        return JSONResponse({"lost_through": roll_history(mongo_data_dir, body.database)})

    async def storage_rewrites(request: Request) -> Response:
        rewrites = ctx.backends["storage"].rewrites
        if request.method == "POST":
            body = await _parse(request, StorageRewritesRequest)
            if isinstance(body, Response):
                return body
            try:
                rewrites.configure(body.step_bytes, body.corrupt)
            except ApiError as exc:
                return _bad(exc.message)
        return JSONResponse(rewrites.snapshot())

    async def webhook(request: Request) -> Response:
        """A stand-in for Slack and the mail relay: keeps what was posted, for tests."""
        name = request.path_params["name"]
        path = f"/_lab/webhooks/{name}"
        rule = ctx.faults.match("webhooks", "POST", path)
        if rule is not None and rule.status is not None:
            ctx.requests.record("webhooks", "POST", path, rule.status, injected=True)
            return JSONResponse({"error": "injected"}, status_code=rule.status)
        body = json.loads(await request.body() or b"null")
        with webhook_lock:
            received.append({"name": name, "body": body})
        ctx.requests.record("webhooks", "POST", path, 200)
        return JSONResponse({"ok": True})

    def webhooks(request: Request) -> Response:
        if request.method == "DELETE":
            with webhook_lock:
                received.clear()
        with webhook_lock:
            return JSONResponse(list(received))

    def get_state(request: Request) -> Response:
        return JSONResponse(state())

    def do_reset(request: Request) -> Response:
        reset()
        if "metrics" in ctx.backends:
            ctx.backends["metrics"].clear()
        with webhook_lock:
            received.clear()
        return JSONResponse({"reset": True})

    routes = [
        Route("/_lab/health", health),
        Route("/_lab/outage", outage, methods=["POST"]),
        Route("/_lab/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_lab/requests", requests),
        Route("/_lab/schema_violations", schema_violations),
        Route("/_lab/config", config, methods=["GET", "POST"]),
        Route("/_lab/revision-health", revision_health, methods=["POST"]),
        Route("/_lab/iam", iam, methods=["GET", "POST"]),
        Route("/_lab/sql/operation-failures", sql_operation_failures, methods=["POST"]),
        Route("/_lab/mongo/roll-oplog", roll_oplog, methods=["POST"]),
        Route("/_lab/storage/rewrites", storage_rewrites, methods=["GET", "POST"]),
        Route("/_lab/webhooks/{name}", webhook, methods=["POST"]),
        Route("/_lab/webhooks", webhooks, methods=["GET", "DELETE"]),
        Route("/_lab/state", get_state),
        Route("/_lab/reset", do_reset, methods=["POST"]),
    ]
    return Starlette(routes=routes)
