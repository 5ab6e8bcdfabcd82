"""storage/v1 JSON routes for buckets and object metadata: read the request, call the
backend, shape the reply. Media (uploads, downloads) lives in ``media.py``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from lab.core.http import json_response, read_json
from lab.storage.copies import CopyResponses
from lab.storage.exceptions import InvalidArgument
from lab.storage.listing import MAX_RESULTS, ListQuery
from lab.storage.media import MediaResponses
from lab.storage.models import StorageBackend
from lab.storage.wire import base_url, conditions, int_param, path_param, route


class StorageResponses:
    """Handlers for /storage/v1/b/... (buckets, object metadata, copies)."""

    def __init__(self, backend: StorageBackend, page_cap: int) -> None:
        self.backend = backend
        self.page_cap = page_cap
        self.media = MediaResponses(backend)
        self.copies = CopyResponses(backend)

    def routes(self) -> list[BaseRoute]:
        bucket = "/storage/v1/b/{bucket}"
        obj = bucket + "/o/{object:path}"
        return [
            route("/storage/v1/b", self.list_buckets, ["GET"]),
            route("/storage/v1/b", self.insert_bucket, ["POST"]),
            route(bucket, self.get_bucket, ["GET"]),
            route(bucket, self.patch_bucket, ["PATCH"]),
            route(bucket, self.update_bucket, ["PUT"]),
            route(bucket, self.delete_bucket, ["DELETE"]),
            route(bucket + "/o", self.list_objects, ["GET"]),
            route(obj + "/rewriteTo/b/{dest_bucket}/o/{dest:path}", self.copies.rewrite, ["POST"]),
            route(obj + "/copyTo/b/{dest_bucket}/o/{dest:path}", self.copies.copy, ["POST"]),
            route(obj + "/compose", self.copies.compose, ["POST"]),
            route(obj, self.get_object, ["GET"]),
            route(obj, self.patch_object, ["PATCH"]),
            route(obj, self.update_object, ["PUT"]),
            route(obj, self.delete_object, ["DELETE"]),
            *self.media.routes(),
        ]

    # -- buckets ---------------------------------------------------------------------

    async def list_buckets(self, request: Request) -> Response:
        project = request.query_params.get("project")
        if not project:
            raise InvalidArgument("Required parameter: project")
        buckets = self.backend.list_buckets(project, request.query_params.get("prefix", ""))
        token = request.query_params.get("pageToken")
        if token:
            buckets = [b for b in buckets if b.name > token]
        limit = min(int_param(request, "maxResults") or MAX_RESULTS, self.page_cap)
        body: dict[str, Any] = {"kind": "storage#buckets"}
        if buckets:
            body["items"] = [b.to_json(base_url(request)) for b in buckets[:limit]]
        if len(buckets) > limit:
            body["nextPageToken"] = buckets[limit - 1].name
        return json_response(body)

    async def insert_bucket(self, request: Request) -> Response:
        project = request.query_params.get("project")
        body = await read_json(request)
        name = body.get("name")
        if not project or not isinstance(name, str):
            raise InvalidArgument("Required: project parameter and bucket name")
        bucket = self.backend.insert_bucket(
            project,
            name,
            str(body.get("location") or "US"),
            body.get("labels"),  # type: ignore[arg-type]
            str(body.get("storageClass") or "STANDARD"),
        )
        return json_response(bucket.to_json(base_url(request)))

    async def get_bucket(self, request: Request) -> Response:
        bucket = self.backend.get_bucket(path_param(request, "bucket"))
        return json_response(bucket.to_json(base_url(request)))

    async def patch_bucket(self, request: Request) -> Response:
        return await self._change_bucket(request, replace_all=False)

    async def update_bucket(self, request: Request) -> Response:
        return await self._change_bucket(request, replace_all=True)

    async def _change_bucket(self, request: Request, *, replace_all: bool) -> Response:
        changes = await read_json(request)
        bucket = self.backend.patch_bucket(
            path_param(request, "bucket"), changes, conditions(request), replace_all=replace_all
        )
        return json_response(bucket.to_json(base_url(request)))

    async def delete_bucket(self, request: Request) -> Response:
        self.backend.delete_bucket(path_param(request, "bucket"), conditions(request))
        return Response(status_code=204)

    # -- objects -----------------------------------------------------------------------

    async def list_objects(self, request: Request) -> Response:
        params = request.query_params
        query = ListQuery(
            prefix=params.get("prefix", ""),
            delimiter=params.get("delimiter", ""),
            max_results=min(int_param(request, "maxResults") or MAX_RESULTS, self.page_cap),
            page_token=params.get("pageToken") or None,
            start_offset=params.get("startOffset", ""),
            end_offset=params.get("endOffset", ""),
        )
        items, prefixes, token = self.backend.list_objects_page(
            path_param(request, "bucket"), query
        )
        body: dict[str, Any] = {"kind": "storage#objects"}
        if items:
            body["items"] = [obj.to_json(base_url(request)) for obj in items]
        if prefixes:
            body["prefixes"] = prefixes
        if token:
            body["nextPageToken"] = token
        return json_response(body)

    async def get_object(self, request: Request) -> Response:
        if request.query_params.get("alt") == "media":
            return await self.media.download(request)
        obj = self.backend.get_object(
            path_param(request, "bucket"),
            path_param(request, "object"),
            conditions(request),
            int_param(request, "generation"),
        )
        return json_response(obj.to_json(base_url(request)))

    async def patch_object(self, request: Request) -> Response:
        return await self._change_object(request, replace_all=False)

    async def update_object(self, request: Request) -> Response:
        return await self._change_object(request, replace_all=True)

    async def _change_object(self, request: Request, *, replace_all: bool) -> Response:
        changes = await read_json(request)
        obj = self.backend.patch_object(
            path_param(request, "bucket"),
            path_param(request, "object"),
            changes,
            conditions(request),
            replace_all=replace_all,
            generation=int_param(request, "generation"),
        )
        return json_response(obj.to_json(base_url(request)))

    async def delete_object(self, request: Request) -> Response:
        self.backend.delete_object(
            path_param(request, "bucket"),
            path_param(request, "object"),
            conditions(request),
            int_param(request, "generation"),
        )
        return Response(status_code=204)
