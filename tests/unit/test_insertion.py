"""Restore's parallel unordered insertion: batching, ordering, and every error surfaced."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from lifeboat.insertion import BatchResult, WriteErrors, batches, insert_in_parallel

pytestmark = pytest.mark.timeout(20)


def docs(n: int, size: int = 10) -> list[bytes]:
    return [n_.to_bytes(4, "little") + b"x" * (size - 4) for n_ in range(n)]


def test_batches_respect_count_and_bytes_and_keep_positions() -> None:
    items = docs(25, size=10)
    cut = list(batches(items, max_docs=10, max_bytes=1000))
    assert [(start, len(b)) for start, b in cut] == [(0, 10), (10, 10), (20, 5)]
    cut = list(batches(items, max_docs=100, max_bytes=35))
    assert [(start, len(b)) for start, b in cut] == [(s, 3) for s in range(0, 24, 3)] + [(24, 1)]
    assert [d for _, b in cut for d in b] == items


def test_a_document_larger_than_the_byte_cap_travels_alone() -> None:
    items = [b"a" * 5, b"b" * 50, b"c" * 5]
    assert list(batches(items, max_docs=10, max_bytes=20)) == [
        (0, [b"a" * 5]),
        (1, [b"b" * 50]),
        (2, [b"c" * 5]),
    ]
    assert list(batches([], max_docs=10, max_bytes=20)) == []


class FakeCollection:
    """Stands in for the driver: a unique _id (the first 4 bytes), unordered semantics."""

    def __init__(self, delay: float = 0.0) -> None:
        self.stored: set[bytes] = set()
        self.lock = threading.Lock()
        self.delay = delay
        self.in_flight = self.most_in_flight = 0

    def insert(self, batch: list[bytes]) -> BatchResult:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay)
        failures = []
        inserted = 0
        with self.lock:
            for index, doc in enumerate(batch):
                key = doc[:4]
                if key in self.stored:
                    failures.append((index, 11000, f"E11000 duplicate key _id {key.hex()}"))
                else:
                    self.stored.add(key)
                    inserted += 1
            self.in_flight -= 1
        return BatchResult(inserted, failures)


def test_every_document_goes_in_with_workers_in_parallel() -> None:
    target = FakeCollection(delay=0.01)
    items = docs(2000)
    assert insert_in_parallel("db.c", items, target.insert, workers=4, max_docs=100) == 2000
    assert len(target.stored) == 2000
    assert target.most_in_flight > 1  # batches really overlapped


def test_refused_documents_in_different_batches_are_all_reported_with_positions() -> None:
    target = FakeCollection()
    items = docs(300)
    items.insert(50, items[7])  # position 50 repeats document 7
    items.insert(251, items[230])  # the same batch: which copy wins is then certain
    with pytest.raises(WriteErrors) as caught:
        insert_in_parallel("varai.products", items, target.insert, workers=3, max_docs=100)
    error = caught.value
    assert [f.document for f in error.failures] == [50, 251]
    assert error.total == 302 and error.inserted == 300
    message = str(error)
    assert message.startswith("varai.products: 2 of 302 documents were refused, 300 went in")
    assert "document 50: E11000 duplicate key" in message and "document 251:" in message
    assert "(code 11000)" in message


def test_many_refusals_are_counted_and_the_first_few_shown() -> None:
    target = FakeCollection()
    items = docs(20) + docs(20)
    with pytest.raises(WriteErrors) as caught:
        insert_in_parallel("db.c", items, target.insert, workers=2, max_docs=7)
    assert len(caught.value.failures) == 20
    assert "(and 15 more)" in str(caught.value)


def test_a_failing_batch_stops_the_restore_at_once_without_hanging() -> None:
    sent = 0

    def insert(batch: list[bytes]) -> BatchResult:
        nonlocal sent
        sent += 1
        if sent == 3:
            raise ConnectionError("the server went away")
        return BatchResult(len(batch))

    def endless() -> Iterator[bytes]:
        while True:  # an archive far larger than what goes in before the failure
            yield b"\x05\x00\x00\x00\x00"

    started = time.monotonic()
    with pytest.raises(ConnectionError):
        insert_in_parallel("db.c", endless(), insert, workers=2, max_docs=10)
    assert time.monotonic() - started < 5


def test_a_reading_error_stops_the_workers() -> None:
    target = FakeCollection()

    def broken() -> Iterator[bytes]:
        yield from docs(50)
        raise ValueError("corrupt archive")

    with pytest.raises(ValueError, match="corrupt archive"):
        insert_in_parallel("db.c", broken(), target.insert, workers=4, max_docs=10)
    assert not [t for t in threading.enumerate() if t.name.startswith("insert-db.c")]


def test_at_least_one_worker() -> None:
    with pytest.raises(ValueError):
        insert_in_parallel("db.c", [], FakeCollection().insert, workers=0)
