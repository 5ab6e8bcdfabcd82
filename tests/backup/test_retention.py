"""Retention in the backup flow: exactly the expired objects go (the decision itself is
unit-tested in tests/unit/test_retention_decisions.py)."""

from __future__ import annotations

import json
from datetime import timedelta

from lab.prefect_api import PrefectApi
from tests.backup.backup_checks import (
    bucket_objects,
    params,
    read_secret_block,
    save_secret_block,
    write_orphan,
    write_synthetic,
)
from tests.flows.lab_checks import TOPOLOGY, read_object
from tests.labharness import Lab


def test_the_backup_flow_deletes_exactly_the_expired_objects(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    old = write_synthetic(fresh_lab, "mongodb", timedelta(days=45))
    old_failed = write_synthetic(fresh_lab, "mongodb", timedelta(days=35), status="failed")
    recent = write_synthetic(fresh_lab, "mongodb", timedelta(days=5))
    cross_region = write_synthetic(fresh_lab, "cloudsql", timedelta(days=45))  # < 90 days
    stale_orphan = write_orphan(fresh_lab, "mongodb", timedelta(days=3))  # a run killed
    young_orphan = write_orphan(fresh_lab, "mongodb", timedelta(hours=2))  # maybe writing
    foreign = "mongodb/2026/11/notes/readme.txt"  # not a backup folder: not ours to delete
    fresh_lab.clients().storage(TOPOLOGY.regions.primary.project).bucket(
        TOPOLOGY.backups.bucket
    ).blob(foreign).upload_from_string(b"kept by a person")
    # Change slices go with their base backup, and only with it.
    slices = (
        fresh_lab.clients()
        .storage(TOPOLOGY.regions.primary.project)
        .bucket(TOPOLOGY.backups.bucket)
    )
    old_slice = f"mongodb-oplog/{old.backup_id}/000001/manifest.json"
    recent_slice = f"mongodb-oplog/{recent.backup_id}/000001/manifest.json"
    for name in (old_slice, recent_slice):
        slices.blob(name).upload_from_string(b"{}")

    final = api.wait(api.launch("backup/lab", params())["id"], timeout=300)
    assert final["state"]["type"] == "COMPLETED", final["state"]

    remaining = bucket_objects(fresh_lab, "")
    assert not [n for n in remaining if n.startswith((old.prefix, old_failed.prefix, stale_orphan))]
    assert young_orphan + "archive.tar.gz.enc" in remaining
    assert foreign in remaining
    assert recent.manifest_name in remaining
    assert old_slice not in remaining and recent_slice in remaining
    assert cross_region.manifest_name in remaining
    # The run says what it deleted, and why, in its record.
    [record_name] = [
        b.name
        for b in fresh_lab.clients()
        .storage("ml-datadriven-recos")
        .bucket("varai-dr-records")
        .list_blobs(prefix="backup/")
    ]
    record = json.loads(read_object(fresh_lab, "varai-dr-records", record_name))
    deleted = {
        r["what"]: r["reason"] for r in record["after"]["retention"] if r["action"] == "delete"
    }
    stale_id, young_id = stale_orphan.split("/")[3], young_orphan.split("/")[3]
    assert set(deleted) == {
        f"mongodb {old.backup_id}",
        f"mongodb {old_failed.backup_id}",
        f"mongodb {stale_id}",
    }
    assert "days old > 30 days" in deleted[f"mongodb {old.backup_id}"]
    orphan_reason = "no manifest (an interrupted backup), 3.0 days old, past the 1-day grace"
    assert deleted[f"mongodb {stale_id}"] == orphan_reason
    kept = {r["what"]: r["reason"] for r in record["after"]["retention"] if r["action"] == "keep"}
    assert kept[f"mongodb {young_id}"].startswith("no manifest yet")


def test_a_failed_backup_deletes_nothing(fresh_lab: Lab, api: PrefectApi) -> None:
    old = write_synthetic(fresh_lab, "mongodb", timedelta(days=45))
    # The MongoDB server refuses the listing: the backup fails, its manifest says so.
    _break_mongo_secret()
    try:
        final = api.wait(api.launch("backup/lab", params(sources=["mongodb"]))["id"], timeout=300)
    finally:
        _restore_mongo_secret()
    assert final["state"]["type"] == "FAILED"
    assert old.manifest_name in bucket_objects(fresh_lab, "mongodb/")
    failed = [n for n in bucket_objects(fresh_lab, "mongodb/") if n.endswith("manifest.json")]
    assert len(failed) == 2  # the old one, and the failed run's own manifest
    channels = sorted(w["name"] for w in fresh_lab.webhooks())
    assert channels == ["email", "slack"]  # a failure does notify


_saved: dict[str, str] = {}


def _break_mongo_secret() -> None:
    _saved["uri"] = read_secret_block("lifeboat-mongodb-uri")
    # A closed port: server selection fails fast and cleanly.
    save_secret_block("lifeboat-mongodb-uri", "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500")


def _restore_mongo_secret() -> None:
    save_secret_block("lifeboat-mongodb-uri", _saved["uri"])
