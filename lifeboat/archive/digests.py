"""Digests of what an archive holds, and the small stream wrappers that compute them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


class Writable(Protocol):
    """Where the writer sends the object: only `.write()` is called (e.g. a GCS BlobWriter)."""

    def write(self, data: bytes, /) -> object: ...


class Readable(Protocol):
    """Where the reader takes the object from: only `.read(n)` is called (e.g. a BlobReader)."""

    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str
    documents: int | None = None
    """How many BSON documents a `.bson` member holds, when the reader counted them."""


@dataclass(frozen=True)
class ArchiveSummary:
    files: dict[str, FileDigest]
    object_bytes: int
    object_sha256: str
    """SHA-256 of the exact bytes of the encrypted object (what GCS stores)."""
    key_id: str
    chunk_size: int
    chunks: int
    compressed_bytes: int
    """Size of the gzip stream, before encryption."""
    tar_bytes: int
    """Size of the tar stream, before gzip."""


def read_exact(source: Readable, size: int) -> bytes:
    """Read `size` bytes, or fewer only at the end of the stream: `.read(n)` may return less."""
    first = source.read(size)
    if len(first) == size or not first:
        return first
    parts = [first]
    got = len(first)
    while got < size:
        part = source.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class HashingWriter:
    """Counts and hashes every byte on its way to `target`."""

    def __init__(self, target: Writable) -> None:
        self._target = target
        self._hash = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes, /) -> int:
        self._hash.update(data)
        self.count += len(data)
        self._target.write(data)
        return len(data)

    def flush(self) -> None:
        """For `gzip.GzipFile`, which asks its file object for it: the target's owner flushes."""

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class HashingReader:
    """Counts and hashes every byte read through it."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.count = 0
        self.short_read = False

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        if len(data) < size:
            self.short_read = True
        self._hash.update(data)
        self.count += len(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class CountingWriter:
    """Counts the bytes on their way to `target` (the tar stream's size, before gzip).

    Once `discard()` is called, bytes go nowhere: an abandoned tar can be closed safely.
    """

    def __init__(self, target: Writable) -> None:
        self._target: Writable | None = target
        self.count = 0

    def write(self, data: bytes, /) -> int:
        if self._target is not None:
            self.count += len(data)
            self._target.write(data)
        return len(data)

    def retarget(self, target: Writable, written: int) -> None:
        """Go on into ``target``, counting ``written`` bytes that went around this writer."""
        if self._target is not None:
            self._target = target
            self.count += written

    def discard(self) -> None:
        self._target = None

    def flush(self) -> None:
        pass
