"""Spool one collection's raw BSON to a temporary file, because tar needs sizes up front."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from bson.raw_bson import RawBSONDocument

from lifeboat.archive.digests import HashingWriter
from lifeboat.archive.errors import ArchiveError

SPOOL_MEMORY_BYTES = 8 << 20
_BATCH_BYTES = 1 << 20


@dataclass(frozen=True)
class GzipMember:
    """What a spool holds when it compressed as it was written: one whole gzip member.

    A gzip file is a series of members (RFC 1952 §2.2), so `ArchiveWriter` copies the
    member into its stream as it is: the compression was done by the thread that read
    the collection, beside the cursor, and not by the packer after it.
    """

    size: int
    sha256: str
    """Of the member's bytes: the packer checks it as it copies them."""


@dataclass
class SpooledCollection:
    """A collection's `.bson` content, rewound and ready for `ArchiveWriter.add_collection`.

    ``count``, ``size`` and ``sha256`` describe the BSON itself; when ``gzip`` is set the
    file holds that BSON compressed, as one gzip member.
    """

    file: IO[bytes]
    count: int
    size: int
    sha256: str
    gzip: GzipMember | None = None

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> SpooledCollection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def spool_collection(
    docs: Iterable[bytes | RawBSONDocument],
    dir: str | None = None,
    max_memory: int = SPOOL_MEMORY_BYTES,
) -> SpooledCollection:
    """Write the documents, concatenated as mongodump writes them, to a temporary file.

    Up to `max_memory` bytes stay in memory; beyond that the file lives on disk in `dir`
    (deleted on close). Each document's length prefix is checked against its size, so a
    decoded dict or a cut document is refused here, not at restore time.
    """
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - returned to the caller
        max_size=max_memory, mode="w+b", dir=dir
    )
    digest = hashlib.sha256()
    count = size = 0
    batch = bytearray()
    try:
        for doc in docs:
            raw = doc.raw if isinstance(doc, RawBSONDocument) else doc
            if not isinstance(raw, bytes | bytearray | memoryview):
                raise ArchiveError(
                    f"document {count} is a {type(doc).__name__}, not raw BSON bytes "
                    "(read with document_class=RawBSONDocument)"
                )
            declared = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else -1
            if declared != len(raw) or len(raw) < 5:
                raise ArchiveError(
                    f"document {count} is not one whole BSON document: it declares "
                    f"{declared} bytes and has {len(raw)}"
                )
            batch += raw
            count += 1
            if len(batch) >= _BATCH_BYTES:
                digest.update(batch)
                spool.write(batch)
                size += len(batch)
                batch.clear()
        digest.update(batch)
        spool.write(batch)
        size += len(batch)
        spool.flush()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return SpooledCollection(file=spool, count=count, size=size, sha256=digest.hexdigest())


def spool_raw_batches(
    batches: Iterable[bytes],
    each: Callable[[memoryview], object] | None = None,
    dir: str | None = None,
    max_memory: int = SPOOL_MEMORY_BYTES,
    compresslevel: int | None = None,
) -> SpooledCollection:
    """`spool_collection` for whole cursor batches (pymongo's ``find_raw_batches``).

    A batch is documents concatenated, as in the `.bson` file, so it is written as it
    came: no per-document object. Each document's length prefix is still walked, so a
    cut batch is refused here, and ``each`` (a sampler) sees every document. With
    ``compresslevel`` the spool holds one gzip member of the BSON (`GzipMember`).
    """
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - returned to the caller
        max_size=max_memory, mode="w+b", dir=dir
    )
    stored = HashingWriter(spool)
    sink = (
        gzip.GzipFile(fileobj=stored, mode="wb", compresslevel=compresslevel, mtime=0)
        if compresslevel is not None
        else spool
    )
    digest = hashlib.sha256()
    count = size = 0
    try:
        for batch in batches:
            count += _walk_documents(batch, count, each)
            digest.update(batch)
            sink.write(batch)
            size += len(batch)
        member = None
        if compresslevel is not None:
            sink.close()  # the member's trailer (CRC-32, size); the spool stays open
            member = GzipMember(size=stored.count, sha256=stored.hexdigest())
        spool.flush()
        spool.seek(0)
    except BaseException:
        if sink is not spool:
            # Its trailer would otherwise be written by the garbage collector, into a
            # closed spool ("Exception ignored ... I/O operation on closed file").
            with contextlib.suppress(Exception):
                sink.close()
        spool.close()
        raise
    return SpooledCollection(
        file=spool, count=count, size=size, sha256=digest.hexdigest(), gzip=member
    )


def _walk_documents(batch: bytes, first: int, each: Callable[[memoryview], object] | None) -> int:
    """How many whole documents ``batch`` holds; raises when one is cut or malformed."""
    view = memoryview(batch)
    position = number = 0
    end = len(batch)
    while position < end:
        declared = int.from_bytes(view[position : position + 4], "little")
        if declared < 5 or position + declared > end or batch[position + declared - 1] != 0:
            raise ArchiveError(
                f"document {first + number} is not one whole BSON document: it declares "
                f"{declared} bytes and {end - position} remain in its batch"
            )
        if each is not None:
            each(view[position : position + declared])
        position += declared
        number += 1
    return number
