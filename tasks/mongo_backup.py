"""MongoDB ⇄ Cloud Storage: encrypted mongodump archives, streamed both ways."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from typing import TypeVar

from google.cloud import storage  # type: ignore[attr-defined]
from prefect import get_run_logger
from pydantic import BaseModel
from pymongo import MongoClient

from lifeboat import runtime
from lifeboat.archive import (
    ArchiveSummary,
    ArchiveWriter,
    SpooledCollection,
    collection_metadata,
    iter_bson,
    key_id,
    parse_key,
    parse_metadata,
    read_archive,
    split_path,
    spool_raw_batches,
)
from lifeboat.manifest import (
    ARCHIVE,
    CollectionEntry,
    FileDigest,
    Manifest,
    StoredObject,
    backup_prefix,
    object_name,
)
from lifeboat.pipeline import Channel, Pipeline
from lifeboat.secrets import read_secret
from tasks.archive_check import checked
from tasks.catalog import backups_bucket
from tasks.errors import PermanentError
from tasks.mongo import (
    CollectionSpec,
    Sampler,
    client,
    create_indexes,
    insert_raw,
    list_collections,
    scan_raw_batches,
)
from tasks.retrying import calling, cloud_task

UPLOAD_CHUNK = 8 << 20  # resumable-upload chunk: a multiple of 256 KiB, held in memory once
READ_CHUNK = 8 << 20
# gzip level 1: zlib is ~90% of the writer's time, and level 6 makes it the bottleneck
# (27 vs 95 MiB/s on JSON-like documents) for 25% smaller archives.
COMPRESSLEVEL = 1
# Sealed 1 MiB chunks queued for the upload thread: enough to cover one chunk's upload
# while the packer goes on, bounded so that a slow upload holds the packer back.
UPLOAD_SLOTS = 8
T = TypeVar("T")


def tool_version() -> str:
    return f"lifeboat {version('lifeboat')} (pymongo {version('pymongo')})"


def encryption_key(environment: str) -> tuple[bytes, str]:
    secret = runtime.topology(environment).backups.encryption_key_secret
    key = parse_key(read_secret(secret))
    return key, key_id(key)


class Spooled(BaseModel, arbitrary_types_allowed=True):
    order: int
    spec: CollectionSpec
    data: SpooledCollection
    samples: dict[str, str]


class ChannelWriter:
    """The archive writer's sink: each sealed chunk goes to the upload stage's channel."""

    def __init__(self, channel: Channel[bytes]) -> None:
        self._channel = channel

    def write(self, data: bytes, /) -> int:
        self._channel.put(bytes(data))
        return len(data)


def _cancellable(pipeline: Pipeline, batches: Iterable[T]) -> Iterator[T]:
    """Stop a long cursor soon after another stage failed, not at its end."""
    for batch in batches:
        pipeline.check()
        yield batch


def _spool(pipeline: Pipeline, mongo: MongoClient, order: int, spec: CollectionSpec) -> Spooled:  # type: ignore[type-arg]
    sampler = Sampler()
    batches = _cancellable(pipeline, scan_raw_batches(mongo[spec.database], spec.name))
    data = spool_raw_batches(batches, each=sampler.add_raw)
    return Spooled(order=order, spec=spec, data=data, samples=sampler.sample())


def _read_in_parallel(
    pipeline: Pipeline,
    mongo: MongoClient,  # type: ignore[type-arg]
    specs: list[CollectionSpec],
    readers: int,
) -> Channel[Spooled]:
    """Spool up to ``readers`` collections at once; each comes out as soon as it is whole.

    A reader that finished holds its spool until the packer takes it (one slot), so at
    most ``readers + 2`` spools exist at a time: memory and temporary disk stay bounded.
    """
    todo: queue.SimpleQueue[tuple[int, CollectionSpec]] = queue.SimpleQueue()
    for order, spec in enumerate(specs):
        todo.put((order, spec))
    ready: Channel[Spooled] = pipeline.channel(1)
    running = min(readers, len(specs))
    lock = threading.Lock()

    def reader() -> None:
        nonlocal running
        while True:
            try:
                order, spec = todo.get_nowait()
            except queue.Empty:
                break
            item = _spool(pipeline, mongo, order, spec)
            try:
                ready.put(item)
            except BaseException:
                item.data.close()
                raise
        with lock:
            running -= 1
            last = running == 0
        if last:
            ready.close()

    if running == 0:
        ready.close()
    for number in range(running):
        pipeline.start(f"read-{number}", reader)
    return ready


def _upload(blob: storage.Blob, chunks: Channel[bytes]) -> None:
    """The upload stage: sealed chunks into one resumable upload.

    Leaving the block on an error (``Cancelled`` included) cancels the upload session, so
    a failed backup never becomes an object.
    """
    with blob.open("wb", content_type="application/octet-stream") as sink:
        for data in chunks:
            sink.write(data)


def _dump(
    mongo: MongoClient,  # type: ignore[type-arg]
    specs: list[CollectionSpec],
    blob: storage.Blob,
    key: bytes,
    kid: str,
    readers: int,
) -> tuple[list[CollectionEntry], ArchiveSummary]:
    """cursors (``readers`` at once) → spools → tar + gzip + AES-GCM → upload, overlapped.

    Stages: the readers, the packer (this thread: tar, gzip and encryption) and the
    uploader, joined by bounded channels. Memory, whatever the data's size:
    ``(readers + 2) * SPOOL_MEMORY_BYTES`` of spools (8 MiB each, the rest on disk),
    ``readers`` cursor batches (1000 documents, at most 16 MiB), ``UPLOAD_SLOTS``
    sealed chunks of 1 MiB and the upload's ``UPLOAD_CHUNK`` buffer: about 80 MiB at 4
    readers, 140 MiB at most. An exception in any stage fails the backup and cancels
    the others, the upload session included.
    """
    entries: list[tuple[int, CollectionEntry]] = []
    with Pipeline("mongo-backup") as pipeline:
        ready = _read_in_parallel(pipeline, mongo, specs, readers)
        chunks: Channel[bytes] = pipeline.channel(UPLOAD_SLOTS)
        pipeline.start("upload", lambda: _upload(blob, chunks))
        # Leaving this block on an error aborts the archive: it never gets its final
        # chunk, and the channel is never closed, so the uploader cancels its session.
        with ArchiveWriter(
            ChannelWriter(chunks), key=key, key_id=kid, compresslevel=COMPRESSLEVEL
        ) as writer:
            for item in ready:
                spec = item.spec
                with item.data as data:
                    meta = collection_metadata(spec.name, spec.indexes, spec.options, spec.uuid)
                    writer.add_collection(spec.database, spec.name, data, meta)
                entry = CollectionEntry(
                    database=spec.database,
                    name=spec.name,
                    documents=data.count,
                    bytes=data.size,
                    sha256=data.sha256,
                    samples=item.samples,
                )
                entries.append((item.order, entry))
            summary = writer.close()
        chunks.close()
    # The archive holds collections as they finished; the manifest lists them as listed.
    return [entry for _, entry in sorted(entries, key=lambda e: e[0])], summary


@cloud_task(timeout_seconds=6 * 3600, retries=2, task_run_name="mongo-backup-{backup_id}")
def mongo_backup_to_gcs(environment: str, backup_id: str) -> Manifest:
    """Stream every configured database into one encrypted archive in GCS.

    Returns an *unverified* manifest (verification is a separate read-back). Collections
    are read ``mongodb.dump_parallel_collections`` at a time while earlier ones are
    packed and uploaded (see ``_dump`` for the memory bound).

    Idempotent: the archive's name is fixed by the backup id; a retry overwrites it.
    """
    topo = runtime.topology(environment)
    key, kid = encryption_key(environment)
    bucket = backups_bucket(environment)
    name = backup_prefix("mongodb", backup_id) + ARCHIVE
    uri = f"gs://{bucket.name}/{name}"
    started = datetime.now(UTC)
    with calling("mongo-backup", uri), client(environment) as mongo:
        specs = [s for db in topo.mongodb.databases for s in list_collections(mongo[db])]
        blob = bucket.blob(name, chunk_size=UPLOAD_CHUNK)
        readers = topo.mongodb.dump_parallel_collections
        entries, summary = _dump(mongo, specs, blob, key, kid, readers)
        blob.reload(timeout=runtime.call_timeout(environment))
    get_run_logger().info(
        "mongodb backup %s: %d collections, %d bytes uploaded to %s",
        backup_id,
        len(entries),
        summary.object_bytes,
        uri,
    )
    return Manifest(
        source="mongodb",
        backup_id=backup_id,
        environment=environment,
        started_at=started,
        ended_at=datetime.now(UTC),
        tool=tool_version(),
        databases=list(topo.mongodb.databases),
        key_id=kid,
        archive=StoredObject(
            uri=uri,
            bytes=summary.object_bytes,
            sha256=summary.object_sha256,
            generation=blob.generation,
        ),
        files={p: FileDigest(bytes=f.size, sha256=f.sha256) for p, f in summary.files.items()},
        collections=entries,
    )


def archive_blob(environment: str, manifest: Manifest) -> storage.Blob:
    """The manifest's archive object, pinned to the generation its backup wrote."""
    if manifest.archive is None:
        raise PermanentError(f"backup {manifest.backup_id} has no archive in its manifest")
    # The backups bucket or a copy bucket (``Manifest.stored_in``), as the URI says.
    bucket_name, name = object_name(manifest.archive.uri)
    bucket = backups_bucket(environment, bucket_name)
    # Pinned to the generation the backup (or its copy) wrote: a replaced object is not it.
    return bucket.blob(name, generation=manifest.archive.generation, chunk_size=READ_CHUNK)


@cloud_task(timeout_seconds=6 * 3600, retries=2, task_run_name="mongo-verify-{manifest.backup_id}")
def mongo_verify_backup(environment: str, manifest: Manifest) -> Manifest:
    """Download the archive again, check its sha256, decrypt it and walk every member.

    Returns the manifest marked verified, or unverified with the reason; a wrong key or a
    mismatch is a result here, not a retry. Idempotent: read-only.
    """
    key, kid = encryption_key(environment)
    blob = archive_blob(environment, manifest)
    with calling("mongo-verify", manifest.archive.uri if manifest.archive else "?"):
        return checked(manifest, blob, key, kid)


class RestoredCollection(BaseModel):
    source: str
    target: str
    documents: int
    expected: int
    indexes: int


@cloud_task(timeout_seconds=6 * 3600, retries=0, task_run_name="mongo-restore-{manifest.backup_id}")
def mongo_restore_from_gcs(
    environment: str, manifest: Manifest, targets: dict[str, str]
) -> list[RestoredCollection]:
    """Restore a verified archive into the target databases (source db → target db).

    The caller verifies the archive first (``mongo_verify_backup``), so a wrong key or a
    corrupt object fails before any write. Each target collection is dropped before it is
    filled, as ``mongorestore --drop`` does, by ``mongodb.restore_insertion_workers``
    unordered batches at once; a refused document fails the restore, named. Not retried:
    a partial restore is dropped and re-run whole by the caller.
    """
    key, _ = encryption_key(environment)
    workers = runtime.topology(environment).mongodb.restore_insertion_workers
    blob = archive_blob(environment, manifest)
    expected = {f"{c.database}/{c.name}": c.documents for c in manifest.collections}
    restored: list[RestoredCollection] = []
    metadata: dict[tuple[str, str], bytes] = {}
    resource = manifest.archive.uri if manifest.archive else "?"
    with calling("mongo-restore", resource), client(environment) as mongo, blob.open("rb") as src:
        for member in read_archive(src, key):
            database, collection, kind = split_path(member.path)
            if database not in targets:
                continue
            target = mongo[targets[database]]
            if kind == "metadata":
                # mongodump writes the metadata first; indexes go in after the documents.
                metadata[(database, collection)] = member.stream.read()
                continue
            target.drop_collection(collection)
            target.create_collection(collection)
            docs = iter_bson(member.stream)
            source = f"{database}.{collection}"
            count = insert_raw(target, collection, docs, workers, source=source)
            meta = parse_metadata(metadata.get((database, collection), b"{}"))
            restored.append(
                RestoredCollection(
                    source=f"{database}.{collection}",
                    target=f"{target.name}.{collection}",
                    documents=count,
                    expected=expected.get(f"{database}/{collection}", -1),
                    indexes=create_indexes(target, collection, list(meta.get("indexes", []))),
                )
            )
    return restored
