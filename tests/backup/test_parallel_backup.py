"""Issue 19: collections dumped in parallel through the overlapped pipeline, restored by
parallel unordered insertion workers, with faults in the middle of either.

Runs the backup and restore deployments through the real Prefect worker, the lab's GCS
and MongoDB; asserts on the lab's request log, the bucket and the restored documents.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import bson
import pytest
import yaml
from bson.binary import Binary

from lab.prefect_api import PrefectApi
from lifeboat.archive import (
    ArchiveWriter,
    collection_metadata,
    key_id,
    parse_key,
    spool_collection,
)
from lifeboat.manifest import (
    ARCHIVE,
    CollectionEntry,
    FileDigest,
    Manifest,
    StoredObject,
    backup_prefix,
)
from lifeboat.manifest import backup_id as make_backup_id
from lifeboat.topology import ENVIRONMENTS_DIR_ENV
from tests.backup.backup_checks import (
    BACKUPS,
    TOPOLOGY,
    bucket_objects,
    documents_by_id,
    mongo,
    params,
    read_manifest,
    read_secret_block,
)
from tests.labharness import Lab
from tests.polling import wait_for

# Extra collections beside the seed's three, more than the four readers, of
# different sizes (one empty, one of large documents), so that several are read at once
# and they finish in an order that is not the listing order.
EXTRA = {"alpha": 3000, "bravo": 0, "charlie": 700, "delta": 40, "echo": 1500}
BULK = "bulk"  # incompressible documents: an archive of several 8 MiB upload chunks
BULK_DOCS, BULK_DOC_BYTES = 112, 256 << 10  # 28 MiB: 4 upload chunks


READERS = 4  # production's default (mongodump's); the lab's environment reads one at a time


@pytest.fixture(autouse=True)
def four_readers(lab: Lab) -> Iterator[None]:
    """The lab's copy of its environment, with four collections read at once: each flow
    run is a new process, which reads the copy as it starts."""
    path = Path(os.environ[ENVIRONMENTS_DIR_ENV]) / "lab.yaml"
    original = path.read_text()
    topology = yaml.safe_load(original)
    topology["mongodb"]["dump_parallel_collections"] = READERS
    path.write_text(yaml.safe_dump(topology))
    try:
        yield
    finally:
        path.write_text(original)


@pytest.fixture
def extra_collections(fresh_lab: Lab) -> Iterator[None]:
    rng = random.Random(19)
    with mongo(fresh_lab) as client:
        for name, count in EXTRA.items():
            client.varai.create_collection(name)
            if count:
                client.varai[name].insert_many(
                    [
                        {"_id": n, "name": f"{name}-{n}", "blob": Binary(rng.randbytes(n % 900))}
                        for n in range(count)
                    ]
                )
        client.varai[BULK].insert_many(
            [{"_id": f"b{n}", "noise": Binary(rng.randbytes(BULK_DOC_BYTES))} for n in range(40)]
        )
    try:
        yield
    finally:
        with mongo(fresh_lab) as client:
            for name in [*EXTRA, BULK]:
                client.varai.drop_collection(name)


def _fill_bulk(lab: Lab) -> None:
    rng = random.Random(20)
    with mongo(lab) as client:
        client.varai[BULK].insert_many(
            [
                {"_id": f"b{n}", "noise": Binary(rng.randbytes(BULK_DOC_BYTES))}
                for n in range(40, BULK_DOCS)
            ]
        )


def run(api: PrefectApi, deployment: str, **extra: object) -> dict[str, object]:
    return api.wait(api.launch(deployment, params(**extra))["id"], timeout=300)


def mongodb_manifests(lab: Lab) -> list[str]:
    return [n for n in bucket_objects(lab, "mongodb/") if n.endswith("manifest.json")]


def test_parallel_dump_round_trips_every_collection_byte_for_byte(
    fresh_lab: Lab, api: PrefectApi, extra_collections: None
) -> None:
    source = documents_by_id(fresh_lab, "varai")
    with mongo(fresh_lab) as client:
        listed = [c["name"] for c in client.varai.list_collections(filter={"type": "collection"})]
    final = run(api, "backup/lab", sources=["mongodb"])
    assert final["state"]["type"] == "COMPLETED", final["state"]
    # The run's logs reach the API after its end state: waited for, not read once.
    wait_for(
        lambda: f"collections ({READERS} read at once)" in " ".join(api.logs(final["id"])),
        timeout=30,
        what=f"the backup's log line saying {READERS} collections were read at once",
    )
    [name] = mongodb_manifests(fresh_lab)
    manifest = read_manifest(fresh_lab, name)
    assert manifest.status == "verified"
    # The manifest lists collections as the server listed them, whatever order the
    # parallel readers finished in; every count matches the source.
    assert [c.name for c in manifest.collections] == listed
    assert {c.name: c.documents for c in manifest.collections} == {
        n: len(d) for n, d in source.items()
    }
    assert {f"varai/{n}.bson" for n in source} | {f"varai/{n}.metadata.json" for n in source} | {
        "oplog.bson"  # the changes made while the dump ran
    } == set(manifest.files)

    restored = run(api, "restore/lab", target_database="parallel_rt")
    try:
        assert restored["state"]["type"] == "COMPLETED", restored["state"]
        assert documents_by_id(fresh_lab, "parallel_rt") == source
    finally:
        with mongo(fresh_lab) as client:
            client.drop_database("parallel_rt")


def test_a_503_in_the_middle_of_the_upload_is_resumed_into_a_whole_archive(
    fresh_lab: Lab, api: PrefectApi, extra_collections: None
) -> None:
    _fill_bulk(fresh_lab)
    source = documents_by_id(fresh_lab, "varai")
    # The first chunk's PUT goes through (the latency rule, 10 ms, consumes it); the
    # second chunk's PUT, in the middle of the upload, answers 503 once.
    fresh_lab.fault(api="storage", method="PUT", path="upload", latency_s=0.01, count=1)
    fresh_lab.fault(api="storage", method="PUT", path="upload", status=503, count=1)
    since = fresh_lab.last_seq()
    final = run(api, "backup/lab", sources=["mongodb"])
    assert final["state"]["type"] == "COMPLETED", final["state"]
    puts = [e["status"] for e in fresh_lab.requests(api="storage", method="PUT", since=since)]
    assert puts[0] == 308, puts  # a first chunk was accepted before the fault
    assert 503 in puts[1:] and puts[-1] in (200, 201), puts
    assert puts.count(308) >= 2  # the upload went on after the fault: it was in the middle
    [name] = mongodb_manifests(fresh_lab)
    manifest = read_manifest(fresh_lab, name)
    assert manifest.status == "verified"
    assert manifest.archive is not None and manifest.archive.bytes > 3 * (
        8 << 20
    )  # 4 chunks, the fault on the 2nd

    restored = run(api, "restore/lab", target_database="after_503")
    try:
        assert restored["state"]["type"] == "COMPLETED", restored["state"]
        assert documents_by_id(fresh_lab, "after_503") == source
    finally:
        with mongo(fresh_lab) as client:
            client.drop_database("after_503")


def test_a_refused_chunk_in_the_middle_fails_the_backup_without_hanging_or_an_object(
    fresh_lab: Lab, api: PrefectApi, extra_collections: None
) -> None:
    """The upload stage dies while the readers and the packer still have work: the
    backup must fail, promptly, cancel its session and leave no archive behind."""
    _fill_bulk(fresh_lab)
    fresh_lab.fault(api="storage", method="PUT", path="upload", latency_s=0.01, count=1)
    fresh_lab.fault(api="storage", method="PUT", path="upload", status=400, count=1)
    since = fresh_lab.last_seq()
    started = time.monotonic()
    final = run(api, "backup/lab", sources=["mongodb"])
    assert time.monotonic() - started < 120
    assert final["state"]["type"] == "FAILED", final["state"]
    assert "400" in final["state"]["message"] or "not verified" in final["state"]["message"]
    puts = [e["status"] for e in fresh_lab.requests(api="storage", method="PUT", since=since)]
    assert puts[:2] == [308, 400], puts
    # A failed manifest is written; the archive never became an object.
    [name] = mongodb_manifests(fresh_lab)
    assert read_manifest(fresh_lab, name).status == "failed"
    assert not [n for n in bucket_objects(fresh_lab, "mongodb/") if n.endswith(ARCHIVE)]
    deletes = fresh_lab.requests(api="storage", method="DELETE", since=since)
    assert any("upload" in e["path"] for e in deletes), deletes  # the session was cancelled


def _duplicated_backup(lab: Lab, copies: dict[int, int]) -> tuple[str, int]:
    """A backup whose varai/visits.bson repeats documents: as a natural-order cursor can
    return a document twice when it moves during the dump. Written with the lab's key
    and a manifest that matches it, so it verifies and the restore gets to insert it.

    ``copies`` maps position → the earlier position it repeats. Returns (backup id, count).
    """
    key = parse_key(read_secret_block(TOPOLOGY.backups.encryption_key_secret))
    docs = [bson.encode({"_id": n, "page": f"/frames/{n % 97}"}) for n in range(2500)]
    indexes = [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]
    for position in sorted(copies):
        docs.insert(position, docs[copies[position]])
    bid = make_backup_id(datetime.now(UTC))
    name = backup_prefix("mongodb", bid) + ARCHIVE
    bucket = lab.clients().storage(TOPOLOGY.regions.primary.project).bucket(BACKUPS)
    with (
        bucket.blob(name, chunk_size=8 << 20).open("wb") as sink,
        spool_collection(docs) as spooled,
        ArchiveWriter(sink, key, key_id=key_id(key), compresslevel=1) as writer,
    ):
        writer.add_collection("varai", "visits", spooled, collection_metadata("visits", indexes))
    summary = writer.summary
    assert summary is not None
    blob = bucket.get_blob(name)
    assert blob is not None
    manifest = Manifest(
        source="mongodb",
        backup_id=bid,
        environment="lab",
        started_at=datetime.now(UTC),
        ended_at=datetime.now(UTC),
        status="verified",
        verified_at=datetime.now(UTC),
        tool="test",
        databases=["varai"],
        key_id=key_id(key),
        archive=StoredObject(
            uri=f"gs://{BACKUPS}/{name}",
            bytes=summary.object_bytes,
            sha256=summary.object_sha256,
            generation=blob.generation,
        ),
        files={p: FileDigest(bytes=f.size, sha256=f.sha256) for p, f in summary.files.items()},
        collections=[
            CollectionEntry(
                database="varai",
                name="visits",
                documents=len(docs),
                bytes=spooled.size,
                sha256=spooled.sha256,
            )
        ],
    )
    bucket.blob(manifest.manifest_name).upload_from_string(manifest.model_dump_json())
    return bid, len(docs)


def test_duplicate_keys_in_parallel_batches_are_each_reported_and_fail_the_restore(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # Two repeated documents in different batches of 1000, sent by different workers.
    bid, total = _duplicated_backup(fresh_lab, {5: 2, 1900: 1500})
    with mongo(fresh_lab) as client:
        before = set(client.list_database_names())
    final = run(api, "restore/lab", backup_id=bid, target_database="dupes")
    assert final["state"]["type"] == "FAILED", final["state"]
    message = final["state"]["message"]
    # Both refusals, each with its position in the dump, the count of what went in.
    refused = f"2 of {total} documents were refused, {total - 2} went in"
    assert f"varai.visits → dupes.visits: {refused}" in message, message
    assert "document 5:" in message and "document 1900:" in message, message
    assert "_id 2)" in message and "_id 1499)" in message, message
    assert "(code 11000)" in message
    with mongo(fresh_lab) as client:
        assert set(client.list_database_names()) == before  # the scratch database dropped
