"""restore: a MongoDB backup into a scratch database (or, with force, over the source).

The runbook (seed 000's restore-database.sh and seed 001's `mongorestore --drop`, done
right): pick the backup (named, or the newest verified) → verify the whole archive
(sha256, decryption, every member) before writing anything → restore in streaming
batches → compare the counts with the manifest → record.

``source_bucket`` reads the backup from one of the topology's cross-region copies (a copy
bucket, or its location such as ``europe-west1``) instead of the backups bucket: the copy's
manifest, pointing at the copy's objects, verified there in full as any other. A restore
to ``point_in_time`` reads the backups bucket only (the change slices are not copied
across regions), so a copy's ``source_bucket`` with it is refused before anything is
written, naming the field.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows.evidence import published
from flows.launch import ENVIRONMENT_FIELD, SwitchRequest
from flows.restore_point import check_point, plan_point, verify_slices
from lifeboat import runtime
from lifeboat.manifest import Manifest
from lifeboat.record import RunRecord
from lifeboat.slices import SliceManifest
from tasks.catalog import catalog_get, catalog_newest
from tasks.errors import PermanentError
from tasks.mongo import mongo_drop_database
from tasks.mongo_backup import RestoredCollection, mongo_restore_from_gcs, mongo_verify_backup
from tasks.mongo_oplog import Replayed

BACKUP_ID = r"^\d{8}T\d{6}Z$"
SOURCE_BUCKET = r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$"
DATABASE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,48}$")


class RestoreReport(BaseModel):
    backup_id: str
    manifest: Manifest
    targets: dict[str, str]
    documents: dict[str, int]
    collections: list[RestoredCollection]
    oplog: Replayed | None = None
    consistent_at: datetime | None = None
    point_in_time: datetime | None = None
    slices: int = 0
    slices_replayed: Replayed | None = None
    counts_match: bool
    seconds: float


def scratch_name(backup_id: str) -> str:
    return f"restore_{backup_id.lower()}"


def restore_targets(
    environment: str, manifest: Manifest, target_database: str | None, force: bool
) -> dict[str, str]:
    """Source database → target database; refuses the sources themselves unless forced."""
    if target_database is not None and not DATABASE_NAME.match(target_database):
        raise PermanentError(
            f"target_database: {target_database!r} is not a valid name "
            "(letters, digits, _ and -, at most 48)"
        )
    base = target_database or scratch_name(manifest.backup_id)
    sources = manifest.databases or sorted({c.database for c in manifest.collections})
    targets = {db: base if len(sources) == 1 else f"{base}_{db}" for db in sources}
    live = set(runtime.topology(environment).mongodb.databases)
    clobbered = sorted(t for t in targets.values() if t in live)
    if clobbered and not force:
        raise PermanentError(
            f"target_database: {', '.join(clobbered)} is a live database; "
            "restore over it only with force"
        )
    return targets


def source_bucket_of(
    environment: str, source_bucket: str | None, point_in_time: datetime | None = None
) -> str:
    """The bucket a restore reads from; an unknown one is refused, naming the field.

    A restore to a point in time reads the backups bucket only: the change slices are
    captured there every few minutes, long after a base backup's copies were made, and
    are not copied across regions.

    Raises:
        PermanentError: ``source_bucket`` is neither a backup bucket of the topology nor
            the location of one of its copies, or is a copy bucket while
            ``point_in_time`` is given.
    """
    backups = runtime.topology(environment).backups
    bucket = backups.source_bucket(source_bucket)
    if bucket is None:
        raise PermanentError(
            f"source_bucket: {source_bucket!r} is not a backup bucket of {environment}; "
            f"known: {backups.describe_sources()}"
        )
    if point_in_time is not None and bucket != backups.bucket:
        raise PermanentError(
            f"source_bucket: {source_bucket!r} is a cross-region copy, and a restore to a "
            f"point_in_time reads the change slices, which only the backups bucket "
            f"({backups.bucket}) holds; restore a backup_id from the copy instead"
        )
    return bucket


def restore_mongodb(
    environment: str,
    backup_id: str | None = None,
    target_database: str | None = None,
    force: bool = False,
    point_in_time: datetime | None = None,
    source_bucket: str | None = None,
) -> RestoreReport:
    """Restore one backup, or the data as it was at ``point_in_time`` (a base backup and
    the changes captured after it); usable inside any flow (the drill calls it)."""
    started = time.perf_counter()
    if backup_id is not None and not re.match(BACKUP_ID, backup_id):
        raise PermanentError(f"backup_id: {backup_id!r} is malformed (e.g. 20261122T030000Z)")
    point_in_time = check_point(backup_id, point_in_time)
    bucket = source_bucket_of(environment, source_bucket, point_in_time)
    slices: list[SliceManifest] = []
    manifest: Manifest | None
    if point_in_time is not None:
        manifest, slices = plan_point(environment, point_in_time)
    elif backup_id:
        manifest = catalog_get(environment, "mongodb", backup_id, bucket)
    else:
        manifest = catalog_newest(environment, "mongodb", True, bucket)
    if manifest is None:
        raise PermanentError(f"restore: there is no verified MongoDB backup in {bucket}")
    targets = restore_targets(environment, manifest, target_database, force)
    checked = mongo_verify_backup(environment, manifest)
    if not checked.verified:
        raise PermanentError(
            f"restore refused: backup {manifest.backup_id} failed verification "
            f"({checked.error}); nothing was written"
        )
    slices = verify_slices(environment, slices) if slices else []
    try:
        archive = mongo_restore_from_gcs(environment, checked, targets, slices, point_in_time)
    except BaseException:
        # Leave no half-restored scratch database behind; a forced restore over a live
        # database is left as it is, for a person to see.
        if not force:
            for target in targets.values():
                mongo_drop_database(environment, target)
        raise
    restored = archive.collections
    documents = {r.target: r.documents for r in restored}
    expected = {f"{c.database}.{c.name}" for c in manifest.collections}
    counts_match = all(r.documents == r.expected for r in restored) and expected == {
        r.source for r in restored
    }
    return RestoreReport(
        backup_id=manifest.backup_id,
        manifest=manifest,
        targets=targets,
        documents=documents,
        collections=restored,
        oplog=archive.oplog,
        consistent_at=manifest.consistent_at,
        point_in_time=point_in_time,
        slices=len(slices),
        slices_replayed=archive.slices,
        counts_match=counts_match,
        seconds=time.perf_counter() - started,
    )


@flow(name="restore", persist_result=True)
def restore(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    backup_id: Annotated[
        str | None,
        Field(pattern=BACKUP_ID, description="Backup to restore; default the newest verified"),
    ] = None,
    target_database: Annotated[
        str | None,
        Field(description="Target database; default a new scratch database restore_<id>"),
    ] = None,
    force: Annotated[
        bool, Field(description="Allow restoring over a live database (drops its collections)")
    ] = False,
    point_in_time: Annotated[
        datetime | None,
        Field(
            description="Restore the data as it was at this moment (RFC 3339): a base backup "
            "and the changes captured after it, up to (not including) the moment"
        ),
    ] = None,
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "restore a backup",
    operator: Annotated[str, Field(max_length=100, description="Who launched it")] = "unknown",
    source_bucket: Annotated[
        str | None,
        Field(
            pattern=SOURCE_BUCKET,
            description="Read the backup from this bucket: a cross-region copy's bucket or "
            "its location (e.g. europe-west1); default the backups bucket",
        ),
    ] = None,
) -> dict[str, Any]:
    request = SwitchRequest.validate_launch(environment, reason, None, operator, prefix="rs")
    # Refused before the record exists: a bucket the topology does not name, a moment
    # without a UTC offset, in the future or beside a backup_id, change nothing.
    point_in_time = check_point(backup_id, point_in_time)
    bucket = source_bucket_of(request.environment, source_bucket, point_in_time)
    record: RunRecord = request.record("restore", "force" if force else "scratch", False)
    with published(record, notify_success=False):
        with record.step("restore-mongodb") as step:
            report = restore_mongodb(
                request.environment, backup_id, target_database, force, point_in_time, bucket
            )
            step.detail = (
                f"backup {report.backup_id} from {bucket} → {report.targets}: {report.documents}"
            )
            if report.point_in_time is not None:
                step.detail += f"; to {report.point_in_time.isoformat()} ({report.slices} slices)"
        record.rto_seconds = report.seconds
        record.after = {
            "backup_id": report.backup_id,
            "source_bucket": bucket,
            "targets": report.targets,
            "collections": [c.model_dump() for c in report.collections],
            "consistent_at": report.consistent_at.isoformat() if report.consistent_at else None,
            "oplog": report.oplog.model_dump() if report.oplog else None,
            "point_in_time": report.point_in_time.isoformat() if report.point_in_time else None,
            "slices": report.slices,
            "slices_replayed": report.slices_replayed.model_dump()
            if report.slices_replayed
            else None,
        }
        if not report.counts_match:
            raise PermanentError(
                "restore: document counts differ from the manifest: "
                + ", ".join(
                    f"{c.source} {c.documents}/{c.expected}"
                    for c in report.collections
                    if c.documents != c.expected
                )
            )
        record.finish("completed")
        get_run_logger().info("restored %s into %s", report.backup_id, report.targets)
    return record.model_dump(mode="json")
