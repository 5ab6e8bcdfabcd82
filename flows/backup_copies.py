"""backup, cross-region copies: every verified backup into each copy bucket, then retention.

The runbook (seed 004: "cross_region_backups: destination_regions [us-east1,
europe-west1], frequency daily, retention 90_days"), done server-side and checked:
1. each object of a verified backup (``Manifest.payload``: the Mongo archive, its
   ``oplog.bson`` inside, the Cloud SQL exports) is rewritten into every copy bucket of
   ``backups.copies`` and checked by its checksums;
2. the backup's manifest, in the backups bucket, records each copy (verified, or failed
   and why);
3. that manifest is copied last into each bucket whose copy verified: a copy bucket's
   backup without a manifest is an orphan, never a restorable copy;
4. retention per copy bucket: ``retention.cross_region_days``, never the newest verified
   copy, nothing when the newest copy there is not verified; orphans after a day.

MongoDB's change slices (``lifeboat.slices``, shipped by mongo-capture every 5 minutes,
long after their base's copies) are not copied: a restore to a point in time reads the
backups bucket only (``flows.restore.source_bucket_of``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger

from lifeboat.manifest import AnySource, BackupCopy, Manifest, object_name
from lifeboat.record import RunRecord
from lifeboat.retention import Candidate, decide
from lifeboat.topology import Topology
from tasks.catalog import ORPHAN_GRACE, catalog_delete, catalog_list, catalog_orphans, catalog_write
from tasks.storage_copies import CopyResult, storage_copy_object


def copy_backup(topo: Topology, record: RunRecord, manifest: Manifest) -> Manifest:
    """Copy a verified backup to every copy bucket; the manifest comes back recording them.

    A copy that fails is recorded as failed in the manifest and in the step; the backup
    itself stays verified. The caller fails the run if any copy failed.
    """
    if not topo.backups.copies or not manifest.verified:
        return manifest
    env = topo.environment
    source_bucket = topo.backups.bucket
    names = [object_name(o.uri)[1] for o in manifest.payload()]
    with record.step(f"{manifest.source}-copies") as step:
        futures = {
            (copy.bucket, name): storage_copy_object.submit(env, source_bucket, name, copy.bucket)
            for copy in topo.backups.copies
            for name in names
        }
        results = {key: _result(key, future) for key, future in futures.items()}
        for copy in topo.backups.copies:
            mine = [results[(copy.bucket, name)] for name in names]
            errors = [r.error for r in mine if r.error]
            manifest.copies[copy.bucket] = BackupCopy(
                bucket=copy.bucket,
                location=copy.location,
                status="failed" if errors else "verified",
                copied_at=datetime.now(UTC),
                error="; ".join(errors)[:500] or None,
                objects={r.name: r.copied for r in mine if r.copied is not None},
            )
        catalog_write(env, manifest)
        _copy_manifests(topo, manifest)
        step.detail = "; ".join(_describe(c, results) for c in manifest.copies.values())
        if any(not c.verified for c in manifest.copies.values()):
            step.outcome = "failed"
    return manifest


def copy_or_mark_failed(topo: Topology, record: RunRecord, manifest: Manifest) -> Manifest:
    """The backup's cross-region copies; a copy step that fails (its catalog write) is
    recorded and stops neither the other sources nor retention, like a source that fails."""
    try:
        return copy_backup(topo, record, manifest)
    except Exception as exc:
        get_run_logger().error("copies of %s failed: %s", manifest.backup_id, exc)
        # Not recorded, so not restorable from: the run fails, naming them.
        for copy in manifest.copies.values():
            copy.status, copy.error = "failed", f"recording the copies: {exc}"[:500]
        return manifest


def _result(key: tuple[str, str], future: Any) -> CopyResult:
    """A copy task's result; a task that raised is a failed copy, named."""
    bucket, name = key
    try:
        result: CopyResult = future.result()
        return result
    except Exception as exc:
        return CopyResult(name=name, dest_bucket=bucket, error=str(exc)[:300])


def _copy_manifests(topo: Topology, manifest: Manifest) -> None:
    """The manifest, last, into each bucket whose copy verified; one that fails undoes it."""
    env, failed = topo.environment, False
    for copy in manifest.copies.values():
        if not copy.verified:
            continue
        result = _result(
            (copy.bucket, manifest.manifest_name),
            storage_copy_object.submit(
                env, topo.backups.bucket, manifest.manifest_name, copy.bucket
            ),
        )
        if not result.verified:
            copy.status, copy.error, failed = "failed", f"manifest: {result.error}", True
    if failed:
        catalog_write(env, manifest)


def _describe(copy: BackupCopy, results: dict[tuple[str, str], CopyResult]) -> str:
    mine = [r for (bucket, _), r in results.items() if bucket == copy.bucket]
    calls = sum(r.calls for r in mine)
    reused = sum(r.reused for r in mine)
    state = "verified" if copy.verified else f"FAILED: {copy.error}"
    return (
        f"{copy.location} ({copy.bucket}): {len(mine)} objects, {calls} rewrite calls"
        + (f", {reused} already there" if reused else "")
        + f", {state}"
    )


def copy_retention(
    topo: Topology, sources: Sequence[AnySource], now: datetime
) -> list[dict[str, Any]]:
    """Retention in every copy bucket, per source: the same rules as the backups bucket's,
    with the source's ``copy_days``. Only manifests there count (each one is a verified
    copy)."""
    env = topo.environment
    report: list[dict[str, Any]] = []
    for source in sources:
        keep_days = topo.backups.retention.copy_days(source)
        newest = next(iter(catalog_list(env, source)), None)
        for copy in topo.backups.copies:
            history = catalog_list(env, source, copy.bucket)
            by_id = {m.backup_id: m for m in history}
            candidates = [
                Candidate(m.backup_id, m.started_at, _verified_here(m, copy.bucket), m.status)
                for m in history
            ]
            # Only verified copies reach a copy bucket: a newest copy that failed is seen
            # in the backups bucket's manifest, and stops deletion here as it does there.
            if newest is not None and newest.backup_id not in by_id:
                here = newest.copies.get(copy.bucket)
                if here is not None and not here.verified:
                    candidates.append(
                        Candidate(newest.backup_id, newest.started_at, False, "copy failed")
                    )
            for d in decide(candidates, keep_days, now):
                gone = (
                    catalog_delete(env, by_id[d.key], copy.bucket) if d.action == "delete" else []
                )
                what = f"{source} {d.key} in {copy.location}"
                report.append(_row(what, d.action, d.reason, gone))
            report += _orphans(env, source, copy.bucket, copy.location, now)
    return report


def _verified_here(manifest: Manifest, bucket: str) -> bool:
    here = manifest.copies.get(bucket)
    return manifest.verified and here is not None and here.verified


def _orphans(
    env: str, source: AnySource, bucket: str, location: str, now: datetime
) -> list[dict[str, Any]]:
    """Copies without a manifest (a failed or interrupted copy): deleted after the grace."""
    report = []
    grace_days = ORPHAN_GRACE.total_seconds() / 86400
    for orphan in catalog_orphans(env, source, bucket):
        age_days = (now - orphan.started_at).total_seconds() / 86400
        what = f"{source} {orphan.backup_id} in {location}"
        if age_days > grace_days:
            gone = catalog_delete(env, orphan, bucket)
            reason = f"copy without a manifest, {age_days:.1f} days old"
            report.append(_row(what, "delete", reason, gone))
        else:
            reason = f"copy without a manifest yet, {age_days:.1f} days old"
            report.append(_row(what, "keep", reason, []))
    return report


def _row(what: str, action: str, reason: str, objects: list[str]) -> dict[str, Any]:
    return {"what": what, "action": action, "reason": reason, "objects": len(objects)}


def log_copies(manifests: dict[str, Manifest]) -> list[str]:
    """Each copy that failed, as ``source → location: why``, for the run's failure."""
    failed = [
        f"{m.source} copy to {c.location}: {c.error}"
        for m in manifests.values()
        for c in m.copies.values()
        if not c.verified
    ]
    for line in failed:
        get_run_logger().error("%s", line)
    return failed
