"""Write the archive: tar stream → gzip → AES-256-GCM chunks → sink, in constant memory.

The tar stream is written here, byte for byte as `tarfile` writes a PAX stream, so that
a collection spooled as a gzip member (`GzipMember`) can go in between two members of
the archive's own gzip stream: the result is still one gzip file (RFC 1952 §2.2: a
series of members), and `gunzip | tar x` or `ArchiveReader` read it as one stream.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import posixpath
import tarfile
import time
from types import TracebackType
from typing import IO, cast

from lifeboat.archive import crypto
from lifeboat.archive.digests import (
    ArchiveSummary,
    CountingWriter,
    FileDigest,
    HashingReader,
    HashingWriter,
    Readable,
    Writable,
)
from lifeboat.archive.errors import ArchiveError
from lifeboat.archive.metadata import bson_path, metadata_path
from lifeboat.archive.spool import GzipMember, SpooledCollection

# Files are copied in pieces of this size: zlib, AES-GCM and hashlib release the GIL only
# while they work on a piece, so small pieces leave the packer waiting for the GIL behind
# the cursor threads. The tar bytes do not depend on it.
TAR_PIECE_BYTES = 1 << 20


def check_member_path(path: str) -> None:
    normal = posixpath.normpath(path)
    if (
        not path
        or normal != path
        or path.startswith("/")
        or normal == ".."
        or normal.startswith("../")
        or "\x00" in path
    ):
        raise ValueError(f"archive member path {path!r} must be relative and normalised")


class ArchiveWriter:
    """Streams files into an encrypted, gzipped tar, writing only `.write()` on `sink`.

    Use as a context manager. Leaving the block normally closes the archive (the summary
    is then in `.summary`); leaving it with an exception aborts it: the final chunk is
    never written, so whatever reached the sink fails to read as "truncated". The sink
    itself is never closed: finishing (or abandoning) the upload is the caller's call.
    """

    def __init__(
        self,
        sink: Writable,
        key: bytes,
        key_id: str | None = None,
        compresslevel: int = 6,
        chunk_size: int = crypto.DEFAULT_CHUNK_SIZE,
        *,
        mtime: float | None = None,
    ) -> None:
        if key_id is not None and key_id != crypto.key_id(key):
            raise ArchiveError(
                f"key id {key_id} does not belong to the key (its id is {crypto.key_id(key)})"
            )
        self._mtime = int(time.time() if mtime is None else mtime)
        self._compresslevel = compresslevel
        self._object = HashingWriter(sink)
        self._encryptor = crypto.ChunkEncryptor(self._object, key, chunk_size)
        self._gzip = self._new_member()
        self._tar_stream = CountingWriter(cast(Writable, self._gzip))
        self._files: dict[str, FileDigest] = {}
        self._state = "open"
        self.summary: ArchiveSummary | None = None

    @property
    def key_id(self) -> str:
        return self._encryptor.header.key_id

    def add_file(
        self, path: str, fileobj: Readable, size: int, sha256: str | None = None
    ) -> FileDigest:
        """Copy exactly `size` bytes of `fileobj` into the archive as `path`.

        When `sha256` is given (e.g. from `spool_collection`), the bytes actually read must
        match it, or the archive is failed: the spool changed under us.
        """
        self._check_open()
        self._check_new(path, size)
        source = HashingReader(fileobj)
        try:
            self._tar_stream.write(self._header(path, size))
            copied = _copy(source, self._tar_stream, size)
            if copied < size:
                raise ArchiveError(
                    f"{path}: expected {size} bytes, the source ended after {copied}"
                )
            self._pad(size)
        except BaseException:
            self._fail()
            raise
        digest = FileDigest(size=size, sha256=source.hexdigest())
        if sha256 is not None and sha256 != digest.sha256:
            self._fail()
            raise _changed(path, digest.sha256, sha256)
        self._files[path] = digest
        return digest

    def add_bytes(self, path: str, data: bytes) -> FileDigest:
        return self.add_file(path, io.BytesIO(data), len(data))

    def add_collection(
        self, database: str, collection: str, spooled: SpooledCollection, metadata: bytes
    ) -> FileDigest:
        """Add `<db>/<coll>.metadata.json` and `<db>/<coll>.bson`; returns the .bson digest."""
        self.add_bytes(metadata_path(database, collection), metadata)
        path = bson_path(database, collection)
        if spooled.gzip is None:
            self.add_file(path, spooled.file, spooled.size, spooled.sha256)
        else:
            self._add_gzip_member(path, spooled, spooled.gzip)
        self._files[path] = FileDigest(spooled.size, spooled.sha256, documents=spooled.count)
        return self._files[path]

    def _add_gzip_member(self, path: str, spooled: SpooledCollection, member: GzipMember) -> None:
        """The tar header, then the spool's gzip member copied as it is, then the padding.

        The header ends the current member; the padding starts the next. The member is
        checked by its sha256 as it is copied; its content was hashed as it was spooled.
        """
        self._check_open()
        self._check_new(path, spooled.size)
        try:
            self._tar_stream.write(self._header(path, spooled.size))
            self._gzip.close()  # the member's trailer; the encryptor stays open
            source = HashingReader(spooled.file)
            copied = _copy(source, cast(Writable, self._encryptor), member.size)
            if copied < member.size:
                raise ArchiveError(
                    f"{path}: expected {member.size} compressed bytes, the spool ended "
                    f"after {copied}"
                )
            if source.hexdigest() != member.sha256:
                raise _changed(path, source.hexdigest(), member.sha256)
            self._gzip = self._new_member()
            self._tar_stream.retarget(cast(Writable, self._gzip), spooled.size)
            self._pad(spooled.size)
        except BaseException:
            self._fail()
            raise

    def close(self) -> ArchiveSummary:
        """End the tar, flush gzip, seal the final chunk; the sink stays open."""
        if self.summary is not None:
            return self.summary
        self._check_open()
        try:
            # tar's end: two zero blocks, then zeros to a whole record (as tarfile does).
            self._tar_stream.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
            remainder = self._tar_stream.count % tarfile.RECORDSIZE
            if remainder:
                self._tar_stream.write(tarfile.NUL * (tarfile.RECORDSIZE - remainder))
            self._gzip.close()
            self._encryptor.finish()
        except BaseException:
            self._fail()
            raise
        self._state = "closed"
        self.summary = ArchiveSummary(
            files=dict(self._files),
            object_bytes=self._object.count,
            object_sha256=self._object.hexdigest(),
            key_id=self.key_id,
            chunk_size=self._encryptor.header.chunk_size,
            chunks=self._encryptor.chunks,
            compressed_bytes=self._encryptor.plaintext_bytes,
            tar_bytes=self._tar_stream.count,
        )
        return self.summary

    def abort(self) -> None:
        """Stop without sealing the final chunk: the partial object can never verify."""
        if self._state == "open":
            self._fail()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _check_open(self) -> None:
        if self._state != "open":
            raise ArchiveError(f"the archive writer is {self._state}; start a new archive")

    def _check_new(self, path: str, size: int) -> None:
        check_member_path(path)
        if path in self._files:
            raise ValueError(f"{path!r} is already in the archive")
        if size < 0:
            raise ValueError(f"size of {path!r} must not be negative")

    def _header(self, path: str, size: int) -> bytes:
        """The member's tar header, as `tarfile` writes it in the PAX format."""
        info = tarfile.TarInfo(path)
        info.size = size
        info.mtime = self._mtime
        info.mode = 0o644
        return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")

    def _pad(self, size: int) -> None:
        remainder = size % tarfile.BLOCKSIZE
        if remainder:
            self._tar_stream.write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))

    def _new_member(self) -> gzip.GzipFile:
        return gzip.GzipFile(
            fileobj=cast(IO[bytes], self._encryptor),
            mode="wb",
            compresslevel=self._compresslevel,
            mtime=self._mtime,
        )

    def _fail(self) -> None:
        self._state = "abandoned after an error"
        self._encryptor.abort()
        # Release zlib's state; what it still writes goes nowhere.
        self._tar_stream.discard()
        with contextlib.suppress(Exception):
            self._gzip.close()


def _copy(source: Readable, target: Writable, size: int) -> int:
    """Copy up to ``size`` bytes in `TAR_PIECE_BYTES` pieces; returns how many there were."""
    copied = 0
    while copied < size:
        piece = source.read(min(TAR_PIECE_BYTES, size - copied))
        if not piece:
            break
        target.write(piece)
        copied += len(piece)
    return copied


def _changed(path: str, actual: str, expected: str) -> ArchiveError:
    return ArchiveError(
        f"{path}: its content changed while archiving (sha256 {actual}, expected "
        f"{expected}); the archive is abandoned"
    )
