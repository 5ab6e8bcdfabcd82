"""Server-side copies: objects.rewrite, objects.copy and objects.compose.

Copies stream file to file off the event loop. A rewrite between buckets of one location
and storage class is ``done`` in one call; across locations or storage classes it moves
at most ``maxBytesRewrittenPerCall`` (or the lab's step) per call and hands out a
``rewriteToken`` until it is done, as Google documents (``rewrites.py``).
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
from lab.storage.resources import (
    StoredObject,
    check_object_name,
    patched_fields,
    writable_fields,
)
from lab.storage.rewrites import RewriteSession, check_max_bytes, new_token
from lab.storage.uploads import BLOCK, HashingWriter
from lab.storage.wire import base_url, conditions, int_param, path_param


class CopyResponses:
    """Handlers for .../rewriteTo/..., .../copyTo/... and .../compose."""

    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend

    async def rewrite(self, request: Request) -> Response:
        max_bytes = check_max_bytes(int_param(request, "maxBytesRewrittenPerCall"))
        token = request.query_params.get("rewriteToken")
        source_bucket = self.backend.get_bucket(path_param(request, "bucket"))
        dest_bucket = self.backend.get_bucket(path_param(request, "dest_bucket"))
        spans = (source_bucket.location, source_bucket.storage_class) != (
            dest_bucket.location,
            dest_bucket.storage_class,
        )
        if not token and not spans:
            obj = await self._copy(request)
            return _rewrite_reply(request, obj.size, obj.size, obj)
        session = (
            self._session(request, token, max_bytes)
            if token
            else await self._start(request, max_bytes)
        )
        await anyio.to_thread.run_sync(self._step, session)
        if session.done_bytes < session.object_size:
            return _rewrite_reply(request, session.done_bytes, session.object_size, token=session)
        self.backend.rewrites.close(session.token)
        overrides = await read_json(request)
        source = self.backend.get_object(
            session.source_bucket, session.source_name, generation=session.source_generation
        )
        obj = self.backend.commit_object(
            session.dest_bucket,
            session.dest_name,
            session.writer,
            patched_fields(source.fields, overrides),
            conditions(request),
        )
        return _rewrite_reply(request, obj.size, obj.size, obj)

    async def _start(self, request: Request, max_bytes: int | None) -> RewriteSession:
        """The first call of a rewrite in steps: preconditions now, as for a whole copy."""
        source, handle = self.backend.open_object(
            path_param(request, "bucket"),
            path_param(request, "object"),
            conditions(request, source=True),
            int_param(request, "sourceGeneration"),
        )
        handle.close()
        dest_bucket, dest_name = path_param(request, "dest_bucket"), path_param(request, "dest")
        check_object_name(dest_name)
        self.backend.get_bucket(dest_bucket)
        return self.backend.rewrites.open(
            RewriteSession(
                token=new_token(),
                source_bucket=source.bucket,
                source_name=source.name,
                source_generation=source.generation,
                dest_bucket=dest_bucket,
                dest_name=dest_name,
                max_bytes_per_call=max_bytes,
                step_bytes=max_bytes or self.backend.rewrites.step_bytes,
                writer=self.backend.new_writer(),
                object_size=source.size,
                corrupt=self.backend.rewrites.take_corruption(dest_bucket),
            )
        )

    def _session(self, request: Request, token: str, max_bytes: int | None) -> RewriteSession:
        return self.backend.rewrites.get(
            token,
            path_param(request, "bucket"),
            path_param(request, "object"),
            path_param(request, "dest_bucket"),
            path_param(request, "dest"),
            max_bytes,
        )

    def _step(self, session: RewriteSession) -> None:
        """Append the session's next step of source bytes to its staging file."""
        _, handle = self.backend.open_object(
            session.source_bucket, session.source_name, generation=session.source_generation
        )
        with handle, session.writer:
            handle.seek(session.done_bytes)
            left = session.step_bytes
            while left and (block := handle.read(min(BLOCK, left))):
                if session.corrupt and session.done_bytes == 0:
                    block = _flipped(block)
                session.writer.write(block)
                session.done_bytes += len(block)
                left -= len(block)

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
        dest_bucket = path_param(request, "dest_bucket")
        corrupt = self.backend.rewrites.take_corruption(dest_bucket)
        await anyio.to_thread.run_sync(_append_all, [handle], writer, corrupt)
        return self.backend.commit_object(
            dest_bucket,
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


def _append_all(handles: list[BinaryIO], writer: HashingWriter, corrupt: bool = False) -> None:
    with writer:
        for handle in handles:
            with handle:
                while block := handle.read(BLOCK):
                    if corrupt and writer.size == 0:
                        block = _flipped(block)
                    writer.write(block)


def _flipped(block: bytes) -> bytes:
    """The block with its first byte inverted: a copy the lab was told to damage."""
    return bytes([block[0] ^ 0xFF]) + block[1:] if block else block


def _rewrite_reply(
    request: Request,
    rewritten: int,
    size: int,
    obj: StoredObject | None = None,
    token: RewriteSession | None = None,
) -> Response:
    body: dict[str, Any] = {
        "kind": "storage#rewriteResponse",
        "totalBytesRewritten": str(rewritten),
        "objectSize": str(size),
        "done": obj is not None,
    }
    if obj is not None:
        body["resource"] = obj.to_json(base_url(request))
    if token is not None:
        body["rewriteToken"] = token.token
    return json_response(body)


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
