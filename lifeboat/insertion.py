"""Parallel unordered insertion of one collection's documents, with every error surfaced.

As ``mongorestore --numInsertionWorkersPerCollection`` and PBM's ``numInsertionWorkers``
do: the documents are cut into batches, and several workers send them at once as
unordered ``insert_many`` calls, so the server always has a batch to work on while the
caller reads the next ones from the archive. An unordered batch reports every document
that failed (a duplicate key, a validation error), not only the first; those are
collected from every batch and raised together once the collection is done, each with
its position in the collection's ``.bson``. Any other exception (the connection, a
timeout) stops all workers at once.

Pure logic: the caller passes the function that sends a batch, so this module needs no
server and no driver.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from lifeboat.pipeline import Channel, Pipeline

# mongorestore's batches hold up to 1000 documents. The byte cap bounds memory: at most
# 2 * workers batches exist at once (one per worker, one per channel slot).
BATCH_DOCS = 1000
BATCH_BYTES = 2 << 20
SHOWN_ERRORS = 5


@dataclass(frozen=True)
class WriteFailure:
    """One document the server refused."""

    document: int
    """Its position in the collection's stream (0-based), so it can be found in the dump."""
    code: int | None
    message: str


@dataclass(frozen=True)
class BatchResult:
    inserted: int
    failures: list[tuple[int, int | None, str]] = field(default_factory=list)
    """(index in the batch, server error code, message) of each refused document."""


class WriteErrors(Exception):
    """Some documents of a collection were refused; the message names each (up to 5)."""

    def __init__(self, what: str, total: int, inserted: int, failures: list[WriteFailure]):
        self.what = what
        self.total = total
        self.inserted = inserted
        self.failures = sorted(failures, key=lambda f: f.document)
        shown = "; ".join(
            f"document {f.document}: {f.message}" + (f" (code {f.code})" if f.code else "")
            for f in self.failures[:SHOWN_ERRORS]
        )
        more = len(self.failures) - SHOWN_ERRORS
        super().__init__(
            f"{what}: {len(self.failures)} of {total} documents were refused, {inserted} "
            f"went in: {shown}" + (f" (and {more} more)" if more > 0 else "")
        )


def batches(
    docs: Iterable[bytes], max_docs: int = BATCH_DOCS, max_bytes: int = BATCH_BYTES
) -> Iterator[tuple[int, list[bytes]]]:
    """(position of the first document, documents) of at most max_docs / max_bytes each.

    A document larger than ``max_bytes`` travels alone: no batch is ever empty.
    """
    if max_docs < 1 or max_bytes < 1:
        raise ValueError("a batch needs room for at least one document")
    batch: list[bytes] = []
    start = size = 0
    for position, doc in enumerate(docs):
        if batch and (len(batch) >= max_docs or size + len(doc) > max_bytes):
            yield start, batch
            batch, size = [], 0
        if not batch:
            start = position
        batch.append(doc)
        size += len(doc)
    if batch:
        yield start, batch


def insert_in_parallel(
    what: str,
    docs: Iterable[bytes],
    insert_batch: Callable[[list[bytes]], BatchResult],
    workers: int,
    max_docs: int = BATCH_DOCS,
    max_bytes: int = BATCH_BYTES,
) -> int:
    """Insert every document with ``workers`` concurrent batches; returns how many went in.

    Raises `WriteErrors` after the last batch when the server refused any document, and
    at once whatever else ``insert_batch`` or reading ``docs`` raises.
    """
    if workers < 1:
        raise ValueError("insertion needs at least one worker")
    lock = threading.Lock()
    inserted = total = 0
    failures: list[WriteFailure] = []

    with Pipeline(f"insert-{what}") as pipeline:
        work: Channel[tuple[int, list[bytes]]] = pipeline.channel(workers)

        def worker() -> None:
            nonlocal inserted
            for start, batch in work:
                result = insert_batch(batch)
                with lock:
                    inserted += result.inserted
                    failures.extend(
                        WriteFailure(start + index, code, message)
                        for index, code, message in result.failures
                    )

        for number in range(workers):
            pipeline.start(f"worker-{number}", worker)
        for start, batch in batches(docs, max_docs, max_bytes):
            total = start + len(batch)
            work.put((start, batch))
        work.close()
    if failures:
        raise WriteErrors(what, total, inserted, failures)
    return inserted
