"""The app one region serves: /health, /<service>/status, /version, /widgets/*, /orders."""

from __future__ import annotations

import json

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.http import build_app
from lab.regions.database import OrderExists, insert_order, read_order, where
from lab.regions.health import (
    RegionSpec,
    database_verdict,
    region_verdict,
    service_verdict,
    wait_for_instances,
)
from lab.regions.instances import AppUnavailable
from lab.regions.metrics import MetricsMiddleware, RequestMetrics
from lab.regions.routing import STATUS_PATHS, services_for_path

# The service behind the write path (/orders): the one that records what users do.
ORDERS_SERVICE = "recommendation-service"


def create_region_app(ctx: LabContext, region: RegionSpec) -> ASGIApp:
    def reply(healthy: bool, **body: object) -> Response:
        payload = {"region": region.name, "healthy": healthy, **body}
        return JSONResponse(payload, status_code=200 if healthy else 503)

    def served(request: Request) -> None:
        # Every path is served by Cloud Run instances: a service at zero starts one first.
        wait_for_instances(ctx, region, services_for_path(region, request.url.path))

    def health(request: Request) -> Response:
        served(request)
        verdict = region_verdict(ctx, region)
        return reply(verdict.healthy, reason=verdict.reason)

    def status(request: Request) -> Response:
        key = request.path_params["name"]
        service = STATUS_PATHS.get(key)
        if service is None or service not in region.services:
            return JSONResponse({"error": f"no service behind /{key}/status"}, status_code=404)
        served(request)
        verdict = service_verdict(ctx, region, service)
        if verdict.healthy:
            verdict = database_verdict(ctx, region, service)
        return reply(verdict.healthy, service=service, reason=verdict.reason)

    def version(request: Request) -> Response:
        # Cacheable on purpose: the front door keeps it until a CDN invalidation, so a
        # verification that sees the new region proves the purge happened.
        served(request)
        return JSONResponse({"region": region.name, "project": region.project})

    def widget(request: Request) -> Response:
        served(request)
        return JSONResponse({"region": region.name, "widget": request.path_params["rest"]})

    def orders_database() -> tuple[str | None, Response | None]:
        """The URL the orders service's instances hold, or the 503 to answer instead."""
        service = ORDERS_SERVICE if ORDERS_SERVICE in region.services else region.services[0]
        verdict = service_verdict(ctx, region, service)
        if not verdict.healthy:
            return None, reply(False, service=service, reason=verdict.reason)
        try:
            url = ctx.backends["app_instances"].database_url(region.project, region.name, service)
        except AppUnavailable as exc:
            return None, reply(False, service=service, reason=str(exc))
        return url, None

    async def create_order(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            body = None
        order_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(order_id, str) or not 0 < len(order_id) <= 200:
            return JSONResponse({"error": "a JSON body with a string 'id' is needed"}, 400)
        return await run_in_threadpool(store_order, order_id, json.dumps(body))

    def store_order(order_id: str, body: str) -> Response:
        wait_for_instances(ctx, region, services_for_path(region, "/orders"))
        url, refused = orders_database()
        if url is None:
            assert refused is not None
            return refused
        try:
            insert_order(url, order_id, region.name, body)
        except OrderExists:
            return JSONResponse({"error": f"order {order_id} exists"}, status_code=409)
        except psycopg.Error as exc:
            # Not acknowledged: the client may retry (the id makes a retry safe).
            reason = f"database {where(url)}: {type(exc).__name__}"
            return reply(False, reason=reason)
        # 201 only after the commit returned: the write is acknowledged.
        return JSONResponse(
            {"id": order_id, "region": region.name, "database": where(url)}, status_code=201
        )

    def get_order(request: Request) -> Response:
        served(request)
        url, refused = orders_database()
        if url is None:
            assert refused is not None
            return refused
        try:
            found = read_order(url, request.path_params["id"])
        except psycopg.Error as exc:
            return reply(False, reason=f"database {where(url)}: {type(exc).__name__}")
        if found is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse({**found, "database": where(url)})

    routes = [
        Route("/orders", create_order, methods=["POST"]),
        Route("/orders/{id}", get_order),
        Route("/health", health),
        Route("/{name}/status", status),
        Route("/version", version),
        Route("/widgets/{rest:path}", widget),
    ]
    # Every region app feeds the one store the lab's Cloud Monitoring reads.
    metrics = ctx.backends.setdefault("metrics", RequestMetrics())

    def revision_of(service: str) -> str:
        serving = ctx.backends["run"].serving_revisions(region.project, region.name, service)
        return max(serving, key=lambda name: serving[name]) if serving else ""

    return MetricsMiddleware(
        build_app(ctx, f"region-app/{region.name}", routes),
        metrics,
        region.name,
        region.project,
        revision_of,
    )
