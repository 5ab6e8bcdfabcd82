"""Cross-region copies (issue 17 §3) through the real Prefect server, worker and lab.

Every verified backup is rewritten server-side into each copy bucket of the topology
(us-east1 and europe-west1 in the lab), checked by its checksums and recorded in the
manifest; retention runs per copy; the drill restores from the europe-west1 copy.
"""

from __future__ import annotations

import json
import math
import os
from datetime import timedelta
from typing import Any

from bson.binary import Binary

from lab.prefect_api import PrefectApi
from lifeboat.manifest import Manifest
from tests.backup.backup_checks import (
    BACKUPS,
    TOPOLOGY,
    bucket_objects,
    mongo,
    params,
    read_manifest,
    write_synthetic,
)
from tests.flows.lab_checks import read_object, sql_method
from tests.labharness import Lab

MiB = 1024 * 1024
COPIES = TOPOLOGY.backups.copies
EUROPE = next(c for c in COPIES if c.location == "europe-west1")
EAST = next(c for c in COPIES if c.location == "us-east1")


def run(api: PrefectApi, flow: str = "backup/lab", **extra: object) -> dict[str, Any]:
    return api.wait(api.launch(flow, params(**extra))["id"], timeout=400)


def newest_manifest(lab: Lab, source: str) -> Manifest:
    names = [n for n in bucket_objects(lab, f"{source}/") if n.endswith("manifest.json")]
    return read_manifest(lab, sorted(names)[-1])


def objects_in(lab: Lab, bucket: str, prefix: str = "") -> dict[str, Any]:
    client = lab.clients().storage(TOPOLOGY.regions.primary.project)
    return {b.name: b for b in client.bucket(bucket).list_blobs(prefix=prefix)}


def rewrites(lab: Lab, since: int) -> list[dict[str, Any]]:
    return [
        e
        for e in lab.requests(api="storage", method="POST", since=since)
        if "/rewriteTo/" in e["path"]
    ]


def test_a_backup_copies_every_object_to_each_region_by_rewrite_and_checks_it(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # Random bytes do not compress: the archive passes 3 MiB, and a rewrite across
    # locations moves 1 MiB a call (the lab's step), so it takes several calls.
    with mongo(fresh_lab) as client:
        client.varai.blobs.insert_many([{"n": i, "b": Binary(os.urandom(MiB))} for i in range(3)])
    try:
        since = fresh_lab.last_seq()
        final = run(api)
    finally:
        with mongo(fresh_lab) as client:
            client.varai.drop_collection("blobs")
    assert final["state"]["type"] == "COMPLETED", final["state"]

    calls = rewrites(fresh_lab, since)
    for source in ("mongodb", "cloudsql"):
        manifest = newest_manifest(fresh_lab, source)
        assert manifest.verified
        names = [o.uri.removeprefix(f"gs://{BACKUPS}/") for o in manifest.payload()]
        originals = objects_in(fresh_lab, BACKUPS, manifest.prefix)
        for copy in COPIES:
            recorded = manifest.copies[copy.bucket]
            assert recorded.verified and recorded.location == copy.location
            there = objects_in(fresh_lab, copy.bucket, manifest.prefix)
            # Every object and the manifest, each matching its source's checksums.
            assert set(there) == {*names, manifest.manifest_name}
            for name in names:
                got, want = there[name], originals[name]
                assert (got.size, got.crc32c, got.md5_hash) == (
                    want.size,
                    want.crc32c,
                    want.md5_hash,
                )
                assert recorded.objects[name].generation == got.generation
                # One rewrite per object and destination: one call per MiB (the lab's step).
                mine = [c for c in calls if c["path"].endswith(f"/b/{copy.bucket}/o/{name}")]
                assert len(mine) == max(1, math.ceil(int(want.size) / MiB)), (name, len(mine))
    archive = newest_manifest(fresh_lab, "mongodb").archive
    assert archive is not None and archive.bytes > 3 * MiB  # so it took several calls
    # Server-side only: nothing was uploaded into a copy bucket through the worker.
    uploads = fresh_lab.requests(api="storage", since=since)
    copy_buckets = {c.bucket for c in COPIES}
    assert not [
        e
        for e in uploads
        if e["path"].startswith("/upload/") and any(f"/b/{b}/" in e["path"] for b in copy_buckets)
    ]
    record = json.loads(
        read_object(
            fresh_lab, TOPOLOGY.backups.records_bucket, f"backup/bk-{archive_id(fresh_lab)}.json"
        )
    )
    assert record["after"]["backups"]["mongodb"]["copies"] == {
        "us-east1": "verified",
        "europe-west1": "verified",
    }


def archive_id(lab: Lab) -> str:
    return newest_manifest(lab, "mongodb").backup_id


def test_a_503_on_a_rewrite_is_retried_and_makes_one_copy(fresh_lab: Lab, api: PrefectApi) -> None:
    fresh_lab.fault(
        api="storage", method="POST", path="/rewriteTo/b/" + EUROPE.bucket, status=503, count=1
    )
    since = fresh_lab.last_seq()
    final = run(api, sources=["mongodb"])
    assert final["state"]["type"] == "COMPLETED", final["state"]
    manifest = newest_manifest(fresh_lab, "mongodb")
    assert manifest.archive is not None
    name = manifest.archive.uri.removeprefix(f"gs://{BACKUPS}/")
    tried = [
        (e["status"], e["injected"])
        for e in rewrites(fresh_lab, since)
        if e["path"].endswith(f"/b/{EUROPE.bucket}/o/{name}")
    ]
    # The injected 503, then the same call again (the library retries a conditional
    # rewrite), then any further steps of a rewrite in several calls: no other failure.
    assert tried[:2] == [(503, True), (200, False)] and all(t == (200, False) for t in tried[1:])
    there = objects_in(fresh_lab, EUROPE.bucket, manifest.prefix)
    assert sorted(there) == sorted([name, manifest.manifest_name])  # one copy, no stray object
    assert there[name].crc32c == objects_in(fresh_lab, BACKUPS, name)[name].crc32c
    assert manifest.copies[EUROPE.bucket].verified


def test_a_corrupted_copy_is_detected_reported_and_not_counted(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.storage_rewrites(corrupt={EUROPE.bucket: 1})  # the next copy there lands damaged
    final = run(api, sources=["mongodb"])
    assert final["state"]["type"] == "FAILED"
    assert "copy to europe-west1" in final["state"]["message"]
    assert "crc32c" in final["state"]["message"]

    manifest = newest_manifest(fresh_lab, "mongodb")
    assert manifest.verified  # the backup itself is fine
    bad, good = manifest.copies[EUROPE.bucket], manifest.copies[EAST.bucket]
    assert bad.status == "failed" and "does not match its source: crc32c" in str(bad.error)
    assert good.verified
    # Nothing of the bad copy is left to restore from, and no manifest vouches for it.
    assert objects_in(fresh_lab, EUROPE.bucket, manifest.prefix) == {}
    assert manifest.manifest_name in objects_in(fresh_lab, EAST.bucket, manifest.prefix)
    assert sorted(w["name"] for w in fresh_lab.webhooks()) == ["email", "slack"]

    # Staleness reports europe-west1 as having no verified copy; a restore from it refuses.
    stale = run(api, "backup-staleness/lab", sources=["mongodb"])
    assert stale["state"]["type"] == "FAILED"
    assert "copy in europe-west1 missing" in stale["state"]["message"]
    refused = run(api, "restore/lab", source_bucket="europe-west1")
    assert refused["state"]["type"] == "FAILED"
    assert f"no verified MongoDB backup in {EUROPE.bucket}" in refused["state"]["message"]


def test_retention_per_copy_keeps_each_regions_newest_verified_copy(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Backups 120 and 100 days old, copied to both regions; today's copy to europe-west1
    fails. In us-east1 today's copy is the newest verified one, so both old copies go
    (past 90 days). In europe-west1 the newest copy failed: as in the backups bucket,
    nothing is deleted there (the 120-day one would go if the failure were not seen: the
    100-day one is that bucket's newest verified copy)."""
    old = write_synthetic(fresh_lab, "mongodb", timedelta(days=120))
    older_kept = write_synthetic(fresh_lab, "mongodb", timedelta(days=100))
    fresh_lab.storage_rewrites(corrupt={EUROPE.bucket: 1})
    final = run(api, sources=["mongodb"])
    assert final["state"]["type"] == "FAILED"  # the failed copy fails the run...
    assert old.manifest_name not in bucket_objects(fresh_lab, "mongodb/")  # ...not retention
    assert objects_in(fresh_lab, EAST.bucket, old.prefix) == {}
    assert objects_in(fresh_lab, EAST.bucket, older_kept.prefix) == {}
    assert old.manifest_name in objects_in(fresh_lab, EUROPE.bucket, old.prefix)
    assert older_kept.manifest_name in objects_in(fresh_lab, EUROPE.bucket, older_kept.prefix)
    bid = newest_manifest(fresh_lab, "mongodb").backup_id
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"backup/bk-{bid}.json")
    )
    decisions = {r["what"]: (r["action"], r["reason"]) for r in record["after"]["retention"]}
    assert decisions[f"mongodb {old.backup_id} in us-east1"][0] == "delete"
    assert "> 90 days" in decisions[f"mongodb {old.backup_id} in us-east1"][1]
    for kept in (old, older_kept):
        assert decisions[f"mongodb {kept.backup_id} in europe-west1"] == (
            "keep",
            f"newest backup {bid} is copy failed: no deletion",
        )


def test_a_restore_from_an_unknown_bucket_is_refused_naming_the_field(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # The lab's reset leaves MongoDB as it is: scratch databases an earlier test's restore
    # made are there already; this restore must add none.
    with mongo(fresh_lab) as client:
        before = set(client.list_database_names())
    since = fresh_lab.last_seq()
    final = run(api, "restore/lab", source_bucket="asia-east1")
    assert final["state"]["type"] == "FAILED"
    assert "source_bucket: 'asia-east1' is not a backup bucket" in final["state"]["message"]
    with mongo(fresh_lab) as client:
        assert set(client.list_database_names()) == before
    # Refused before any call to Cloud Storage: not even a listing.
    assert not [e for e in fresh_lab.requests(api="storage", since=since) if "/o" in e["path"]]


def test_the_drill_restores_from_the_europe_west1_copy(fresh_lab: Lab, api: PrefectApi) -> None:
    deployment = api.http.get("/deployments/name/recovery-drill/lab").json()
    [schedule] = deployment["schedules"]
    assert schedule["parameters"] == {"source_bucket": "europe-west1"}  # the monthly drill's

    assert run(api)["state"]["type"] == "COMPLETED"
    assert run(api, "config-backup/lab", kinds=["config"])["state"]["type"] == "COMPLETED"
    manifest = newest_manifest(fresh_lab, "mongodb")
    since = fresh_lab.last_seq()
    final = run(api, "recovery-drill/lab", source_bucket="europe-west1", application=False)
    assert final["state"]["type"] == "COMPLETED", final["state"]
    # The archive read (verified, then restored) is the copy in europe-west1, never the
    # backups bucket's.
    reads = [
        e["path"]
        for e in fresh_lab.requests(api="storage", method="GET", since=since)
        if e["path"].startswith("/download/") and e["path"].endswith("archive.tar.gz.enc")
    ]
    assert reads and all(f"/b/{EUROPE.bucket}/" in p for p in reads), reads
    [table] = [a for a in api.artifacts(final["id"]) if a["key"] == "recovery-drill-lab"]
    data = table["data"]
    rows = {r["data set"]: r for r in (json.loads(data) if isinstance(data, str) else data)}
    assert rows["mongodb"]["backup used"] == f"{manifest.backup_id} (copy in europe-west1)"
    assert rows["mongodb"]["verdict"] == "pass" and rows["cloudsql"]["verdict"] == "pass"
    assert "(copy in europe-west1)" in rows["cloudsql"]["backup used"]
    # Cloud SQL from the copy is its exports imported, not the source's backup run.
    sql_calls = [
        sql_method(e["method"], e["path"]) for e in fresh_lab.requests(api="sql", since=since)
    ]
    assert "instances.restoreBackup" not in sql_calls
    assert sql_calls.count("instances.import") == len(TOPOLOGY.cloud_sql.databases)
    assert "its exports" in rows["cloudsql"]["backup used"]
    # The configuration's record set, from its archive's copy there.
    assert rows["config"]["verdict"] == "pass", rows["config"]
    assert rows["config"]["backup used"].endswith("(copy in europe-west1)")
