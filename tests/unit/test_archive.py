"""The backup archive, at the BSON level: every type survives byte for byte; tampering is refused.

Pure library tests: no lab, no server (the lab's nx-27017 drops some BSON types).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import random
import re
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import bson
import pytest
from bson import json_util
from bson.binary import Binary
from bson.code import Code
from bson.datetime_ms import DatetimeMS
from bson.dbref import DBRef
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.raw_bson import RawBSONDocument
from bson.regex import Regex
from bson.timestamp import Timestamp

from lifeboat.archive import (
    ArchiveError,
    ArchiveSummary,
    ArchiveWriter,
    CorruptArchive,
    WrongKey,
    bson_path,
    collection_metadata,
    iter_bson,
    key_id,
    metadata_path,
    parse_key,
    parse_metadata,
    read_archive,
    split_path,
    spool_collection,
    verify_archive,
)
from lifeboat.archive.crypto import HEADER_BYTES, TAG_BYTES, ChunkDecryptor, ChunkEncryptor

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


class WriteOnlySink:
    """Like a GCS BlobWriter as the writer may use it: `.write()` only, no seek, no tell."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def value(self) -> bytes:
        return b"".join(self._parts)


class StingySource:
    """Like a BlobReader over a flaky link: `.read(n)` returns fewer bytes than asked."""

    def __init__(self, data: bytes, seed: int = 7) -> None:
        self._data = io.BytesIO(data)
        self._random = random.Random(seed)

    def read(self, size: int, /) -> bytes:
        return self._data.read(max(1, min(size, self._random.randint(1, 70_000))))


def _nested(depth: int) -> dict[str, object]:
    node: dict[str, object] = {"leaf": True}
    for level in range(depth):
        node = {"level": level, "doc": node} if level % 2 else {"level": level, "arr": [node, []]}
    return node


def _deprecated_types_document() -> bytes:
    """Undefined (0x06), DBPointer (0x0C) and Symbol (0x0E): pymongo cannot encode them."""

    def cstring(text: str) -> bytes:
        return text.encode() + b"\x00"

    def string(text: str) -> bytes:
        raw = text.encode() + b"\x00"
        return struct.pack("<i", len(raw)) + raw

    elements = (
        b"\x07" + cstring("_id") + bytes.fromhex("5f0c1a2b3c4d5e6f70819293")
        + b"\x06" + cstring("undefined")
        + b"\x0c" + cstring("pointer") + string("things") + bytes(range(12))
        + b"\x0e" + cstring("symbol") + string("a-symbol")
    )  # fmt: skip
    return struct.pack("<i", len(elements) + 5) + elements + b"\x00"


def every_type_documents() -> list[bytes]:
    oid = ObjectId("65a1b2c3d4e5f60718293a4b")
    scalars = {
        "_id": oid,
        "decimal": Decimal128("1234567890.123456789012345678901234"),
        "decimal_nan": Decimal128("NaN"),
        "decimal_neg_zero": Decimal128("-0"),
        "decimal_inf": Decimal128("-Infinity"),
        "int32": 2_147_483_647,
        "int32_min": -2_147_483_648,
        "int64": Int64(9_223_372_036_854_775_807),
        "int64_small": Int64(1),
        "double": 3.141592653589793,
        "nan": float("nan"),
        "neg_zero": -0.0,
        "inf": float("inf"),
        "neg_inf": float("-inf"),
        "date_ms": datetime(2024, 2, 29, 23, 59, 59, 123000, tzinfo=UTC),
        "date_pre_1970": datetime(1901, 12, 13, 20, 45, 52, 1000, tzinfo=UTC),
        "date_epoch": datetime(1970, 1, 1, tzinfo=UTC),
        "date_out_of_range": DatetimeMS(-(2**62)),
        "timestamp": Timestamp(1_700_000_000, 42),
        "timestamp_zero": Timestamp(0, 0),
        "regex": Regex(r"^caf\u00e9.*(?<x>\d+)$", "imsux"),
        "regex_plain": Regex("a|b", ""),
        "code": Code("function () { return 1; }"),
        "code_with_scope": Code("function () { return x; }", {"x": 1, "nested": {"y": [1]}}),
        "min": MinKey(),
        "max": MaxKey(),
        "dbref": DBRef("orders", oid, "shop", extra_field="kept"),
        "null": None,
        "yes": True,
        "no": False,
        "empty_string": "",
        "empty_doc": {},
        "empty_array": [],
        "ключ": "значение",
        "键": "值",
        "emoji 🛟": "lifeboat 🛟",
        "nul-free \u00e9\u00e8": "\u0000 inside a string is allowed",
    }
    binaries = {
        f"binary_{subtype:#04x}": Binary(payload, subtype)
        for subtype, payload in [
            (0, b"\x00\x01\x02\xff"),
            (1, b"function bytes"),
            (2, b"old binary"),
            (3, uuid.UUID("00112233-4455-6677-8899-aabbccddeeff").bytes),
            (4, uuid.UUID("12345678-1234-5678-1234-567812345678").bytes),
            (5, bytes(16)),
            (6, b"\x01encrypted-payload"),
            (7, b"\x07column"),
            (8, b"sensitive"),
            (0x80, b"user defined"),
            (0xFF, b"user defined too"),
        ]
    }
    return [
        bson.encode(scalars),
        bson.encode({"_id": 2, **binaries}),
        bson.encode({"_id": 3, "deep": _nested(50)}),
        bson.encode({"_id": 4, "arrays": [[[[1, "two", 3.0, None, [Int64(4)]]]], {"a": [{}]}]}),
        bytes(RawBSONDocument(bson.encode({"_id": 5, "via": "raw", "n": Int64(-1)})).raw),
        _deprecated_types_document(),
        bson.encode({"_id": {"compound": [1, 2], "d": datetime(1969, 7, 20, tzinfo=UTC)}}),
    ]


def large_document() -> bytes:
    pattern = bytes(random.Random(3).randrange(256) for _ in range(4093))
    blob = (pattern * (15 * (1 << 20) // len(pattern) + 1))[: 15 * (1 << 20)]
    document = bson.encode({"_id": "large", "blob": Binary(blob), "tail": "end"})
    assert 15 << 20 < len(document) < 16 << 20
    return document


COLLECTIONS: dict[tuple[str, str], list[bytes]] = {}


def fixture_collections() -> dict[tuple[str, str], list[bytes]]:
    if not COLLECTIONS:
        small = [bson.encode({"_id": n, "n": n, "s": "x" * (n % 97)}) for n in range(2_000)]
        COLLECTIONS.update(
            {
                ("fidelity", "every.type.of.bson"): every_type_documents(),
                ("fidelity", "empty"): [],
                ("fidelity", "large"): [small[0], large_document(), small[1]],
                ("fidelity", "system.js"): small[:3],
                ("other-db", "plain"): small,
                ("other-db", "odd/name with spaces%"): small[:5],
                ("база", "коллекция." + "long" * 40): small[:7],  # a PAX header in tar
            }
        )
    return COLLECTIONS


INDEXES = [
    {"v": 2, "key": {"_id": 1}, "name": "_id_"},
    {"v": 2, "key": {"email": 1, "created": -1}, "name": "email_1_created_-1", "unique": True},
    {"v": 2, "key": {"_fts": "text", "_ftsx": 1}, "name": "t", "weights": {"body": 1}},
    {
        "v": 2,
        "key": {"expires": 1},
        "name": "ttl",
        "expireAfterSeconds": 3600,
        "partialFilterExpression": {"kind": {"$eq": "session"}},
        "collation": {"locale": "fr", "strength": 2},
    },
]
OPTIONS = {
    "capped": True,
    "size": Int64(1 << 30),
    "validator": {"$jsonSchema": {"bsonType": "object", "required": ["email"]}},
}
COLLECTION_UUID = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")


def write_archive(
    collections: dict[tuple[str, str], list[bytes]],
    key: bytes = KEY,
    chunk_size: int = 1 << 20,
    compresslevel: int = 6,
) -> tuple[bytes, ArchiveSummary]:
    sink = WriteOnlySink()
    with ArchiveWriter(sink, key, key_id(key), compresslevel, chunk_size) as writer:
        for (database, collection), documents in collections.items():
            metadata = collection_metadata(collection, INDEXES, OPTIONS, COLLECTION_UUID)
            # Cursors with document_class=RawBSONDocument yield these; bytes work too.
            mixed = (RawBSONDocument(d) if n % 2 else d for n, d in enumerate(documents))
            with spool_collection(mixed, max_memory=1 << 20) as spooled:
                assert spooled.count == len(documents)
                assert spooled.size == sum(len(d) for d in documents)
                writer.add_collection(database, collection, spooled, metadata)
    assert writer.summary is not None
    return sink.value(), writer.summary


@pytest.fixture(scope="module")
def archive() -> tuple[bytes, ArchiveSummary]:
    return write_archive(fixture_collections())


def test_every_bson_type_survives_byte_for_byte(archive: tuple[bytes, ArchiveSummary]) -> None:
    data, summary = archive
    expected = fixture_collections()
    seen: dict[tuple[str, str], list[bytes]] = {}
    members = []
    for member in read_archive(StingySource(data), KEY):
        members.append(member.path)
        database, collection, kind = split_path(member.path)
        if kind == "bson":
            seen[(database, collection)] = list(iter_bson(member.stream))
        else:
            metadata = parse_metadata(member.stream.read())
            assert metadata["collectionName"] == collection
    assert seen.keys() == expected.keys()
    for name, documents in expected.items():
        assert seen[name] == documents, name  # same bytes, same order
    assert members == [
        path
        for database, collection in expected
        for path in (metadata_path(database, collection), bson_path(database, collection))
    ]
    assert summary.files[bson_path("fidelity", "empty")].size == 0
    assert summary.files[bson_path("fidelity", "large")].documents == 3


def test_bson_files_are_concatenated_documents_as_mongodump_writes_them(
    archive: tuple[bytes, ArchiveSummary],
) -> None:
    data, _ = archive
    expected = fixture_collections()
    for member in read_archive(io.BytesIO(data), KEY):
        database, collection, kind = split_path(member.path)
        if kind == "bson":
            assert member.stream.read() == b"".join(expected[(database, collection)])


def test_member_paths_escape_collection_names_like_mongodump() -> None:
    assert bson_path("fidelity", "every.type.of.bson") == "fidelity/every.type.of.bson.bson"
    assert metadata_path("db", "odd/name with spaces%") == (
        "db/odd%2Fname%20with%20spaces%25.metadata.json"
    )
    assert bson_path("db", "a$b&c+d:e=f@g;h,i?j") == "db/a$b&c+d:e=f@g%3Bh%2Ci%3Fj.bson"
    assert split_path("db/odd%2Fname%20with%20spaces%25.metadata.json") == (
        "db",
        "odd/name with spaces%",
        "metadata",
    )


def test_metadata_is_canonical_extended_json_like_mongodump(
    archive: tuple[bytes, ArchiveSummary],
) -> None:
    data, _ = archive
    for member in read_archive(io.BytesIO(data), KEY):
        if member.path == metadata_path("fidelity", "every.type.of.bson"):
            text = member.stream.read().decode()
        else:
            member.stream.read()
    assert text.startswith('{"options":{"capped":true,"size":{"$numberLong":"1073741824"}')
    assert '"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}' in (
        text
    )
    assert text.endswith(
        '"uuid":"0f1e2d3c4b5a69788796a5b4c3d2e1f0",'
        '"collectionName":"every.type.of.bson","type":"collection"}'
    )
    metadata = json_util.loads(text)
    assert list(metadata) == ["options", "indexes", "uuid", "collectionName", "type"]
    assert [index["name"] for index in metadata["indexes"]] == [i["name"] for i in INDEXES]
    assert metadata["indexes"][1]["unique"] is True
    assert metadata["indexes"][3]["partialFilterExpression"] == {"kind": {"$eq": "session"}}
    assert metadata["options"]["size"] == Int64(1 << 30)
    assert isinstance(parse_metadata(text.encode())["options"]["size"], Int64)


def test_metadata_leaves_out_empty_options_and_uuid_and_takes_raw_index_documents() -> None:
    raw_index = RawBSONDocument(bson.encode({"v": 2, "key": {"_id": 1}, "name": "_id_"}))
    text = collection_metadata("c", [raw_index]).decode()
    assert text == (
        '{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],'
        '"collectionName":"c","type":"collection"}'
    )
    assert collection_metadata("c", [], uuid=Binary(COLLECTION_UUID.bytes, 4)) == (
        collection_metadata("c", [], uuid=str(COLLECTION_UUID))
    )
    with pytest.raises(ValueError, match="index 0"):
        collection_metadata("c", [{"v": 2, "name": "no-key"}])


def test_verify_walks_everything_and_counts_documents(
    archive: tuple[bytes, ArchiveSummary],
) -> None:
    data, written = archive
    expected = {path: digest.sha256 for path, digest in written.files.items()}
    verified = verify_archive(StingySource(data, seed=11), KEY, written.object_sha256, expected)
    assert verified.object_sha256 == written.object_sha256
    assert verified.object_bytes == written.object_bytes == len(data)
    assert verified.files == written.files
    for (database, collection), documents in fixture_collections().items():
        assert verified.files[bson_path(database, collection)].documents == len(documents)
    assert verified.key_id == key_id(KEY)
    assert verified.chunks == written.chunks
    assert verified.compressed_bytes == written.compressed_bytes
    assert verified.tar_bytes == written.tar_bytes


def test_verify_refuses_a_wrong_object_sha(archive: tuple[bytes, ArchiveSummary]) -> None:
    data, _ = archive
    with pytest.raises(CorruptArchive, match=r"object sha256 is \w{64}, the manifest says 0{64}"):
        verify_archive(io.BytesIO(data), KEY, "0" * 64)


def test_verify_refuses_files_that_differ_from_the_manifest(
    archive: tuple[bytes, ArchiveSummary],
) -> None:
    data, written = archive
    expected = {path: digest.sha256 for path, digest in written.files.items()}
    plain = bson_path("other-db", "plain")
    wrong = {**expected, plain: "f" * 64, "ghost/missing.bson": "0" * 64}
    with pytest.raises(CorruptArchive) as caught:
        verify_archive(io.BytesIO(data), KEY, written.object_sha256, wrong)
    message = str(caught.value)
    assert "ghost/missing.bson is missing" in message
    assert f"{plain} sha256 is {written.files[plain].sha256}, the manifest says {'f' * 64}" in (
        message
    )
    del expected[plain]
    with pytest.raises(CorruptArchive, match=f"{re.escape(plain)} is not in the manifest"):
        verify_archive(io.BytesIO(data), KEY, None, expected)


# --- tampering -----------------------------------------------------------------------------

CHUNK = 1024
RECORD = CHUNK + TAG_BYTES


@pytest.fixture(scope="module")
def small_archive() -> bytes:
    noise = random.Random(5)
    documents = [bson.encode({"_id": n, "noise": Binary(noise.randbytes(300))}) for n in range(40)]
    data, summary = write_archive({("db", "c"): documents}, chunk_size=CHUNK)
    assert summary.chunks >= 8
    assert (len(data) - HEADER_BYTES) % RECORD != 0  # a short final chunk
    return data


def _chunks(data: bytes) -> int:
    return -(-(len(data) - HEADER_BYTES) // RECORD)


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def _refused(data: bytes, key: bytes = KEY) -> ArchiveError:
    with pytest.raises(ArchiveError) as caught:
        verify_archive(io.BytesIO(data), key)
    message = str(caught.value)
    for secret in (KEY, OTHER_KEY):
        for form in (
            secret.hex(),
            base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode(),
            repr(secret),
        ):
            assert form not in message
    return caught.value


def test_the_untouched_small_archive_verifies(small_archive: bytes) -> None:
    assert verify_archive(io.BytesIO(small_archive), KEY).chunks == _chunks(small_archive)


@pytest.mark.parametrize("offset", range(HEADER_BYTES))
def test_any_header_byte_flipped_is_refused(small_archive: bytes, offset: int) -> None:
    error = _refused(_flip(small_archive, offset))
    assert isinstance(error, CorruptArchive)
    assert re.search(r"magic|version|header", str(error)), error


def test_a_flipped_byte_in_a_middle_chunk_names_that_chunk(small_archive: bytes) -> None:
    error = _refused(_flip(small_archive, HEADER_BYTES + 3 * RECORD + 100))
    assert isinstance(error, CorruptArchive)
    start = HEADER_BYTES + 3 * RECORD
    assert f"chunk 3 (object bytes {start}..{start + RECORD - 1}) failed authentication" in str(
        error
    )


def test_a_flipped_byte_in_the_last_chunk_is_refused(small_archive: bytes) -> None:
    last = _chunks(small_archive) - 1
    error = _refused(_flip(small_archive, len(small_archive) - 1))
    assert isinstance(error, CorruptArchive)
    assert f"chunk {last} " in str(error)


def test_a_truncation_at_a_chunk_boundary_is_refused(small_archive: bytes) -> None:
    error = _refused(small_archive[: HEADER_BYTES + 4 * RECORD])
    assert isinstance(error, CorruptArchive)
    assert "truncated archive: the object ends after chunk 3" in str(error)
    assert "which is not the final chunk" in str(error)


def test_dropping_the_final_chunk_is_refused(small_archive: bytes) -> None:
    last = _chunks(small_archive) - 1
    error = _refused(small_archive[: HEADER_BYTES + last * RECORD])
    assert isinstance(error, CorruptArchive)
    assert f"the object ends after chunk {last - 1}" in str(error)


@pytest.mark.parametrize(
    "length",
    [0, 5, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 10, HEADER_BYTES + 2 * RECORD + 7],
)
def test_a_truncation_anywhere_is_refused(small_archive: bytes, length: int) -> None:
    error = _refused(small_archive[:length])
    assert isinstance(error, CorruptArchive)
    assert re.search(r"truncated|failed authentication", str(error)), error


def test_garbage_appended_is_refused(small_archive: bytes) -> None:
    last = _chunks(small_archive) - 1
    error = _refused(small_archive + b"\x00" * 10)
    assert isinstance(error, CorruptArchive)
    assert f"chunk {last} " in str(error)


def test_a_chunk_appended_after_a_full_final_chunk_is_refused() -> None:
    # When the payload is whole chunks, the final chunk is full-sized, and a record
    # appended after it reads as "data after the final chunk".
    sink = WriteOnlySink()
    encryptor = ChunkEncryptor(sink, KEY, CHUNK)
    encryptor.write(os.urandom(2 * CHUNK))
    encryptor.finish()
    data = sink.value()
    assert len(data) == HEADER_BYTES + 2 * RECORD
    assert ChunkDecryptor(io.BytesIO(data), KEY).read() is not None
    extended = data + data[HEADER_BYTES : HEADER_BYTES + RECORD]
    with pytest.raises(CorruptArchive) as caught:
        ChunkDecryptor(io.BytesIO(extended), KEY).read()
    assert str(caught.value) == (
        f"unexpected data after the final chunk: chunk 1 (object bytes {HEADER_BYTES + RECORD}"
        f"..{HEADER_BYTES + 2 * RECORD - 1}) is the final chunk, yet at least {RECORD} more "
        f"bytes follow from offset {HEADER_BYTES + 2 * RECORD}"
    )


def test_two_swapped_chunks_are_refused(small_archive: bytes) -> None:
    one = slice(HEADER_BYTES + RECORD, HEADER_BYTES + 2 * RECORD)
    two = slice(HEADER_BYTES + 2 * RECORD, HEADER_BYTES + 3 * RECORD)
    swapped = bytearray(small_archive)
    swapped[one], swapped[two] = small_archive[two], small_archive[one]
    error = _refused(bytes(swapped))
    assert isinstance(error, CorruptArchive)
    assert "chunk 1 " in str(error)


def test_a_wrong_key_is_named_by_key_ids(small_archive: bytes) -> None:
    error = _refused(small_archive, key=OTHER_KEY)
    assert isinstance(error, WrongKey)
    assert str(error) == (
        f"wrong key: archive key id {key_id(KEY)}, secret's key id {key_id(OTHER_KEY)}"
    )


def test_a_wrong_key_is_refused_before_any_member_is_read(small_archive: bytes) -> None:
    with pytest.raises(WrongKey):
        read_archive(io.BytesIO(small_archive), OTHER_KEY)


def test_damage_is_found_when_the_reader_reaches_it(small_archive: bytes) -> None:
    """Why restore verifies first: members before the damage read fine."""
    damaged = _flip(small_archive, len(small_archive) - 1)
    reader = read_archive(io.BytesIO(damaged), KEY)
    first = next(reader)
    assert first.path == "db/c.metadata.json"
    assert parse_metadata(first.stream.read())["collectionName"] == "c"
    with pytest.raises(CorruptArchive):
        for member in reader:
            for _ in iter_bson(member.stream):
                pass


# --- the writer's contract -----------------------------------------------------------------


def test_an_interrupted_writer_leaves_an_object_that_never_verifies() -> None:
    sink = WriteOnlySink()

    def documents() -> Iterator[bytes]:
        for n in range(10):
            yield bson.encode({"_id": n, "noise": Binary(os.urandom(500))})
        raise RuntimeError("cursor died")

    with (
        pytest.raises(RuntimeError, match="cursor died"),
        ArchiveWriter(sink, KEY, chunk_size=CHUNK) as writer,
    ):
        writer.add_bytes("db/a.bson", b"".join(every_type_documents()))
        writer.add_bytes("db/b.bson", os.urandom(5 * CHUNK))
        with spool_collection(documents()) as spooled:
            writer.add_collection("db", "c", spooled, b"{}")
    assert writer.summary is None
    error = _refused(sink.value())
    assert "truncated" in str(error)


def test_a_spool_that_changed_fails_the_archive() -> None:
    spooled = spool_collection([bson.encode({"_id": 1})])
    sink = WriteOnlySink()
    writer = ArchiveWriter(sink, KEY)
    with pytest.raises(ArchiveError, match="content changed while archiving"):
        writer.add_file("db/c.bson", spooled.file, spooled.size, "0" * 64)
    with pytest.raises(ArchiveError, match="abandoned after an error"):
        writer.close()
    with pytest.raises(ArchiveError, match="truncated"):
        verify_archive(io.BytesIO(sink.value()), KEY)


def test_close_is_idempotent_and_ends_the_archive() -> None:
    writer = ArchiveWriter(WriteOnlySink(), KEY)
    writer.add_bytes("db/c.bson", bson.encode({"_id": 1}))
    summary = writer.close()
    assert writer.close() is summary
    with pytest.raises(ArchiveError, match="the archive writer is closed"):
        writer.add_bytes("db/d.bson", b"")
    twice = ArchiveWriter(WriteOnlySink(), KEY)
    twice.add_bytes("db/c.bson", b"")
    with pytest.raises(ValueError, match="already in the archive"):
        twice.add_bytes("db/c.bson", b"")


def test_a_member_stream_cannot_be_read_after_moving_on(
    archive: tuple[bytes, ArchiveSummary],
) -> None:
    data, _ = archive
    reader = read_archive(io.BytesIO(data), KEY)
    first = next(reader)
    first.stream.read(3)
    next(reader)
    with pytest.raises(ArchiveError, match="the reader has moved past this member"):
        first.stream.read(1)


def test_a_short_source_fails_the_archive() -> None:
    writer = ArchiveWriter(WriteOnlySink(), KEY)
    with pytest.raises(ArchiveError, match="expected 100 bytes, the source ended after 10"):
        writer.add_file("db/c.bson", io.BytesIO(b"x" * 10), 100)


@pytest.mark.parametrize("path", ["/abs.bson", "../up.bson", "a/../b.bson", "a//b.bson", ""])
def test_unsafe_member_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="relative and normalised"):
        ArchiveWriter(WriteOnlySink(), KEY).add_bytes(path, b"")


def test_a_key_id_that_does_not_belong_to_the_key_is_refused() -> None:
    with pytest.raises(ArchiveError, match=f"its id is {key_id(KEY)}"):
        ArchiveWriter(WriteOnlySink(), KEY, key_id(OTHER_KEY))


def test_two_archives_of_the_same_data_differ_in_nonce() -> None:
    first, _ = write_archive({("db", "c"): [bson.encode({"_id": 1})]})
    second, _ = write_archive({("db", "c"): [bson.encode({"_id": 1})]})
    assert first[:22] == second[:22]  # magic, version, cipher, chunk size, key id
    assert first[22:30] != second[22:30]  # the random nonce prefix


def test_an_empty_archive_round_trips() -> None:
    sink = WriteOnlySink()
    with ArchiveWriter(sink, KEY):
        pass
    assert list(read_archive(io.BytesIO(sink.value()), KEY)) == []
    assert verify_archive(io.BytesIO(sink.value()), KEY).files == {}


# --- spooling and BSON framing -------------------------------------------------------------


def test_spool_counts_hashes_and_rolls_over_to_disk(tmp_path: Path) -> None:
    documents = [bson.encode({"_id": n, "pad": "p" * 1000}) for n in range(3000)]
    raw = b"".join(documents)
    with spool_collection(
        (RawBSONDocument(d) if n % 2 else d for n, d in enumerate(documents)),
        dir=str(tmp_path),
        max_memory=64 << 10,
    ) as spooled:
        assert (spooled.count, spooled.size) == (3000, len(raw))
        assert spooled.sha256 == hashlib.sha256(raw).hexdigest()
        assert spooled.file.read() == raw


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"_id": 1}, "is a dict, not raw BSON bytes"),
        (b"\x05\x00\x00", "declares -1 bytes and has 3"),
        (bson.encode({"_id": 1})[:-1], "declares 14 bytes and has 13"),
    ],
)
def test_spool_refuses_what_is_not_one_bson_document(document: object, message: str) -> None:
    with pytest.raises(ArchiveError, match=re.escape(message)):
        spool_collection([bson.encode({"_id": 0}), document])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"\x10\x00", "partial document 1 at offset 14: 2 of its 4 length bytes"),
        (b"\x04\x00\x00\x00", "document 1 at offset 14 declares 4 bytes"),
        (b"\xff\xff\xff\x7f", "document 1 at offset 14 declares 2147483647 bytes"),
        (b"\xff\xff\xff\xff", "document 1 at offset 14 declares -1 bytes"),
        (b"\x0a\x00\x00\x00\x01", "partial document 1 at offset 14: 5 of its 10 bytes"),
        (b"\x05\x00\x00\x00\x01", "document 1 at offset 14 does not end with a zero byte"),
    ],
)
def test_iter_bson_refuses_broken_framing(stream: bytes, message: str) -> None:
    good = bson.encode({"_id": 1})
    assert len(good) == 14
    documents = iter_bson(io.BytesIO(good + stream))
    assert next(documents) == good
    with pytest.raises(CorruptArchive, match=re.escape(message)):
        next(documents)


def test_iter_bson_accepts_the_largest_server_document() -> None:
    document = bson.encode({"_id": 1, "b": Binary(bytes((16 << 20) - 40))})
    assert list(iter_bson(io.BytesIO(document + document))) == [document, document]


# --- keys ----------------------------------------------------------------------------------


def test_parse_key_accepts_base64_urlsafe_and_hex() -> None:
    key = bytes(range(200, 232))
    assert parse_key(base64.b64encode(key).decode()) == key
    assert parse_key(base64.b64encode(key).decode().rstrip("=") + "\n") == key
    assert parse_key(base64.urlsafe_b64encode(key).decode()) == key
    assert parse_key(key.hex().upper()) == key


@pytest.mark.parametrize(
    "secret",
    [
        base64.b64encode(bytes(range(16))).decode(),
        base64.b64encode(bytes(range(48))).decode(),
        "not base64 at all! " + base64.b64encode(KEY).decode(),
        "",
    ],
)
def test_parse_key_errors_never_show_the_secret(secret: str) -> None:
    with pytest.raises(ArchiveError) as caught:
        parse_key(secret)
    message = str(caught.value)
    assert "32" in message
    if secret:
        assert secret not in message
        assert base64.b64encode(KEY).decode() not in message
    # No chained error (e.g. binascii's) can carry the text along in a traceback.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_key_id_is_a_short_stable_fingerprint() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", key_id(KEY))
    assert key_id(KEY) == key_id(bytes(KEY))
    assert key_id(KEY) != key_id(OTHER_KEY)
    assert key_id(KEY) not in (KEY.hex(), hashlib.sha256(KEY).hexdigest()[:16])
    with pytest.raises(ArchiveError):
        key_id(b"short")


class RetryingSink:
    """Like the resumable upload under a BlobWriter: an attempt fails inside `write()`, is
    retried there, and the failure is kept (its traceback holds the caller's frames)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.kept: list[BaseException] = []

    def write(self, data: bytes, /) -> int:
        if len(self.parts) == 2 and not self.kept:
            try:
                raise ConnectionError("503 on this chunk's PUT")
            except ConnectionError as exc:
                self.kept.append(exc)  # as a retry helper keeps its last error
        self.parts.append(bytes(data))
        return len(data)


def test_a_sink_that_keeps_a_retried_error_does_not_break_the_encryptor() -> None:
    """A 503 retried inside the upload's write kept the chunk's memoryview alive through
    the traceback, and the next chunk failed with BufferError (seen on a mid-upload 503)."""
    sink = RetryingSink()
    with ArchiveWriter(sink, KEY, chunk_size=CHUNK, compresslevel=1) as writer:
        writer.add_bytes("db/noise.bin", os.urandom(6 * CHUNK))
    assert sink.kept
    summary = verify_archive(io.BytesIO(b"".join(sink.parts)), KEY)
    assert summary.files["db/noise.bin"].size == 6 * CHUNK
