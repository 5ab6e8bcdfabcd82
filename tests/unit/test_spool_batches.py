"""Spooling whole cursor batches (find_raw_batches) is the same as spooling documents."""

from __future__ import annotations

import os

import bson
import pytest

from lifeboat.archive import ArchiveError, spool_collection, spool_raw_batches


def documents(n: int) -> list[bytes]:
    return [bson.encode({"_id": i, "pad": os.urandom(i % 300)}) for i in range(n)]


def test_batches_spool_to_the_same_bytes_count_and_sha256_as_documents() -> None:
    docs = documents(1000)
    batches = [b"".join(docs[i : i + 97]) for i in range(0, len(docs), 97)]
    seen: list[bytes] = []
    with (
        spool_collection(docs) as one_by_one,
        spool_raw_batches(batches, each=lambda d: seen.append(bytes(d))) as batched,
    ):
        assert (batched.count, batched.size, batched.sha256) == (
            one_by_one.count,
            one_by_one.size,
            one_by_one.sha256,
        )
        assert batched.file.read() == one_by_one.file.read()
    assert seen == docs  # the sampler sees every document, in order


def test_an_empty_collection_spools_to_nothing() -> None:
    with spool_raw_batches([]) as spooled:
        assert (spooled.count, spooled.size) == (0, 0)


@pytest.mark.parametrize("cut", [1, 3, 7])
def test_a_cut_batch_is_refused(cut: int) -> None:
    docs = documents(10)
    batch = b"".join(docs)[:-cut]
    with pytest.raises(ArchiveError, match="document 9 is not one whole BSON document"):
        spool_raw_batches([batch])


def test_a_document_not_ending_in_zero_is_refused() -> None:
    doc = bytearray(bson.encode({"_id": 1}))
    doc[-1] = 1
    with pytest.raises(ArchiveError, match="document 3 "):
        spool_raw_batches([b"".join(documents(3)) + bytes(doc)])
