"""MongoDB ⇄ Cloud Storage: encrypted mongodump archives, streamed both ways."""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from bson.timestamp import Timestamp
from google.cloud import storage  # type: ignore[attr-defined]
from prefect import get_run_logger
from pydantic import BaseModel, Field
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from lifeboat import runtime
from lifeboat.archive import (
    ArchiveSummary,
    ArchiveWriter,
    SpooledCollection,
    collection_metadata,
    iter_bson,
    parse_metadata,
    read_archive,
    split_path,
    spool_raw_batches,
)
from lifeboat.manifest import (
    ARCHIVE,
    CollectionEntry,
    Manifest,
    OplogCoverage,
    backup_prefix,
)
from lifeboat.oplog import OPLOG_FILE, before, describe
from lifeboat.pipeline import Channel, Pipeline
from lifeboat.slices import SliceManifest
from tasks.backup_archive import (
    archive_blob,
    archived_manifest,
    encryption_key,
    verify_archived,
)
from tasks.catalog import backups_bucket
from tasks.mongo import (
    CollectionSpec,
    Sampler,
    client,
    create_indexes,
    insert_raw,
    list_collections,
    scan_raw_batches,
)
from tasks.mongo_oplog import (
    Replayed,
    Streams,
    close_streams,
    coverage,
    drain,
    enable_post_images,
    open_streams,
    raws,
    replay,
    server_cuts,
)
from tasks.mongo_slices import slice_entries
from tasks.retrying import calling, cloud_task

UPLOAD_CHUNK = 8 << 20  # resumable-upload chunk: a multiple of 256 KiB, held in memory once
# gzip level 1: zlib is ~90% of the writer's time, and level 6 makes it the bottleneck
# (27 vs 95 MiB/s on JSON-like documents) for 25% smaller archives.
COMPRESSLEVEL = 1
# Cursor batches (1000 documents, 16 MiB at most) fetched ahead of the thread that
# spools them: the server works on the next batch while this one is walked and gzipped.
# One is enough for that overlap (bench/backup.py) and keeps the worst case bounded.
READ_AHEAD = 1
# Sealed 1 MiB chunks queued for the upload thread: enough to cover one chunk's upload
# while the packer goes on, bounded so that a slow upload holds the packer back.
UPLOAD_SLOTS = 8


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


def _spool(pipeline: Pipeline, mongo: MongoClient, order: int, spec: CollectionSpec) -> Spooled:  # type: ignore[type-arg]
    """One collection: its cursor read ahead in a thread, walked, sampled and gzipped here."""
    sampler = Sampler()
    namespace = f"{spec.database}.{spec.name}"
    batches = pipeline.read_ahead(
        f"cursor-{namespace}", scan_raw_batches(mongo[spec.database], spec.name), READ_AHEAD
    )
    try:
        data = spool_raw_batches(batches, each=sampler.add_raw, compresslevel=COMPRESSLEVEL)
    except OperationFailure:
        # A drop kills the collection's cursors (QueryPlanKilled): not a failed backup,
        # the collection is left out (`_oplog_writer` finds it gone). Anything else is.
        if spec.name in mongo[spec.database].list_collection_names():
            raise
        sampler = Sampler()
        data = spool_raw_batches(iter(()), each=None, compresslevel=COMPRESSLEVEL)
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
    finish: Callable[[ArchiveWriter], None] | None = None,
) -> tuple[list[CollectionEntry], ArchiveSummary]:
    """cursors (``readers`` at once) → gzipped spools → tar + AES-GCM → upload, overlapped.

    Stages: the readers (each with its cursor read ahead in a thread; the reader walks,
    samples and gzips), the packer (this thread: tar, and encryption) and the uploader,
    joined by bounded channels. The gzip of a collection is done while it is read, by
    its reader, so the last collection leaves no compression to wait for. Memory,
    whatever the data's size: ``(readers + 2) * SPOOL_MEMORY_BYTES`` of spools (8 MiB
    each, the rest on disk), ``readers * (READ_AHEAD + 2)`` cursor batches (queued,
    held by the cursor thread waiting to queue it, and spooling; 1000 documents: about
    1.5 MiB at 1.5 KB a document, 16 MiB at most), ``UPLOAD_SLOTS`` sealed chunks of
    1 MiB and the upload's ``UPLOAD_CHUNK`` buffer: about 80 MiB at 4 readers, 260 MiB
    if every batch were the largest a server sends. An exception in
    any stage fails the backup and cancels the others, the upload session included.
    ``finish`` adds the last files (the oplog) once every collection is in.
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
            if finish is not None:
                finish(writer)
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
    oplog: list[OplogCoverage] = []
    with calling("mongo-backup", uri), client(environment) as mongo:
        specs = [s for db in topo.mongodb.databases for s in list_collections(mongo[db])]
        blob = bucket.blob(name, chunk_size=UPLOAD_CHUNK)
        readers = topo.mongodb.dump_parallel_collections
        enabled = enable_post_images(mongo, specs)
        if enabled:
            get_run_logger().warning(
                "mongodb backup %s: changeStreamPreAndPostImages turned on for %s (the "
                "capture replays updates by their post-images)",
                backup_id,
                ", ".join(enabled),
            )
            specs = [s for db in topo.mongodb.databases for s in list_collections(mongo[db])]
        # Opened before the first read: every change the dump may miss is in a stream.
        streams = open_streams(mongo, specs)
        try:
            finish = _oplog_writer(
                streams,
                oplog,
                lambda: _listed(mongo, topo.mongodb.databases),
                lambda: server_cuts(mongo, list(topo.mongodb.databases)),
            )
            entries, summary = _dump(mongo, specs, blob, key, kid, readers, finish)
        finally:
            close_streams(streams)
        blob.reload(timeout=runtime.call_timeout(environment))
    ended = set(oplog[0].ended) if oplog else set()
    if ended:
        # In the archive as far as it was read, left out of the backup everywhere else.
        entries = [e for e in entries if f"{e.database}.{e.name}" not in ended]
        get_run_logger().warning(
            "mongodb backup %s: %s dropped while the dump ran; left out, their capture ended",
            backup_id,
            ", ".join(sorted(ended)),
        )
    get_run_logger().info(
        "mongodb backup %s: %d collections (%d read at once), %d bytes uploaded to %s",
        backup_id,
        len(entries),
        readers,
        summary.object_bytes,
        uri,
    )
    return archived_manifest(
        "mongodb",
        backup_id,
        environment,
        started,
        uri,
        summary,
        blob.generation,
        databases=list(topo.mongodb.databases),
        collections=entries,
        oplog=oplog[0] if oplog else None,
    )


def _listed(mongo: MongoClient, databases: list[str]) -> set[str]:  # type: ignore[type-arg]
    return {f"{db}.{name}" for db in databases for name in mongo[db].list_collection_names()}


def _oplog_writer(
    streams: Streams,
    into: list[OplogCoverage],
    listed: Callable[[], set[str]],
    cut_now: Callable[[], dict[str, Timestamp]],
) -> Callable[[ArchiveWriter], None]:
    """After the last collection: the changes made while the dump ran, as `oplog.bson`.

    The backup is consistent at the cut: the dump plus these entries, replayed, is the
    data as it was then (mongodump --oplog). A collection dropped or renamed while the
    dump ran (its stream ended, or it is no longer listed) is not in the backup: its
    capture ends there (`OplogCoverage.ended`), and a restore leaves it out.
    """

    def finish(writer: ArchiveWriter) -> None:
        cuts = cut_now()
        ended: list[str] = []
        entries, tokens, _ = drain(streams, cuts, ended)
        gone = sorted(tokens.keys() - listed())
        if gone:
            ended += gone
            tokens = {ns: t for ns, t in tokens.items() if ns not in gone}
            entries = [e for e in entries if describe(e.raw)[1] not in gone]
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
            size = 0
            for raw in raws(entries):
                size += spool.write(raw)
            spool.seek(0)
            writer.add_file(OPLOG_FILE, spool, size)
        into.append(coverage(entries, tokens, cuts).model_copy(update={"ended": sorted(ended)}))

    return finish


@cloud_task(timeout_seconds=6 * 3600, retries=2, task_run_name="mongo-verify-{manifest.backup_id}")
def mongo_verify_backup(environment: str, manifest: Manifest) -> Manifest:
    """Download the archive again, check its sha256, decrypt it and walk every member.

    Returns the manifest marked verified, or unverified with the reason; a wrong key or a
    mismatch is a result here, not a retry. Idempotent: read-only.
    """
    return verify_archived(environment, manifest, "mongo-verify")


class RestoredCollection(BaseModel):
    source: str
    target: str
    documents: int
    expected: int
    indexes: int


class ArchiveRestored(BaseModel):
    collections: list[RestoredCollection]
    oplog: Replayed | None = Field(None, description="the archive's oplog.bson, replayed")
    slices: Replayed | None = Field(None, description="the change slices, replayed")


@cloud_task(timeout_seconds=6 * 3600, retries=0, task_run_name="mongo-restore-{manifest.backup_id}")
def mongo_restore_from_gcs(
    environment: str,
    manifest: Manifest,
    targets: dict[str, str],
    slices: list[SliceManifest] | None = None,
    point_in_time: datetime | None = None,
) -> ArchiveRestored:
    """Restore a verified archive into the target databases (source db → target db).

    The caller verifies the archive (and the slices) first (``mongo_verify_backup``), so
    a wrong key or a corrupt object fails before any write. Each target collection is
    dropped before it is filled, as ``mongorestore --drop`` does, by
    ``mongodb.restore_insertion_workers`` unordered batches at once; a refused document
    fails the restore, named. Then the archive's `oplog.bson` (the changes made while the
    dump ran) is replayed, as ``mongorestore --oplogReplay`` does, and the ``slices``
    after it up to ``point_in_time`` (``--oplogLimit``). Secondary indexes come last: a
    unique index holds for the end state, not for every state a replay passes through.
    Not retried: a partial restore is dropped and re-run whole by the caller.
    """
    key, _ = encryption_key(environment)
    workers = runtime.topology(environment).mongodb.restore_insertion_workers
    blob = archive_blob(environment, manifest)
    expected = {f"{c.database}/{c.name}": c.documents for c in manifest.collections}
    restored: list[RestoredCollection] = []
    metadata: dict[tuple[str, str], bytes] = {}
    resource = manifest.archive.uri if manifest.archive else "?"
    replayed: Replayed | None = None
    replayed_slices: Replayed | None = None
    with (
        calling("mongo-restore", resource),
        client(environment) as mongo,
        blob.open("rb") as src,
        tempfile.SpooledTemporaryFile(max_size=8 << 20) as oplog,
    ):
        has_oplog = False
        left_out = frozenset(manifest.oplog.ended if manifest.oplog else ())
        for member in read_archive(src, key):
            if member.path == OPLOG_FILE:
                # The last member; replayed once every collection is in.
                has_oplog = True
                while piece := member.stream.read(1 << 20):
                    oplog.write(piece)
                continue
            database, collection, kind = split_path(member.path)
            if database not in targets or f"{database}.{collection}" in left_out:
                continue
            target = mongo[targets[database]]
            if kind == "metadata":
                # mongodump writes the metadata first; indexes go in at the very end.
                metadata[(database, collection)] = member.stream.read()
                continue
            target.drop_collection(collection)
            target.create_collection(collection)
            docs = iter_bson(member.stream)
            source = f"{database}.{collection}"
            count = insert_raw(target, collection, docs, workers, source=source)
            restored.append(
                RestoredCollection(
                    source=source,
                    target=f"{target.name}.{collection}",
                    documents=count,
                    expected=expected.get(f"{database}/{collection}", -1),
                    indexes=0,
                )
            )
        samples = {f"{c.database}.{c.name}": set(c.samples) for c in manifest.collections}
        if has_oplog:
            oplog.seek(0)
            replayed = replay(mongo, targets, iter_bson(oplog), samples=samples, leave_out=left_out)
        if point_in_time is not None:
            replayed_slices = Replayed()
            for item in slices or []:
                entries = before(slice_entries(environment, item, key), point_in_time)
                replay(mongo, targets, entries, replayed_slices, leave_out=left_out)
        for done in restored:
            database, collection = done.source.split(".", 1)
            meta = parse_metadata(metadata.get((database, collection), b"{}"))
            indexes = list(meta.get("indexes", []))
            done.indexes = create_indexes(mongo[targets[database]], collection, indexes)
    return ArchiveRestored(collections=restored, oplog=replayed, slices=replayed_slices)
