"""Spool one collection's raw BSON to a temporary file, because tar needs sizes up front."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from bson.raw_bson import RawBSONDocument

from lifeboat.archive.errors import ArchiveError

SPOOL_MEMORY_BYTES = 8 << 20
_BATCH_BYTES = 1 << 20


@dataclass
class SpooledCollection:
    """A collection's `.bson` content, rewound and ready for `ArchiveWriter.add_file`."""

    file: IO[bytes]
    count: int
    size: int
    sha256: str

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
) -> SpooledCollection:
    """`spool_collection` for whole cursor batches (pymongo's ``find_raw_batches``).

    A batch is documents concatenated, as in the `.bson` file, so it is written as it
    came: no per-document object. Each document's length prefix is still walked, so a
    cut batch is refused here, and ``each`` (a sampler) sees every document.
    """
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - returned to the caller
        max_size=max_memory, mode="w+b", dir=dir
    )
    digest = hashlib.sha256()
    count = size = 0
    try:
        for batch in batches:
            count += _walk_documents(batch, count, each)
            digest.update(batch)
            spool.write(batch)
            size += len(batch)
        spool.flush()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return SpooledCollection(file=spool, count=count, size=size, sha256=digest.hexdigest())


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
