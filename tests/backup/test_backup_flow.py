"""backup and restore through the real Prefect server, worker, GCS emulator and MongoDB."""

from __future__ import annotations

import json

from lab.prefect_api import PrefectApi
from lifeboat.manifest import ARCHIVE
from tests.backup.backup_checks import (
    BACKUPS,
    TOPOLOGY,
    bucket_objects,
    documents_by_id,
    mongo,
    params,
    read_manifest,
)
from tests.flows.lab_checks import read_object, sql_requests
from tests.labharness import Lab

SQL = TOPOLOGY.cloud_sql.primary


def run_backup(api: PrefectApi, **extra: object) -> dict[str, object]:
    run = api.launch("backup/lab", params(**extra))
    return api.wait(run["id"], timeout=300)


def manifests(lab: Lab, source: str) -> list[str]:
    return [n for n in bucket_objects(lab, f"{source}/") if n.endswith("manifest.json")]


def test_backup_then_restore_round_trips_every_document(fresh_lab: Lab, api: PrefectApi) -> None:
    since = fresh_lab.last_seq()
    final = run_backup(api)
    assert final["state"]["type"] == "COMPLETED", final["state"]

    # MongoDB: one verified archive whose manifest matches the source, file by file.
    [mongo_manifest] = manifests(fresh_lab, "mongodb")
    manifest = read_manifest(fresh_lab, mongo_manifest)
    assert manifest.status == "verified" and manifest.verified_at is not None
    source = documents_by_id(fresh_lab, "varai")
    assert {c.name: c.documents for c in manifest.collections} == {
        name: len(docs) for name, docs in source.items()
    }
    assert manifest.archive is not None
    assert manifest.archive.uri.endswith(ARCHIVE)
    assert {f"varai/{n}.bson" for n in source} | {f"varai/{n}.metadata.json" for n in source} | {
        "oplog.bson"  # the changes made while the dump ran: none here
    } == set(manifest.files)
    assert manifest.oplog is not None and manifest.oplog.entries == 0
    assert manifest.key_id and all(len(c.samples) > 0 for c in manifest.collections)

    # Cloud SQL: a real backup run and an export, both named in the manifest.
    [sql_manifest_name] = manifests(fresh_lab, "cloudsql")
    sql_manifest = read_manifest(fresh_lab, sql_manifest_name)
    assert sql_manifest.status == "verified"
    assert sql_manifest.cloudsql is not None
    assert sql_manifest.cloudsql.backup_run_status == "SUCCESSFUL"
    assert sql_manifest.cloudsql.integrity == {
        "users": 500,
        "conversations": 2000,
        "recommendations": 3000,
    }
    export = sql_manifest.cloudsql.exports["varai_prod"]
    dump = read_object(fresh_lab, BACKUPS, export.uri.removeprefix(f"gs://{BACKUPS}/"))
    assert b"CREATE TABLE" in dump and len(dump) == export.bytes
    sql_calls = sql_requests(fresh_lab, since)
    assert sql_calls.count("backupRuns.insert") == 1  # one backup run
    assert sql_calls.count("instances.export") == 1

    # The run's evidence: a record, a table of contents, no key anywhere.
    record = json.loads(
        read_object(
            fresh_lab, TOPOLOGY.backups.records_bucket, f"backup/bk-{manifest.backup_id}.json"
        )
    )
    assert record["outcome"] == "completed"
    assert record["after"]["backups"]["mongodb"]["status"] == "verified"
    assert fresh_lab.webhooks() == []  # a routine success notifies nobody
    keys = {a["key"] for a in api.artifacts(final["id"])}
    assert "backup-lab-contents" in keys

    # Restore into a scratch database and compare every document, byte for byte.
    restored = api.wait(
        api.launch("restore/lab", params(target_database="roundtrip"))["id"], timeout=300
    )
    assert restored["state"]["type"] == "COMPLETED", restored["state"]
    try:
        assert documents_by_id(fresh_lab, "roundtrip") == source
        with mongo(fresh_lab) as client:
            indexes = {ix["name"] for ix in client.roundtrip.products.list_indexes()}
        assert len(indexes) >= 2  # _id plus the unique sku index, re-created
    finally:
        with mongo(fresh_lab) as client:
            client.drop_database("roundtrip")


def test_backup_schedules_are_in_the_server(lab: Lab, api: PrefectApi) -> None:
    crons = {}
    for name in ("backup/lab", "backup-staleness/lab"):
        deployment = api.http.get(f"/deployments/name/{name}").json()
        crons[name] = [s["schedule"]["cron"] for s in deployment["schedules"]]
        assert all(s["schedule"]["timezone"] == "UTC" for s in deployment["schedules"])
    assert crons == {"backup/lab": ["0 */6 * * *"], "backup-staleness/lab": ["0 * * * *"]}


def test_a_gcs_503_during_upload_is_retried_without_a_corrupt_object(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # The archive's resumable upload (PUT to the session URI) fails once with a 503.
    fresh_lab.fault(api="storage", method="PUT", path="upload", status=503, count=1)
    since = fresh_lab.last_seq()
    final = run_backup(api, sources=["mongodb"])
    assert final["state"]["type"] == "COMPLETED", final["state"]
    puts = [e["status"] for e in fresh_lab.requests(api="storage", method="PUT", since=since)]
    assert 503 in puts and puts[-1] < 300
    [name] = manifests(fresh_lab, "mongodb")
    manifest = read_manifest(fresh_lab, name)
    assert manifest.status == "verified"  # read back, decrypted and walked after the retry
