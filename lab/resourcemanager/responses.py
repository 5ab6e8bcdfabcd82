"""Cloud Resource Manager v3 routes: read the request, call the backend, return Google's JSON.

google-cloud-resource-manager's REST transport sends
``POST /v3/projects/{project}:testIamPermissions`` with ``{"permissions": [...]}``
(discovery: ``v3/{+resource}:testIamPermissions``, resource ``projects/[^/]+``). Only that
method is served; any other answers 404 rather than something the lab made up.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lab.core.http import json_response, read_json, reads
from lab.resourcemanager.exceptions import InvalidArgument, MethodNotFound
from lab.resourcemanager.models import ResourceManagerBackend


class ResourceManagerResponses:
    def __init__(self, backend: ResourceManagerBackend) -> None:
        self.backend = backend

    def routes(self) -> list[Route]:
        return [
            Route(
                "/v3/projects/{project}:testIamPermissions",
                self.test_iam_permissions,
                methods=["POST"],
            ),
            Route("/{path:path}", unknown_path, methods=["GET", "POST", "PATCH", "DELETE"]),
        ]

    @reads
    async def test_iam_permissions(self, request: Request) -> Response:
        body = await read_json(request)
        permissions = body.get("permissions", [])
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise InvalidArgument("permissions: must be a list of strings")
        return json_response(
            self.backend.test_iam_permissions(request.path_params["project"], permissions)
        )


async def unknown_path(request: Request) -> Response:
    raise MethodNotFound(f"Method not found: {request.method} {request.url.path}")
