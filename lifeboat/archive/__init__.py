"""Lifeboat's encrypted MongoDB backup archive: a pure library (no network, no server).

The object in the bucket is a mongodump directory (`<db>/<coll>.bson` and
`<db>/<coll>.metadata.json`, which stock `mongorestore` reads) packed as

    tar stream  →  gzip  →  AES-256-GCM in independent chunks  →  sink

(the envelope's layout is described in `lifeboat.archive.crypto`). Memory stays
constant: each collection is spooled to a temporary file (tar needs sizes up front),
then streamed through the pipeline in chunks. A spool may hold its collection already
gzipped, as one gzip member (``spool_raw_batches(..., compresslevel=1)``): the writer
copies it between its own members, and the object is still one gzip stream.

Writing:

    with spool_collection(cursor) as spooled, ArchiveWriter(blob_writer, key) as writer:
        writer.add_collection("shop", "orders", spooled, collection_metadata("orders", ...))
    writer.summary  # sizes and sha256 of every file and of the object, for the manifest

Reading (verify first: chunked encryption finds damage at the end only at the end):

    verify_archive(blob.open("rb"), key, manifest_object_sha256, manifest_file_sha256s)
    for member in read_archive(blob.open("rb"), key):
        for document in iter_bson(member.stream): ...

Errors: `ArchiveError` ⊃ {`WrongKey`, `CorruptArchive`}; no message contains the key.
"""

from lifeboat.archive.crypto import key_id, parse_key
from lifeboat.archive.digests import ArchiveSummary, FileDigest, Readable, Writable
from lifeboat.archive.errors import ArchiveError, CorruptArchive, WrongKey
from lifeboat.archive.metadata import (
    bson_path,
    collection_metadata,
    metadata_path,
    parse_metadata,
    split_path,
)
from lifeboat.archive.reader import (
    ArchiveMember,
    ArchiveReader,
    MemberStream,
    iter_bson,
    read_archive,
    verify_archive,
)
from lifeboat.archive.spool import SpooledCollection, spool_collection, spool_raw_batches
from lifeboat.archive.writer import ArchiveWriter

__all__ = [
    "ArchiveError",
    "ArchiveMember",
    "ArchiveReader",
    "ArchiveSummary",
    "ArchiveWriter",
    "CorruptArchive",
    "FileDigest",
    "MemberStream",
    "Readable",
    "SpooledCollection",
    "Writable",
    "WrongKey",
    "bson_path",
    "collection_metadata",
    "iter_bson",
    "key_id",
    "metadata_path",
    "parse_key",
    "parse_metadata",
    "read_archive",
    "split_path",
    "spool_collection",
    "spool_raw_batches",
    "verify_archive",
]
