"""Server-side copies: objects.rewrite, objects.copy and objects.compose.

The lab copies in one call, streaming file to file off the event loop, so a rewrite is
always ``done`` and never hands out a rewriteToken.
"""

from __future__ import annotations

from typing import Any, BinaryIO

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from lab.core.http import json_response, read_json
from lab.storage.conditions import Preconditions, parse_int
from lab.storage.exceptions import InvalidArgument
from lab.storage.models import StorageBackend
from lab.storage.resources import StoredObject, patched_fields, writable_fields
from lab.storage.uploads import BLOCK, HashingWriter
from lab.storage.wire import base_url, conditions, int_param, path_param


class CopyResponses:
    """Handlers for .../rewriteTo/..., .../copyTo/... and .../compose."""

    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend

    async def rewrite(self, request: Request) -> Response:
        obj = await self._copy(request)
        size = str(obj.size)
        return json_response(
            {
                "kind": "storage#rewriteResponse",
                "totalBytesRewritten": size,
                "objectSize": size,
                "done": True,
                "resource": obj.to_json(base_url(request)),
            }
        )

    async def copy(self, request: Request) -> Response:
        return json_response((await self._copy(request)).to_json(base_url(request)))

    async def _copy(self, request: Request) -> StoredObject:
        overrides = await read_json(request)
        source, handle = self.backend.open_object(
            path_param(request, "bucket"),
            path_param(request, "object"),
            conditions(request, source=True),
            int_param(request, "sourceGeneration"),
        )
        writer = self.backend.new_writer()
        await anyio.to_thread.run_sync(_append_all, [handle], writer)
        return self.backend.commit_object(
            path_param(request, "dest_bucket"),
            path_param(request, "dest"),
            writer,
            patched_fields(source.fields, overrides),
            conditions(request),
        )

    async def compose(self, request: Request) -> Response:
        body = await read_json(request)
        bucket = path_param(request, "bucket")
        sources = body.get("sourceObjects")
        if not isinstance(sources, list) or not 1 <= len(sources) <= 32:
            raise InvalidArgument("compose needs 1 to 32 sourceObjects")
        handles: list[BinaryIO] = []
        try:
            for source in map(_mapping, sources):
                wanted = _mapping(source.get("objectPreconditions")).get("ifGenerationMatch")
                _, handle = self.backend.open_object(
                    bucket,
                    str(source.get("name", "")),
                    Preconditions(if_generation_match=parse_int(wanted, "ifGenerationMatch")),
                    parse_int(source.get("generation"), "generation"),
                )
                handles.append(handle)
        except BaseException:
            for handle in handles:
                handle.close()
            raise
        writer = self.backend.new_writer()
        await anyio.to_thread.run_sync(_append_all, handles, writer)
        obj = self.backend.commit_object(
            bucket,
            path_param(request, "object"),
            writer,
            writable_fields(_mapping(body.get("destination"))),
            conditions(request),
        )
        return json_response(obj.to_json(base_url(request)))


def _append_all(handles: list[BinaryIO], writer: HashingWriter) -> None:
    with writer:
        for handle in handles:
            with handle:
                while block := handle.read(BLOCK):
                    writer.write(block)


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
