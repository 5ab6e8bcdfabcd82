"""Cross-region copies, the pure parts (lifeboat/copies.py, Manifest.stored_in, the
topology's copy buckets): when a copy matches its source, which copy a region counts as
its newest verified one, and how a restore's ``source_bucket`` resolves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.restore import source_bucket_of
from lifeboat.copies import Checksums, mismatch, newest_verified_copy, region_copy
from lifeboat.independence import copy_bucket_problems
from lifeboat.manifest import (
    BackupCopy,
    CloudSqlBackup,
    CopiedObject,
    Manifest,
    StoredObject,
    backup_id,
)
from lifeboat.retention import Candidate, decide
from lifeboat.topology import Backups, load_topology
from tasks.errors import PermanentError

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
EUROPE = "varai-backups-europe-west1"
EAST = "varai-backups-us-east1"
SOURCE = Checksums(bytes=10, crc32c="AAAAAA==", md5_hash="md5-source")


@pytest.mark.parametrize(
    ("copy", "why"),
    [
        (Checksums(10, "AAAAAA==", "md5-source"), None),
        (Checksums(10, "AAAAAA==", None), None),  # a composite copy has no md5: crc32c decides
        (Checksums(9, "AAAAAA==", "md5-source"), "size 9 != source 10"),
        (Checksums(10, "BBBBBB==", "md5-source"), "crc32c BBBBBB== != source AAAAAA=="),
        (Checksums(10, "AAAAAA==", "md5-other"), "md5 md5-other != source md5-source"),
    ],
)
def test_a_copy_matches_only_with_the_sources_size_and_checksums(
    copy: Checksums, why: str | None
) -> None:
    assert mismatch(SOURCE, copy) == why


def test_a_source_without_a_crc32c_cannot_vouch_for_a_copy() -> None:
    assert "no crc32c" in str(mismatch(Checksums(10, None, "md5"), Checksums(10, None, "md5")))


def manifest(hours: float, copies: dict[str, str], status: str = "verified") -> Manifest:
    taken = NOW - timedelta(hours=hours)
    bid = backup_id(taken)
    prefix = f"mongodb/{taken:%Y}/{taken:%m}/{bid}/"
    return Manifest(
        source="mongodb",
        backup_id=bid,
        environment="lab",
        started_at=taken,
        status=status,  # type: ignore[arg-type]
        tool="test",
        archive=StoredObject(
            uri=f"gs://varai-backups/{prefix}archive.tar.gz.enc", bytes=10, sha256="s", generation=1
        ),
        copies={
            bucket: BackupCopy(
                bucket=bucket,
                location=bucket.removeprefix("varai-backups-"),
                status=state,  # type: ignore[arg-type]
                objects={
                    f"{prefix}archive.tar.gz.enc": CopiedObject(generation=77, bytes=10, crc32c="c")
                },
            )
            for bucket, state in copies.items()
        },
    )


def test_a_regions_newest_verified_copy_skips_failed_copies_and_unverified_backups() -> None:
    history = [
        manifest(1, {EUROPE: "failed", EAST: "verified"}),
        manifest(2, {EUROPE: "verified"}, status="unverified"),
        manifest(7, {EUROPE: "verified", EAST: "verified"}),
        manifest(13, {EUROPE: "verified"}),
    ]
    europe = newest_verified_copy(history, EUROPE)
    assert europe is not None and europe.backup_id == history[2].backup_id
    east = region_copy(history, EAST, "us-east1", NOW)
    assert (east.backup_id, east.age_hours) == (history[0].backup_id, 1.0)
    assert "no verified copy" in region_copy([], EAST, "us-east1", NOW).describe()


def test_a_manifest_read_from_a_copy_points_at_the_copys_objects() -> None:
    original = manifest(1, {EUROPE: "verified", EAST: "failed"})
    moved = original.stored_in(EUROPE)
    assert moved.archive is not None and original.archive is not None
    assert moved.archive.uri == original.archive.uri.replace("varai-backups/", f"{EUROPE}/")
    assert moved.archive.generation == 77 and moved.archive.sha256 == original.archive.sha256
    assert original.stored_in("varai-backups") is original
    with pytest.raises(ValueError, match="no verified copy"):
        original.stored_in(EAST)


def test_cloud_sql_exports_move_to_the_copy_too() -> None:
    original = manifest(1, {EUROPE: "verified"})
    prefix = original.archive.uri.rsplit("/", 1)[0] if original.archive else ""
    export = StoredObject(uri=f"{prefix}/varai_prod.sql", bytes=5, sha256="x", generation=3)
    name = export.uri.removeprefix("gs://varai-backups/")
    original.copies[EUROPE].objects[name] = CopiedObject(generation=88, bytes=5, crc32c="d")
    original.cloudsql = CloudSqlBackup(
        project="p", instance="i", databases=["varai_prod"], exports={"varai_prod": export}
    )
    moved = original.stored_in(EUROPE)
    assert moved.cloudsql is not None
    assert moved.cloudsql.exports["varai_prod"].uri == f"gs://{EUROPE}/{name}"
    assert moved.cloudsql.exports["varai_prod"].generation == 88
    assert original.cloudsql.exports["varai_prod"].generation == 3  # the original is untouched


def test_retention_per_copy_keeps_that_buckets_newest_verified_copy_whatever_its_age() -> None:
    """In one bucket the only copy is 120 days old: kept. In the other a newer one is there."""
    only_old = [Candidate("old", NOW - timedelta(days=120), True, "verified")]
    assert [d.action for d in decide(only_old, 90, NOW)] == ["keep"]
    with_new = [*only_old, Candidate("new", NOW - timedelta(hours=1), True, "verified")]
    assert {d.key: d.action for d in decide(with_new, 90, NOW)} == {"new": "keep", "old": "delete"}


def test_source_bucket_is_a_bucket_of_the_topology_or_a_copys_location() -> None:
    backups = load_topology("lab").backups
    assert backups.source_bucket(None) == "varai-backups"
    assert backups.source_bucket("varai-backups") == "varai-backups"
    assert backups.source_bucket(EUROPE) == EUROPE
    assert backups.source_bucket("europe-west1") == EUROPE
    assert backups.source_bucket("EUROPE-WEST1") == EUROPE
    assert backups.source_bucket("asia-east1") is None
    assert backups.source_bucket("varai-dr-records") is None  # records are not backups
    assert backups.backup_buckets == ["varai-backups", EAST, EUROPE]


def test_a_restore_to_a_point_in_time_reads_the_backups_bucket_only() -> None:
    point = NOW - timedelta(hours=1)
    assert source_bucket_of("lab", None, point) == "varai-backups"
    assert source_bucket_of("lab", "varai-backups", point) == "varai-backups"
    assert source_bucket_of("lab", "europe-west1") == EUROPE  # a backup id from a copy
    with pytest.raises(PermanentError, match=r"^source_bucket: 'europe-west1' is a cross-region"):
        source_bucket_of("lab", "europe-west1", point)


def test_topologies_without_copies_keep_working_and_a_bucket_named_twice_is_refused() -> None:
    plain = Backups(bucket="varai-backups", records_bucket="varai-dr-records")
    assert plain.copies == [] and plain.backup_buckets == ["varai-backups"]
    with pytest.raises(ValueError, match="named twice"):
        Backups(
            bucket="varai-backups",
            records_bucket="varai-dr-records",
            copies=[{"bucket": "varai-backups", "location": "europe-west1"}],  # type: ignore[list-item]
        )


@pytest.mark.parametrize(
    ("declared", "reported", "problems"),
    [
        ("europe-west1", "EUROPE-WEST1", []),
        ("europe-west1", "US", ["located in US, the topology says europe-west1"]),
        (
            "us-central1",
            "US-CENTRAL1",
            ["in the primary region us-central1: not a cross-region copy"],
        ),
    ],
)
def test_a_copy_bucket_must_be_where_the_topology_says_and_not_in_the_primary_region(
    declared: str, reported: str, problems: list[str]
) -> None:
    assert copy_bucket_problems(declared, reported, "us-central1") == problems
