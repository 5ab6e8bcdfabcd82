"""Read the archive back: decrypt, gunzip and untar in one pass, in constant memory.

Chunks are authenticated as they are read, so damage near the end of the object shows
up only when the reader gets there. Anything that acts on the content (a restore) must
first walk the whole object with `verify_archive`, and only then read it again to act.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, cast

from lifeboat.archive.crypto import ChunkDecryptor
from lifeboat.archive.digests import (
    ArchiveSummary,
    FileDigest,
    HashingReader,
    Readable,
)
from lifeboat.archive.errors import ArchiveError, CorruptArchive
from lifeboat.archive.metadata import BSON_SUFFIX
from lifeboat.archive.writer import check_member_path

# The server refuses user documents over 16 MiB; its internal limit adds 16 KiB.
MAX_BSON_SIZE = (16 << 20) + (16 << 10)
_READ_BYTES = 1 << 20

__all__ = [
    "MAX_BSON_SIZE",
    "ArchiveMember",
    "ArchiveReader",
    "MemberStream",
    "iter_bson",
    "read_archive",
    "verify_archive",
]


@contextmanager
def _plaintext_errors(where: str) -> Iterator[None]:
    """Errors below the authenticated layer mean the writer itself produced a bad stream."""
    try:
        yield
    except ArchiveError:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile, tarfile.TarError) as exc:
        raise CorruptArchive(
            f"{where}: the decrypted archive is not a valid tar.gz ({exc})"
        ) from exc


class MemberStream:
    """One member's bytes; read it before moving to the next member (like tarfile "r|")."""

    def __init__(self, path: str, size: int, inner: IO[bytes]) -> None:
        self.path = path
        self.size = size
        self._inner = HashingReader(inner)
        self._closed = False

    def read(self, size: int = -1, /) -> bytes:
        if self._closed:
            raise ArchiveError(f"{self.path}: the reader has moved past this member")
        with _plaintext_errors(self.path):
            return self._inner.read(size)

    def readable(self) -> bool:
        return True

    def finish(self) -> FileDigest:
        """Read what the caller left, so that every member is hashed."""
        while self.read(_READ_BYTES):
            pass
        self._closed = True
        if self._inner.count != self.size:
            raise CorruptArchive(
                f"{self.path}: the tar header says {self.size} bytes, "
                f"the member holds {self._inner.count}"
            )
        return FileDigest(size=self.size, sha256=self._inner.hexdigest())


@dataclass(frozen=True)
class ArchiveMember:
    path: str
    size: int
    stream: MemberStream


class ArchiveReader:
    """Iterates the members of an encrypted archive; `.summary` is set once exhausted.

    Raises `WrongKey` at once when the key id differs, and `CorruptArchive` (naming the
    chunk and offset) when any part of the object fails authentication.
    """

    def __init__(self, source: Readable, key: bytes) -> None:
        self._object = HashingReader(source)
        self._decryptor = ChunkDecryptor(self._object, key)
        self._gzip = gzip.GzipFile(fileobj=cast(IO[bytes], self._decryptor), mode="rb")
        self._tar_stream = HashingReader(cast(Readable, self._gzip))
        self._tar: tarfile.TarFile | None = None
        self._current: MemberStream | None = None
        self._files: dict[str, FileDigest] = {}
        self.summary: ArchiveSummary | None = None

    @property
    def key_id(self) -> str:
        return self._decryptor.header.key_id

    def __iter__(self) -> ArchiveReader:
        return self

    def __next__(self) -> ArchiveMember:
        if self.summary is not None:
            raise StopIteration
        if self._current is not None:
            self._files[self._current.path] = self._current.finish()
            self._current = None
        with _plaintext_errors(f"after {len(self._files)} members"):
            if self._tar is None:
                self._tar = tarfile.open(  # noqa: SIM115 - lives as long as the reader
                    fileobj=cast(IO[bytes], self._tar_stream), mode="r|"
                )
            info = self._tar.next()
            if info is None:
                self._finish()
                raise StopIteration
            inner = self._tar.extractfile(info) if info.isreg() else None
        if inner is None:
            raise CorruptArchive(f"member {info.name!r} is not a regular file")
        try:
            check_member_path(info.name)
        except ValueError as exc:
            raise CorruptArchive(str(exc)) from None
        if info.name in self._files:
            raise CorruptArchive(f"member {info.name!r} appears twice")
        self._current = MemberStream(info.name, info.size, inner)
        return ArchiveMember(info.name, info.size, self._current)

    def _finish(self) -> None:
        # tar stops at its end marker; read on so that gzip checks its CRC and the
        # decryptor authenticates the final chunk and sees the end of the object.
        while self._gzip.read(_READ_BYTES):
            pass
        while self._decryptor.read(_READ_BYTES):
            pass
        while self._object.read(_READ_BYTES):
            pass
        header = self._decryptor.header
        self.summary = ArchiveSummary(
            files=dict(self._files),
            object_bytes=self._object.count,
            object_sha256=self._object.hexdigest(),
            key_id=header.key_id,
            chunk_size=header.chunk_size,
            chunks=self._decryptor.chunks,
            compressed_bytes=self._decryptor.plaintext_bytes,
            tar_bytes=self._tar_stream.count,
        )


def read_archive(source: Readable, key: bytes) -> ArchiveReader:
    """Iterate `(path, size, stream)` members of the archive in `source`.

    Each member's stream must be read before asking for the next member. Content is
    authenticated chunk by chunk: do not act on it before `verify_archive` passed.
    """
    return ArchiveReader(source, key)


def iter_bson(stream: Readable, max_size: int = MAX_BSON_SIZE) -> Iterator[bytes]:
    """Each raw BSON document of a `.bson` stream, byte for byte, in order.

    Reads the stream in blocks of about 1 MiB (more for a larger document), so memory is
    bounded by `max_size` plus one block whatever the stream's size.
    """
    name = getattr(stream, "path", "stream")
    buffer = b""
    position = offset = index = 0  # position in `buffer`; offset in the stream

    def fill(needed: int) -> bool:
        """Make `needed` bytes available from `position`; False at the end of the stream."""
        nonlocal buffer, position
        parts = [buffer[position:]]
        available = len(parts[0])
        while available < needed:
            block = stream.read(max(_READ_BYTES, needed - available))
            if not block:
                break
            parts.append(block)
            available += len(block)
        buffer, position = b"".join(parts), 0
        return available >= needed

    while True:
        if len(buffer) - position < 4 and not fill(4):
            if len(buffer) == position:
                return
            raise CorruptArchive(
                f"{name}: partial document {index} at offset {offset}: "
                f"{len(buffer) - position} of its 4 length bytes"
            )
        length = int.from_bytes(buffer[position : position + 4], "little", signed=True)
        if not 5 <= length <= max_size:
            raise CorruptArchive(
                f"{name}: document {index} at offset {offset} declares {length} bytes "
                f"(a BSON document has 5..{max_size})"
            )
        if len(buffer) - position < length and not fill(length):
            raise CorruptArchive(
                f"{name}: partial document {index} at offset {offset}: "
                f"{len(buffer) - position} of its {length} bytes"
            )
        end = position + length
        if buffer[end - 1] != 0:
            raise CorruptArchive(
                f"{name}: document {index} at offset {offset} does not end with a zero byte"
            )
        yield buffer[position:end]
        position = end
        offset += length
        index += 1


class _BsonFrames:
    """Counts documents in a `.bson` stream fed piecewise, checking each length prefix."""

    def __init__(self, path: str, max_size: int = MAX_BSON_SIZE) -> None:
        self.path = path
        self.count = 0
        self._max_size = max_size
        self._fed = 0  # stream offset of the first byte of the next `feed`
        self._start = 0  # stream offset of the current document
        self._head = b""  # its length prefix, while incomplete
        self._remaining = 0  # its bytes not yet seen

    def feed(self, data: bytes) -> None:
        position, end = 0, len(data)
        while position < end:
            if self._remaining:
                take = min(self._remaining, end - position)
                self._remaining -= take
                position += take
                if not self._remaining and data[position - 1] != 0:
                    raise CorruptArchive(
                        f"{self.path}: document {self.count - 1} at offset {self._start} "
                        "does not end with a zero byte"
                    )
                continue
            if not self._head:
                self._start = self._fed + position
            take = min(4 - len(self._head), end - position)
            self._head += data[position : position + take]
            position += take
            if len(self._head) == 4:
                length = int.from_bytes(self._head, "little", signed=True)
                if not 5 <= length <= self._max_size:
                    raise CorruptArchive(
                        f"{self.path}: document {self.count} at offset {self._start} "
                        f"declares {length} bytes (a BSON document has 5..{self._max_size})"
                    )
                self._remaining = length - 4
                self._head = b""
                self.count += 1
        self._fed += end

    def finish(self) -> int:
        if self._head or self._remaining:
            raise CorruptArchive(
                f"{self.path}: the file ends inside a partial document at offset {self._start}"
            )
        return self.count


def verify_archive(
    source: Readable,
    key: bytes,
    expected_object_sha256: str | None = None,
    expected_files: dict[str, str] | None = None,
) -> ArchiveSummary:
    """Walk the whole archive: authenticate every chunk, hash every member, frame every
    `.bson` document, and compare with what the manifest recorded.

    Call this before restoring: chunked encryption only finds late damage late.
    `expected_files` maps member path → sha256; a missing, extra or different member
    raises `CorruptArchive`, as does a different object sha256.
    """
    reader = ArchiveReader(source, key)
    documents: dict[str, int] = {}
    for member in reader:
        frames = _BsonFrames(member.path) if member.path.endswith(BSON_SUFFIX) else None
        while data := member.stream.read(_READ_BYTES):
            if frames is not None:
                frames.feed(data)
        if frames is not None:
            documents[member.path] = frames.finish()
    summary = reader.summary
    assert summary is not None
    files = {
        path: FileDigest(digest.size, digest.sha256, documents.get(path))
        for path, digest in summary.files.items()
    }
    problems: list[str] = []
    if expected_object_sha256 is not None and expected_object_sha256 != summary.object_sha256:
        problems.append(
            f"object sha256 is {summary.object_sha256}, the manifest says {expected_object_sha256}"
        )
    if expected_files is not None:
        for path in sorted(expected_files.keys() - files.keys()):
            problems.append(f"{path} is missing")
        for path in sorted(files.keys() - expected_files.keys()):
            problems.append(f"{path} is not in the manifest")
        for path in sorted(expected_files.keys() & files.keys()):
            if expected_files[path] != files[path].sha256:
                problems.append(
                    f"{path} sha256 is {files[path].sha256}, "
                    f"the manifest says {expected_files[path]}"
                )
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise CorruptArchive(f"archive does not match its manifest: {shown}{more}")
    return ArchiveSummary(
        files=files,
        object_bytes=summary.object_bytes,
        object_sha256=summary.object_sha256,
        key_id=summary.key_id,
        chunk_size=summary.chunk_size,
        chunks=summary.chunks,
        compressed_bytes=summary.compressed_bytes,
        tar_bytes=summary.tar_bytes,
    )
