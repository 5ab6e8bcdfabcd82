"""Route each request to the region the DNS A record names; cache what a CDN would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.http import build_app
from lab.frontdoor.cache import CachedResponse, EdgeCache, is_cacheable
from lab.frontdoor.resolver import CachingResolver


def create_front_door(
    ctx: LabContext,
    region_for_address: Callable[[str], str | None],
    region_app_url: Callable[[str], str | None],
    cache: EdgeCache,
    resolver: CachingResolver,
    ingress_refusal: Callable[[str, str], str | None] | None = None,
) -> ASGIApp:
    """``region_for_address`` maps an A record's address to a region; the app URL follows.

    The A record is read through ``resolver``, which keeps an answer for its TTL (capped),
    as users' resolvers do: a DNS change reaches the front door a moment after it is done.

    ``ingress_refusal(region, path)`` names the Cloud Run service whose ingress setting
    refuses load-balancer traffic for that path; such a request gets Google's 404 and
    never reaches the region. A cache hit is served at the edge, before any backend.
    """
    # One client per event loop: the same app is served over http and https, by two
    # servers on two threads, each with its own loop, and a pooled connection opened on
    # one loop fails on the other ("bound to a different event loop": a 500 seen when a
    # https probe followed an http one in the same lab, session 25).
    clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def client() -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()  # a loop is one server's thread: no race on it
        if loop not in clients:
            clients[loop] = httpx.AsyncClient(timeout=10.0)
        return clients[loop]

    async def proxy(request: Request) -> Response:
        host = (request.headers.get("host") or "").split(":")[0].lower()
        path = request.url.path
        if request.method == "GET" and is_cacheable(path):
            hit = cache.get(host, path)
            if hit is not None:
                return _cached(hit, "HIT")
        rrset = resolver.resolve(host + ".", "A")
        if rrset is None:
            return JSONResponse({"error": f"NXDOMAIN {host}"}, status_code=502)
        # A routing-policy set has no rrdatas; the lab's resolver answers plain sets only.
        addresses = rrset.get("rrdatas") or []
        region = region_for_address(addresses[0]) if addresses else None
        target = region_app_url(region) if region else None
        if region is None or target is None:
            return JSONResponse(
                {"error": f"{host} → {addresses or 'a routing policy'} reaches no region"},
                status_code=502,
            )
        refused_by = ingress_refusal(region, path) if ingress_refusal else None
        if refused_by is not None:
            # Cloud Run answers a request its ingress setting refuses with a plain 404.
            return _not_found(region, refused_by)
        try:
            upstream = await client().request(
                request.method,
                target + path,
                params=request.query_params,
                content=await request.body(),
            )
        except httpx.HTTPError as exc:
            return JSONResponse({"error": f"{region} unreachable: {exc}"}, status_code=502)
        content_type = upstream.headers.get("content-type", "application/json")
        if request.method == "GET" and is_cacheable(path) and upstream.status_code == 200:
            cache.put(host, path, CachedResponse(200, upstream.content, content_type, region))
        response = Response(upstream.content, upstream.status_code, media_type=content_type)
        response.headers["x-lab-region"] = region
        response.headers["x-lab-cache"] = "MISS"
        return response

    routes = [Route("/{rest:path}", proxy, methods=["GET", "POST", "PUT", "DELETE", "HEAD"])]
    return build_app(ctx, "front-door", routes)


def _not_found(region: str, service: str) -> Response:
    response = Response(
        "<html><title>Error 404 (Not Found)!!1</title>"
        "<p><b>404.</b> <ins>That's an error.</ins><p>The requested URL was not found on "
        "this server. <ins>That's all we know.</ins></html>",
        404,
        media_type="text/html",
    )
    response.headers["x-lab-region"] = region
    response.headers["x-lab-refused-by"] = f"ingress of {service}"
    return response


def _cached(hit: CachedResponse, state: str) -> Response:
    response = Response(hit.body, hit.status, media_type=hit.content_type)
    response.headers["x-lab-region"] = hit.region
    response.headers["x-lab-cache"] = state
    return response
