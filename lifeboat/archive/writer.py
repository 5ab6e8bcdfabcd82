"""Write the archive: tar stream → gzip → AES-256-GCM chunks → sink, in constant memory."""

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
from lifeboat.archive.spool import SpooledCollection

# tar reads the source and writes its stream in pieces of this size (its defaults are
# 16 KiB and 10 KiB): zlib, AES-GCM and hashlib release the GIL only while they work on a
# piece, so small pieces leave the packer waiting for the GIL behind the cursor threads.
# The tar bytes do not depend on it (tar pads to its 10 KiB record size regardless).
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
        self._object = HashingWriter(sink)
        self._encryptor = crypto.ChunkEncryptor(self._object, key, chunk_size)
        self._gzip = gzip.GzipFile(
            fileobj=cast(IO[bytes], self._encryptor),
            mode="wb",
            compresslevel=compresslevel,
            mtime=self._mtime,
        )
        self._tar_stream = CountingWriter(cast(Writable, self._gzip))
        self._tar = tarfile.open(  # noqa: SIM115 - closed by close()
            fileobj=cast(IO[bytes], self._tar_stream),
            mode="w|",
            format=tarfile.PAX_FORMAT,
            bufsize=TAR_PIECE_BYTES,
        )
        self._tar.copybufsize = TAR_PIECE_BYTES  # type: ignore[attr-defined]  # not in typeshed
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
        check_member_path(path)
        if path in self._files:
            raise ValueError(f"{path!r} is already in the archive")
        if size < 0:
            raise ValueError(f"size of {path!r} must not be negative")
        info = tarfile.TarInfo(path)
        info.size = size
        info.mtime = self._mtime
        info.mode = 0o644
        source = HashingReader(fileobj)
        try:
            self._tar.addfile(info, cast(IO[bytes], source))
        except BaseException as exc:
            self._fail()
            if isinstance(exc, OSError) and source.short_read and source.count < size:
                raise ArchiveError(
                    f"{path}: expected {size} bytes, the source ended after {source.count}"
                ) from exc
            raise
        digest = FileDigest(size=size, sha256=source.hexdigest())
        if sha256 is not None and sha256 != digest.sha256:
            self._fail()
            raise ArchiveError(
                f"{path}: its content changed while archiving (sha256 {digest.sha256}, "
                f"expected {sha256}); the archive is abandoned"
            )
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
        digest = self.add_file(path, spooled.file, spooled.size, spooled.sha256)
        self._files[path] = FileDigest(digest.size, digest.sha256, documents=spooled.count)
        return self._files[path]

    def close(self) -> ArchiveSummary:
        """End the tar, flush gzip, seal the final chunk; the sink stays open."""
        if self.summary is not None:
            return self.summary
        self._check_open()
        try:
            self._tar.close()
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

    def _fail(self) -> None:
        self._state = "abandoned after an error"
        self._encryptor.abort()
        # Release tar's and zlib's state; what they still write goes nowhere.
        self._tar_stream.discard()
        with contextlib.suppress(Exception):
            self._tar.close()
        with contextlib.suppress(Exception):
            self._gzip.close()
