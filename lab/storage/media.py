"""Object data over the wire: uploads (media, multipart, resumable) and ranged downloads."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from lab.core.errors import ApiError, Unavailable
from lab.core.http import api_error_response, json_response, read_json
from lab.storage.conditions import parse_int
from lab.storage.exceptions import InvalidArgument
from lab.storage.models import StorageBackend
from lab.storage.resources import DEFAULT_CONTENT_TYPE, writable_fields
from lab.storage.uploads import (
    BLOCK,
    ResumableSession,
    multipart_boundary,
    parse_content_range,
    receive_into,
    receive_multipart,
)
from lab.storage.wire import base_url, conditions, int_param, path_param, route

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_UPLOAD = "/upload/storage/v1/b/{bucket}/o"
# The storage v1 discovery document gives resumable uploads their own path
# (mediaUpload.protocols.resumable.path); gcloud's apitools client uses it, the Python
# client the simple one. Both take every uploadType and lead to the same sessions.
_RESUMABLE_UPLOAD = "/resumable/upload/storage/v1/b/{bucket}/o"


class MediaResponses:
    """Handlers for /upload/storage/v1 and /download/storage/v1 (and ``alt=media``)."""

    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend

    def routes(self) -> list[BaseRoute]:
        return [
            *(
                route(path, handler, [method])
                for path in (_UPLOAD, _RESUMABLE_UPLOAD)
                for handler, method in (
                    (self.upload, "POST"),
                    (self.put_chunk, "PUT"),
                    (self.cancel_upload, "DELETE"),
                )
            ),
            route("/download/storage/v1/b/{bucket}/o/{object:path}", self.download, ["GET"]),
        ]

    # -- uploads -----------------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        """objects.insert with media: uploadType=media, multipart, or resumable (initiate)."""
        bucket = path_param(request, "bucket")
        self.backend.get_bucket(bucket)  # 404 before reading a body that cannot land
        kind = request.query_params.get("uploadType")
        if kind == "resumable":
            return await self._initiate(request, bucket)
        writer = self.backend.new_writer()
        try:
            if kind == "media":
                await receive_into(request.stream(), writer)
                metadata: dict[str, Any] = {}
                media_type = request.headers.get("content-type")
            elif kind == "multipart":
                boundary = multipart_boundary(request.headers.get("content-type", ""))
                metadata, media_type = await receive_multipart(request.stream(), boundary, writer)
            else:
                raise InvalidArgument(f"Unsupported uploadType {kind!r}")
        except BaseException:
            writer.discard()
            raise
        name = request.query_params.get("name") or str(metadata.get("name") or "")
        fields = {"contentType": media_type or DEFAULT_CONTENT_TYPE, **writable_fields(metadata)}
        obj = self.backend.commit_object(
            bucket, name, writer, fields, conditions(request), declared=metadata
        )
        return json_response(obj.to_json(base_url(request)))

    async def _initiate(self, request: Request, bucket: str) -> Response:
        metadata = await read_json(request)
        name = request.query_params.get("name") or str(metadata.get("name") or "")
        media_type = request.headers.get("x-upload-content-type") or DEFAULT_CONTENT_TYPE
        session = self.backend.start_resumable_upload(
            bucket,
            name,
            {"contentType": media_type, **writable_fields(metadata)},
            conditions(request),
            parse_int(request.headers.get("x-upload-content-length"), "X-Upload-Content-Length"),
        )
        session.declared = {k: metadata[k] for k in ("md5Hash", "crc32c") if k in metadata}
        location = (
            f"{base_url(request)}/upload/storage/v1/b/{bucket}/o"
            f"?uploadType=resumable&upload_id={session.upload_id}"
        )
        return Response(
            status_code=200,
            headers={"Location": location, "X-GUploader-UploadID": session.upload_id},
        )

    async def put_chunk(self, request: Request) -> Response:
        """One chunk, or a status query, of a resumable upload."""
        session = self.backend.uploads.get(request.query_params.get("upload_id", ""))
        if session.error is not None:
            raise session.error
        if session.result is not None:  # the client lost our final reply and asks again
            return json_response(session.result.to_json(base_url(request)))
        if session.busy:
            raise Unavailable("Another request for this upload is in progress")
        session.busy = True
        try:
            return await self._receive_chunk(request, session)
        finally:
            session.busy = False

    async def _receive_chunk(self, request: Request, session: ResumableSession) -> Response:
        span = parse_content_range(request.headers.get("content-range"))
        if span.total is not None:
            if session.total is not None and session.total != span.total:
                raise InvalidArgument(f"Upload size changed from {session.total} to {span.total}")
            session.total = span.total
        writer = session.writer
        if span.start is not None:
            if span.start > writer.size:
                raise InvalidArgument(
                    f"Chunk starts at byte {span.start} but only {writer.size} were received"
                )
            # A resent chunk may overlap bytes already stored; keep the stored ones.
            await receive_into(request.stream(), writer, skip=writer.size - span.start)
        if session.total is not None and writer.size > session.total:
            raise InvalidArgument(f"Received {writer.size} bytes for a {session.total}-byte upload")
        if session.total is None or writer.size < session.total:
            headers = {"Range": f"bytes=0-{writer.size - 1}"} if writer.size else {}
            return Response(status_code=308, headers=headers)
        declared = {**session.declared, **_goog_hash(request.headers.get("x-goog-hash"))}
        try:
            obj = self.backend.commit_object(
                session.bucket, session.name, writer, session.fields, session.conditions, declared
            )
        except ApiError as error:
            session.error = error
            raise
        session.result = obj
        return json_response(obj.to_json(base_url(request)))

    async def cancel_upload(self, request: Request) -> Response:
        self.backend.uploads.cancel(request.query_params.get("upload_id", ""))
        return Response(status_code=499)

    # -- downloads ---------------------------------------------------------------------

    async def download(self, request: Request) -> Response:
        """Object media, whole (200) or one byte range (206), streamed from disk."""
        obj, handle = self.backend.open_object(
            path_param(request, "bucket"),
            path_param(request, "object"),
            conditions(request),
            int_param(request, "generation"),
        )
        encoding = str(obj.fields.get("contentEncoding", "identity"))
        headers = {
            "X-Goog-Hash": f"crc32c={obj.crc32c},md5={obj.md5_hash}",
            "X-Goog-Generation": str(obj.generation),
            "X-Goog-Metageneration": str(obj.metageneration),
            "X-Goog-Stored-Content-Length": str(obj.size),
            "X-Goog-Stored-Content-Encoding": encoding,
            "ETag": obj.etag,
            "Accept-Ranges": "bytes",
        }
        span = _byte_range(request.headers.get("range"), obj.size)
        if isinstance(span, str):
            handle.close()
            error = ApiError("The requested range cannot be satisfied.", code=416)
            response = api_error_response(error)
            response.headers["Content-Range"] = f"bytes */{obj.size}"
            return response
        start, length, status = 0, obj.size, 200
        if span is not None:
            start, end = span
            length, status = end - start + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{obj.size}"
        headers["Content-Length"] = str(length)
        if encoding == "gzip":
            # Served as stored, like GCS to a client that accepts gzip (the Python client
            # always does); decompressive transcoding for other clients is not modelled.
            headers["Content-Encoding"] = "gzip"
        return StreamingResponse(
            _file_chunks(handle, start, length), status, headers, media_type=obj.content_type
        )


def _goog_hash(header: str | None) -> dict[str, str]:
    """``X-Goog-Hash: crc32c=...,md5=...`` as object fields."""
    declared: dict[str, str] = {}
    for part in (header or "").split(","):
        kind, _, value = part.strip().partition("=")
        if kind in ("crc32c", "md5") and value:
            declared["md5Hash" if kind == "md5" else "crc32c"] = value
    return declared


def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) byte of a single ``Range``, None for the whole object (absent or
    unparseable headers are ignored, as HTTP allows), or "unsatisfiable"."""
    match = _RANGE.match((header or "").strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        if int(last) == 0 or size == 0:
            return "unsatisfiable"
        return max(size - int(last), 0), size - 1
    if int(first) >= size or (last != "" and int(last) < int(first)):
        return "unsatisfiable"
    return int(first), min(int(last), size - 1) if last != "" else size - 1


async def _file_chunks(handle: BinaryIO, start: int, length: int) -> AsyncIterator[bytes]:
    try:
        await anyio.to_thread.run_sync(handle.seek, start)
        while length > 0:
            block = await anyio.to_thread.run_sync(handle.read, min(BLOCK, length))
            if not block:
                break
            length -= len(block)
            yield block
    finally:
        handle.close()
