"""SLOW-ISH (a few seconds): memory stays flat while ~128 MiB go through the archive.

Spool → writer → file on disk, then file → reader → iter_bson, each under tracemalloc.
Peak traced memory must stay far below the data size (the bound covers the 8 MiB spool
buffer, one 1 MiB chunk in flight on each side and interpreter noise). No timing asserts.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import bson
from bson.binary import Binary

from lifeboat.archive import (
    ArchiveWriter,
    collection_metadata,
    iter_bson,
    read_archive,
    spool_collection,
)

KEY = bytes(range(32))
TOTAL_BYTES = 128 << 20
PEAK_BOUND = 32 << 20
T = TypeVar("T")


def _templates() -> list[bytes]:
    """64 distinct ~64 KiB documents, half noise and half text: gzip has work to do."""
    noise = random.Random(17)
    return [
        bson.encode(
            {
                "_id": n,
                "customer": f"customer-{n:06d}",
                "noise": Binary(noise.randbytes(24 << 10)),
                "text": " ".join(
                    noise.choice(["order", "paid", "shipped", "€"]) for _ in range(9000)
                ),
            }
        )
        for n in range(64)
    ]


def _documents(templates: list[bytes], total: int) -> Iterator[bytes]:
    produced = 0
    for document in itertools.cycle(templates):
        if produced >= total:
            return
        produced += len(document)
        yield document


def _peak(action: Callable[[], T]) -> tuple[T, int]:
    tracemalloc.start()
    try:
        result = action()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_through_spool_writer_and_reader(tmp_path: Path) -> None:
    templates = _templates()
    expected = hashlib.sha256()
    expected_count = 0
    for document in _documents(templates, TOTAL_BYTES):
        expected.update(document)
        expected_count += 1
    archive = tmp_path / "archive.tar.gz.enc"

    def write() -> int:
        with (
            archive.open("wb") as sink,
            spool_collection(_documents(templates, TOTAL_BYTES), dir=str(tmp_path)) as spooled,
            ArchiveWriter(sink, KEY, compresslevel=1) as writer,
        ):
            writer.add_collection("bench", "generated", spooled, collection_metadata("generated"))
        assert writer.summary is not None
        return writer.summary.files["bench/generated.bson"].size

    def read() -> tuple[int, str]:
        count = 0
        digest = hashlib.sha256()
        with archive.open("rb") as source:
            for member in read_archive(source, KEY):
                if member.path.endswith(".bson"):
                    for document in iter_bson(member.stream):
                        count += 1
                        digest.update(document)
        return count, digest.hexdigest()

    size, write_peak = _peak(write)
    assert size >= TOTAL_BYTES
    (count, sha256), read_peak = _peak(read)
    assert (count, sha256) == (expected_count, expected.hexdigest())
    assert write_peak < PEAK_BOUND, f"writer peak {write_peak / 2**20:.1f} MiB"
    assert read_peak < PEAK_BOUND, f"reader peak {read_peak / 2**20:.1f} MiB"
