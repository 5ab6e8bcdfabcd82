"""Cloud DNS v1 routes: read the request, call the backend, return Google's JSON.

google-cloud-dns sends ``/dns/v1/projects/{project}/managedZones/...``; gcloud's
``record-sets describe/create/update/delete`` use the rrsets resource methods
(``.../rrsets`` and ``.../rrsets/{name}/{type}``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lab.core.http import json_response, read_json
from lab.dns.exceptions import InvalidChange, UnknownResource
from lab.dns.models import DnsBackend

PREFIX = "/dns/v1/projects/{project}/managedZones"
RRSET = PREFIX + "/{zone}/rrsets/{name}/{type}"


class DnsResponses:
    def __init__(self, backend: DnsBackend) -> None:
        self.backend = backend

    def routes(self) -> list[Route]:
        return [
            Route(PREFIX, self.list_zones, methods=["GET"]),
            Route(PREFIX, self.create_zone, methods=["POST"]),
            Route(PREFIX + "/{zone}", self.get_zone, methods=["GET"]),
            Route(PREFIX + "/{zone}/rrsets", self.list_rrsets, methods=["GET"]),
            Route(PREFIX + "/{zone}/rrsets", self.create_rrset, methods=["POST"]),
            Route(RRSET, self.get_rrset, methods=["GET"]),
            Route(RRSET, self.patch_rrset, methods=["PATCH"]),
            Route(RRSET, self.delete_rrset, methods=["DELETE"]),
            Route(PREFIX + "/{zone}/changes", self.list_changes, methods=["GET"]),
            Route(PREFIX + "/{zone}/changes", self.create_change, methods=["POST"]),
            Route(PREFIX + "/{zone}/changes/{change_id}", self.get_change, methods=["GET"]),
            # Unknown paths get Google's 404 JSON rather than Starlette's plain text.
            Route("/{path:path}", unknown_path, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]

    async def list_zones(self, request: Request) -> Response:
        query = request.query_params
        return json_response(
            self.backend.list_zones(
                request.path_params["project"],
                query.get("dnsName"),
                _max_results(request),
                query.get("pageToken"),
            )
        )

    async def create_zone(self, request: Request) -> Response:
        body = await read_json(request)
        name, dns_name, description = (body.get(k) for k in ("name", "dnsName", "description"))
        if not isinstance(name, str) or not isinstance(dns_name, str):
            raise InvalidChange("A managed zone needs 'name' and 'dnsName'")
        return json_response(
            self.backend.create_zone(
                request.path_params["project"], name, dns_name, str(description or "")
            )
        )

    async def get_zone(self, request: Request) -> Response:
        params = request.path_params
        return json_response(self.backend.get_zone(params["project"], params["zone"]))

    async def list_rrsets(self, request: Request) -> Response:
        params, query = request.path_params, request.query_params
        return json_response(
            self.backend.list_rrsets(
                params["project"],
                params["zone"],
                query.get("name"),
                query.get("type"),
                _max_results(request),
                query.get("pageToken"),
            )
        )

    async def get_rrset(self, request: Request) -> Response:
        p = request.path_params
        return json_response(self.backend.read_rrset(p["project"], p["zone"], p["name"], p["type"]))

    async def create_rrset(self, request: Request) -> Response:
        params = request.path_params
        body = await read_json(request)
        return json_response(self.backend.create_rrset(params["project"], params["zone"], body))

    async def patch_rrset(self, request: Request) -> Response:
        p = request.path_params
        body = await read_json(request)
        return json_response(
            self.backend.patch_rrset(p["project"], p["zone"], p["name"], p["type"], body)
        )

    async def delete_rrset(self, request: Request) -> Response:
        p = request.path_params
        return json_response(
            self.backend.delete_rrset(p["project"], p["zone"], p["name"], p["type"])
        )

    async def create_change(self, request: Request) -> Response:
        params = request.path_params
        body = await read_json(request)
        return json_response(self.backend.create_change(params["project"], params["zone"], body))

    async def get_change(self, request: Request) -> Response:
        params = request.path_params
        change = self.backend.get_change(params["project"], params["zone"], params["change_id"])
        return json_response(change)

    async def list_changes(self, request: Request) -> Response:
        params, query = request.path_params, request.query_params
        order = query.get("sortOrder", "ascending")
        if order not in ("ascending", "descending"):
            raise InvalidChange(f"Invalid value for 'sortOrder': {order!r}")
        return json_response(
            self.backend.list_changes(
                params["project"],
                params["zone"],
                order == "descending",
                _max_results(request),
                query.get("pageToken"),
            )
        )


async def unknown_path(request: Request) -> Response:
    raise UnknownResource("path", request.url.path)


def _max_results(request: Request) -> int | None:
    raw = request.query_params.get("maxResults")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidChange(f"Invalid value for 'maxResults': {raw!r}") from None
