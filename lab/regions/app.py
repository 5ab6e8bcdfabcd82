"""The app one region serves: /health, /<service>/status, /version, /widgets/*."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.http import build_app
from lab.regions.health import (
    RegionSpec,
    database_verdict,
    region_verdict,
    service_verdict,
    wait_for_instances,
)
from lab.regions.metrics import MetricsMiddleware, RequestMetrics
from lab.regions.routing import STATUS_PATHS, services_for_path


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
            verdict = database_verdict(ctx, region)
        return reply(verdict.healthy, service=service, reason=verdict.reason)

    def version(request: Request) -> Response:
        # Cacheable on purpose: the front door keeps it until a CDN invalidation, so a
        # verification that sees the new region proves the purge happened.
        served(request)
        return JSONResponse({"region": region.name, "project": region.project})

    def widget(request: Request) -> Response:
        served(request)
        return JSONResponse({"region": region.name, "widget": request.path_params["rest"]})

    routes = [
        Route("/health", health),
        Route("/{name}/status", status),
        Route("/version", version),
        Route("/widgets/{rest:path}", widget),
    ]
    # Every region app feeds the one store the control API's /_lab/metrics reads.
    metrics = ctx.backends.setdefault("metrics", RequestMetrics())
    return MetricsMiddleware(
        build_app(ctx, f"region-app/{region.name}", routes), metrics, region.name
    )
