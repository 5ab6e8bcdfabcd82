"""Upload plumbing: hash-while-writing staging files, multipart/related and resumable parsing.

Bodies are streamed to disk in blocks and hashed on the way in, so a backup of more
than a gigabyte is never held in memory and never read twice.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import anyio.to_thread
import google_crc32c

from lab.storage.conditions import Preconditions
from lab.storage.exceptions import ChecksumMismatch, InvalidArgument, UploadNotFound

BLOCK = 1 << 20
# The JSON part of a multipart upload must fit in this much of the body's head.
_MAX_MULTIPART_HEAD = 8 << 20
_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class HashingWriter:
    """Appends to a staging file and keeps the md5 and crc32c of everything appended.

    It survives across requests for a resumable upload: each chunk reopens the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._md5 = hashlib.md5()
        self._crc = 0
        self._file: BinaryIO | None = None
        path.touch()

    def __enter__(self) -> HashingWriter:
        self._file = self.path.open("ab")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, data: bytes) -> None:
        assert self._file is not None, "use HashingWriter as a context manager"
        self._file.write(data)
        self._md5.update(data)
        self._crc = int(google_crc32c.extend(self._crc, data))
        self.size += len(data)

    @property
    def md5_hash(self) -> str:
        return b64(self._md5.digest())

    @property
    def crc32c(self) -> str:
        # Google encodes crc32c as the big-endian 4 bytes, base64.
        return b64(self._crc.to_bytes(4, "big"))

    def verify(self, declared: Mapping[str, Any]) -> None:
        """400 if the client declared an md5Hash or crc32c that the bytes do not have."""
        for key, kind, computed in (
            ("md5Hash", "MD5", self.md5_hash),
            ("crc32c", "CRC32C", self.crc32c),
        ):
            expected = declared.get(key)
            if expected is not None and expected != computed:
                raise ChecksumMismatch(kind, str(expected), computed)

    def discard(self) -> None:
        self.__exit__()
        self.path.unlink(missing_ok=True)


async def receive_into(stream: AsyncIterator[bytes], writer: HashingWriter, skip: int = 0) -> None:
    """Append a request body to ``writer``, dropping its first ``skip`` bytes (a resent
    chunk overlapping what was already stored). Disk and hashing run off the event loop."""
    pending = bytearray()
    with writer:
        async for chunk in stream:
            if skip:
                dropped = min(skip, len(chunk))
                chunk, skip = chunk[dropped:], skip - dropped
            pending += chunk
            if len(pending) >= BLOCK:
                await anyio.to_thread.run_sync(writer.write, bytes(pending))
                pending.clear()
        if pending:
            await anyio.to_thread.run_sync(writer.write, bytes(pending))


def multipart_boundary(content_type: str) -> bytes:
    """The boundary of a multipart/related upload. RFC 2046 quotes it with double
    quotes; gcloud (apitools) writes it with Python's ``%r``, so single quotes too."""
    match = re.search(r"boundary=(?:\"([^\"]+)\"|'([^']+)'|([^\s;]+))", content_type)
    if not content_type.lower().startswith("multipart/related") or match is None:
        raise InvalidArgument("uploadType=multipart needs a multipart/related body with a boundary")
    return next(group for group in match.groups() if group).encode()


@dataclass(frozen=True)
class _MultipartHead:
    metadata: dict[str, Any]
    media_type: str | None
    media_start: int  # offset of the first media byte in the head
    delimiter: bytes  # line break + "--" + boundary, in the body's own line breaks


async def receive_multipart(
    stream: AsyncIterator[bytes], boundary: bytes, writer: HashingWriter
) -> tuple[dict[str, Any], str | None]:
    """Split a multipart/related upload: returns (JSON metadata, media content type) and
    streams the media part into ``writer``. Only the tail that may hold the closing
    delimiter is held back, so the media part is never buffered whole.

    Lines may end in CRLF (RFC 2046, google-cloud-storage) or in a bare LF (gcloud's
    apitools frames its body with Python's email generator); the first delimiter line
    tells which, and the line break before each delimiter belongs to the delimiter.
    """
    head = bytearray()
    parts: _MultipartHead | None = None
    held = bytearray()
    with writer:
        async for chunk in stream:
            if parts is None:
                head += chunk
                parts = _parse_head(bytes(head), boundary)
                if parts is None:
                    if len(head) > _MAX_MULTIPART_HEAD:
                        raise InvalidArgument("multipart upload: metadata part not found")
                    continue
                held += head[parts.media_start :]
            else:
                held += chunk
            keep = len(parts.delimiter) + 8  # room for "--" and trailing line breaks
            if len(held) > BLOCK + keep:
                out, held = bytes(held[:-keep]), held[-keep:]
                await anyio.to_thread.run_sync(writer.write, out)
        if parts is None:
            raise InvalidArgument("multipart upload: body ended before the media part")
        end = held.rfind(parts.delimiter + b"--")
        if end < 0:
            raise InvalidArgument("multipart upload: closing boundary missing")
        await anyio.to_thread.run_sync(writer.write, bytes(held[:end]))
    return parts.metadata, parts.media_type


def _parse_head(head: bytes, boundary: bytes) -> _MultipartHead | None:
    """The metadata part and where the media starts, once the head holds both headers."""
    opening = b"--" + boundary
    first = head.find(opening)
    if first < 0 or len(head) < first + len(opening) + 2:
        return None
    if first > 0 and head[first - 1 : first] != b"\n":
        raise InvalidArgument("multipart upload: the first boundary does not start a line")
    after = head[first + len(opening) : first + len(opening) + 2]
    eol = b"\r\n" if after == b"\r\n" else b"\n"
    if not after.startswith(eol):
        raise InvalidArgument("multipart upload: malformed first boundary line")
    delimiter = eol + opening
    blank = eol + eol
    meta_headers_end = head.find(blank, first)
    second = head.find(delimiter, meta_headers_end) if meta_headers_end >= 0 else -1
    media_headers_end = head.find(blank, second) if second >= 0 else -1
    if media_headers_end < 0:
        return None
    try:
        metadata = json.loads(head[meta_headers_end + len(blank) : second] or b"{}")
    except ValueError as exc:
        raise InvalidArgument(f"multipart upload: metadata is not JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise InvalidArgument("multipart upload: metadata must be a JSON object")
    media_type = None
    media_headers = head[second + len(delimiter) : media_headers_end].decode("latin-1")
    for line in media_headers.split(eol.decode()):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-type":
            media_type = value.strip()
    return _MultipartHead(metadata, media_type, media_headers_end + len(blank), delimiter)


@dataclass(frozen=True)
class ContentRange:
    """A resumable PUT's ``Content-Range``: a byte span (or none: a status query) and
    the total size if the client knows it yet."""

    start: int | None
    end: int | None
    total: int | None


def parse_content_range(header: str | None) -> ContentRange:
    match = _CONTENT_RANGE.match((header or "bytes */*").strip())
    if match is None:
        raise InvalidArgument(f"Invalid Content-Range {header!r}")
    start, end, total = match.groups()
    if start is not None and int(end) < int(start):
        raise InvalidArgument(f"Invalid Content-Range {header!r}")
    return ContentRange(
        int(start) if start is not None else None,
        int(end) if end is not None else None,
        None if total == "*" else int(total),
    )


@dataclass
class ResumableSession:
    """A resumable upload between its POST and its final chunk."""

    upload_id: str
    bucket: str
    name: str
    fields: dict[str, Any]
    conditions: Preconditions
    writer: HashingWriter
    total: int | None = None
    # md5Hash/crc32c the client declared in the initiating metadata, checked at commit.
    declared: dict[str, Any] = field(default_factory=dict)
    # Set once finished, so a client that lost the final reply can ask again.
    result: Any = None
    error: Exception | None = None
    busy: bool = field(default=False)


class UploadSessions:
    """Open resumable uploads by id. Finished ones stay, so a client that lost the
    final reply can still ask for the object (until the lab resets)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, ResumableSession] = {}

    def add(self, session: ResumableSession) -> None:
        with self._lock:
            self._sessions[session.upload_id] = session

    def get(self, upload_id: str) -> ResumableSession:
        with self._lock:
            if upload_id not in self._sessions:
                raise UploadNotFound(upload_id)
            return self._sessions[upload_id]

    def cancel(self, upload_id: str) -> None:
        with self._lock:
            session = self._sessions.pop(upload_id, None)
        if session is None:
            raise UploadNotFound(upload_id)
        if session.result is None:
            session.writer.discard()

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
