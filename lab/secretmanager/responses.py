"""Secret Manager v1 routes: read the request, call the backend, return Google's JSON.

google-cloud-secret-manager's REST transport and gcloud send
``/v1/projects/{project}/secrets[/{secret}[/versions[/{version}]]]`` with custom verbs
after a colon (``:addVersion``, ``:access``, ``:disable``, ``:enable``, ``:destroy``).
Routes with a verb come first: a plain ``{secret}`` would otherwise swallow the colon.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lab.core.http import json_response, read_json
from lab.secretmanager.exceptions import InvalidArgument, SecretNotFound
from lab.secretmanager.models import SecretManagerBackend

SECRETS = "/v1/projects/{project}/secrets"
SECRET = SECRETS + "/{secret}"
VERSION = SECRET + "/versions/{version}"


class SecretManagerResponses:
    def __init__(self, backend: SecretManagerBackend) -> None:
        self.backend = backend

    def routes(self) -> list[Route]:
        return [
            Route(SECRET + ":addVersion", self.add_version, methods=["POST"]),
            Route(VERSION + ":access", self.access_version, methods=["GET"]),
            Route(VERSION + ":enable", self.enable_version, methods=["POST"]),
            Route(VERSION + ":disable", self.disable_version, methods=["POST"]),
            Route(VERSION + ":destroy", self.destroy_version, methods=["POST"]),
            Route(SECRETS, self.list_secrets, methods=["GET"]),
            Route(SECRETS, self.create_secret, methods=["POST"]),
            Route(SECRET + "/versions", self.list_versions, methods=["GET"]),
            Route(VERSION, self.get_version, methods=["GET"]),
            Route(SECRET, self.get_secret, methods=["GET"]),
            Route(SECRET, self.delete_secret, methods=["DELETE"]),
            Route("/{path:path}", unknown_path, methods=["GET", "POST", "PATCH", "DELETE"]),
        ]

    async def create_secret(self, request: Request) -> Response:
        secret_id = request.query_params.get("secretId", "")
        body = await read_json(request)
        return json_response(
            self.backend.create_secret(request.path_params["project"], secret_id, body)
        )

    async def get_secret(self, request: Request) -> Response:
        p = request.path_params
        return json_response(self.backend.get_secret(p["project"], p["secret"]))

    async def list_secrets(self, request: Request) -> Response:
        _no_filter(request)
        size, token = _paging(request)
        return json_response(self.backend.list_secrets(request.path_params["project"], size, token))

    async def delete_secret(self, request: Request) -> Response:
        p = request.path_params
        etag = request.query_params.get("etag")
        return json_response(self.backend.delete_secret(p["project"], p["secret"], etag))

    async def add_version(self, request: Request) -> Response:
        p = request.path_params
        body = await read_json(request)
        return json_response(self.backend.add_version(p["project"], p["secret"], body))

    async def list_versions(self, request: Request) -> Response:
        _no_filter(request)
        p = request.path_params
        size, token = _paging(request)
        return json_response(self.backend.list_versions(p["project"], p["secret"], size, token))

    async def get_version(self, request: Request) -> Response:
        p = request.path_params
        return json_response(self.backend.get_version(p["project"], p["secret"], p["version"]))

    async def access_version(self, request: Request) -> Response:
        p = request.path_params
        return json_response(self.backend.access_version(p["project"], p["secret"], p["version"]))

    async def enable_version(self, request: Request) -> Response:
        return await self._change_state(request, "enable")

    async def disable_version(self, request: Request) -> Response:
        return await self._change_state(request, "disable")

    async def destroy_version(self, request: Request) -> Response:
        return await self._change_state(request, "destroy")

    async def _change_state(self, request: Request, action: str) -> Response:
        p = request.path_params
        etag = (await read_json(request)).get("etag")
        return json_response(
            self.backend.change_state(
                p["project"], p["secret"], p["version"], action, str(etag) if etag else None
            )
        )


async def unknown_path(request: Request) -> Response:
    raise SecretNotFound(f"Method not found: {request.method} {request.url.path}")


def _paging(request: Request) -> tuple[int, str]:
    raw = request.query_params.get("pageSize", "0")
    try:
        size = int(raw)
    except ValueError:
        raise InvalidArgument(f"Invalid value for page_size: {raw!r}.") from None
    return size, request.query_params.get("pageToken", "")


def _no_filter(request: Request) -> None:
    # Honest about a gap: a filter the lab ignored would list what Google would not.
    if request.query_params.get("filter"):
        raise InvalidArgument("The lab's Secret Manager does not implement list filters.")
