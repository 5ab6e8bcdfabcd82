"""backup: MongoDB and Cloud SQL to Cloud Storage, verified, then retention.

The runbook (seeds 000, 001, 003 and 004 did it with mongodump, tar, gsutil and
`find -mtime +30 -delete` from cron):
- mongodb: stream every collection into an encrypted mongodump archive → read it back,
  check the sha256, decrypt and walk it → manifest;
- cloudsql: integrity counts → on-demand backup run → SQL export of each database to the
  backups bucket (the cross-region copy) → read the dump back → manifest;
- cross-region copies (``backups.copies``): each verified backup rewritten server-side
  into every copy bucket, checked by checksum, its manifest last (flows/backup_copies.py);
- retention per source and per copy bucket, never deleting the newest verified backup,
  nothing at all when the newest one failed;
- record, artifacts, event; a notification only when something failed.

A source that fails does not stop the other; the run fails at the end if either did.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.backup_copies import copy_or_mark_failed, copy_retention, log_copies
from flows.backup_retention import source_retention
from flows.backup_run import failed_backup, open_backup_run
from flows.evidence import published
from flows.launch import ENVIRONMENT_FIELD
from lifeboat.manifest import (
    CloudSqlBackup,
    Manifest,
    Source,
    StoredObject,
    backup_prefix,
)
from lifeboat.record import RunRecord
from lifeboat.retention import Candidate, decide
from lifeboat.topology import SqlInstanceRef, Topology
from tasks.backup_archive import tool_version
from tasks.catalog import catalog_write, catalog_write_quietly
from tasks.cloud_sql import sql_export_database, sql_live_primary
from tasks.cloud_sql_backups import (
    BackupRunInfo,
    sql_delete_backup_run,
    sql_insert_backup_run,
    sql_integrity_snapshot,
    sql_list_backup_runs,
)
from tasks.cloud_sql_import import sql_backup_source
from tasks.errors import PermanentError
from tasks.mongo_backup import mongo_backup_to_gcs, mongo_verify_backup
from tasks.records import artifact_key
from tasks.storage import storage_digest_object

SOURCES: list[Source] = ["mongodb", "cloudsql"]
RUN_DESCRIPTION = "lifeboat backup "  # + backup id; marks the on-demand runs retention owns
DUMP_END = b"PostgreSQL database dump complete"


@flow(
    name="backup",
    task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]
    persist_result=True,
)
def backup(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    sources: Annotated[list[Source], Field(min_length=1, description="What to back up")] = SOURCES,
    retention: Annotated[bool, Field(description="Delete expired backups afterwards")] = True,
    operator: Annotated[str, Field(max_length=100, description="Who launched it")] = "schedule",
) -> dict[str, Any]:
    run = open_backup_run(environment, "backup", f"backup of {', '.join(sources)}", "bk", operator)
    topo, record, bid, started = run.topology, run.record, run.backup_id, run.started
    manifests: dict[str, Manifest] = {}
    with published(record, notify_success=False):
        try:
            _run(topo, record, bid, started, sources, retention, manifests)
        finally:
            _publish_summary(record, manifests)
    return record.model_dump(mode="json")


def _run(
    topo: Topology,
    record: RunRecord,
    bid: str,
    started: datetime,
    sources: list[Source],
    retention: bool,
    manifests: dict[str, Manifest],
) -> None:
    """Each source's backup into ``manifests`` as it ends, then retention; any unverified fails."""
    if "cloudsql" in sources:
        manifests["cloudsql"] = copy_or_mark_failed(
            topo, record, _cloudsql(topo, record, bid, started)
        )
    if "mongodb" in sources:
        manifests["mongodb"] = copy_or_mark_failed(topo, record, _mongodb(topo, record, bid))
    record.after["backups"] = {
        s: {
            "status": m.status,
            "manifest": m.manifest_name,
            "error": m.error,
            "copies": {c.location: c.status for c in m.copies.values()},
        }
        for s, m in manifests.items()
    }
    if retention:
        _retention(topo, record, [s for s in sources if manifests[s].verified])
    failed = [f"{s}: {m.error or m.status}" for s, m in manifests.items() if not m.verified]
    failed += log_copies(manifests)
    if failed:
        raise PermanentError("backup not verified — " + "; ".join(failed))
    record.finish("completed")


def _mongodb(topo: Topology, record: RunRecord, bid: str) -> Manifest:
    env = topo.environment
    with record.step("mongodb-backup") as step:
        try:
            manifest = mongo_backup_to_gcs(env, bid)
        except Exception as exc:
            failed = failed_backup(env, record, "mongodb", bid, record.started_at, exc)
            step.outcome, step.detail = "failed", failed.error or ""
            return failed
        size = manifest.archive.bytes if manifest.archive else 0
        step.detail = f"{len(manifest.collections)} collections, {size} bytes"
    with record.step("mongodb-verify") as step:
        manifest = mongo_verify_backup(env, manifest)
        manifest.flow_run_id = record.flow_run_id
        catalog_write(env, manifest)
        step.outcome = "done" if manifest.verified else "failed"
        step.detail = manifest.error or f"verified; manifest {manifest.manifest_name}"
    return manifest


def _cloudsql(topo: Topology, record: RunRecord, bid: str, started: datetime) -> Manifest:
    env, sql = topo.environment, topo.cloud_sql
    # After a failover the topology's primary is stale: back up what takes writes now.
    primary = _live_primary(topo)
    manifest = Manifest(
        source="cloudsql",
        backup_id=bid,
        environment=env,
        started_at=started,
        tool=tool_version(),
        flow_run_id=record.flow_run_id,
        cloudsql=CloudSqlBackup(
            project=primary.project, instance=primary.instance, databases=list(sql.databases)
        ),
    )
    assert manifest.cloudsql is not None
    try:
        with record.step("cloudsql-backup-run") as step:
            # The counts the drill compares a restore with: taken just before the backup,
            # with their moment, which the drill also restores to (PITR).
            counted = sql_integrity_snapshot(
                env, primary.project, primary.instance, sql.databases[0]
            )
            manifest.cloudsql.integrity = counted.counts
            manifest.cloudsql.counted_at = counted.at
            run = sql_insert_backup_run(
                env, primary.project, primary.instance, RUN_DESCRIPTION + bid
            )
            manifest.cloudsql.backup_run_id = run.id
            manifest.cloudsql.backup_run_status = run.status
            step.detail = f"backup run {run.id} {run.status}; counts {manifest.cloudsql.integrity}"
        with record.step("cloudsql-export") as step:
            bucket = topo.backups.bucket
            users, spec = sql_backup_source(env, primary.project, primary.instance)
            manifest.cloudsql.users, manifest.cloudsql.spec = users, spec
            for database in sql.databases:
                uri = f"gs://{bucket}/{backup_prefix('cloudsql', bid)}{database}.sql"
                sql_export_database(env, primary.project, primary.instance, database, uri)
                got = storage_digest_object(env, uri)
                if got.size == 0 or DUMP_END not in got.tail:
                    raise PermanentError(f"cloudsql-export: {uri} is not a complete SQL dump")
                manifest.cloudsql.exports[database] = StoredObject(
                    uri=uri, bytes=got.size, sha256=got.sha256, generation=got.generation
                )
            # The window a restore of the run or the exports falls in ends here.
            manifest.cloudsql.integrity_after = sql_integrity_snapshot(
                env, primary.project, primary.instance, sql.databases[0]
            ).counts
            step.detail = ", ".join(
                f"{db}: {o.bytes} bytes" for db, o in manifest.cloudsql.exports.items()
            )
        manifest.status, manifest.verified_at = "verified", datetime.now(UTC)
    except Exception as exc:
        manifest.status, manifest.error = "failed", str(exc)[:500]
    manifest.ended_at = datetime.now(UTC)
    catalog_write_quietly(env, manifest)
    return manifest


def _retention(topo: Topology, record: RunRecord, verified_sources: list[Source]) -> None:
    """Apply retention to each source whose backup just verified."""
    now = datetime.now(UTC)
    report: list[dict[str, Any]] = []
    with record.step("retention") as step:
        for source in verified_sources:
            report += source_retention(topo, source, now)
        if "cloudsql" in verified_sources:
            report += _backup_run_retention(topo, now)
        report += copy_retention(topo, verified_sources, now)
        gone = [r for r in report if r["action"] == "delete"]
        record.after["retention"] = report
        step.detail = f"deleted {len(gone)}: " + (
            "; ".join(f"{r['what']} ({r['reason']})" for r in gone) or "nothing expired"
        )
        get_run_logger().info("retention: %s", step.detail)


def _live_primary(topo: Topology) -> SqlInstanceRef:
    live = sql_live_primary(topo.environment)
    return SqlInstanceRef(project=live.project, instance=live.name, region=live.region)


def _backup_run_retention(topo: Topology, now: datetime) -> list[dict[str, Any]]:
    env, primary = topo.environment, _live_primary(topo)
    runs: list[BackupRunInfo] = [
        r
        for r in sql_list_backup_runs(env, primary.project, primary.instance)
        if r.description.startswith(RUN_DESCRIPTION) and r.enqueued_at is not None
    ]
    candidates = [
        Candidate(str(r.id), r.enqueued_at, r.status == "SUCCESSFUL", r.status)
        for r in runs
        if r.enqueued_at is not None
    ]
    report = []
    for d in decide(candidates, topo.backups.retention.database_days, now):
        if d.action == "delete":
            sql_delete_backup_run(env, primary.project, primary.instance, int(d.key))
        report.append(
            {
                "what": f"cloudsql backup run {d.key}",
                "action": d.action,
                "reason": d.reason,
                "objects": 1 if d.action == "delete" else 0,
            }
        )
    return report


def _publish_summary(record: RunRecord, manifests: dict[str, Manifest]) -> None:
    """A table of what each backup holds, beside the run's own record."""
    from prefect.artifacts import create_table_artifact

    rows = []
    for source, m in manifests.items():
        if m.source == "mongodb":
            rows += [
                {
                    "source": source,
                    "item": f"{c.database}.{c.name}",
                    "documents": c.documents,
                    "bytes": c.bytes,
                    "sha256": c.sha256[:16],
                    "status": m.status,
                }
                for c in m.collections
            ]
        elif m.cloudsql:
            rows += [
                {
                    "source": source,
                    "item": f"{db} export",
                    "documents": None,
                    "bytes": o.bytes,
                    "sha256": o.sha256[:16],
                    "status": m.status,
                }
                for db, o in m.cloudsql.exports.items()
            ]
            rows += [
                {
                    "source": source,
                    "item": f"count {name}",
                    "documents": n,
                    "bytes": None,
                    "sha256": "",
                    "status": m.status,
                }
                for name, n in m.cloudsql.integrity.items()
            ]
    rows += [
        {
            "source": source,
            "item": f"copy in {c.location}",
            "documents": None,
            "bytes": sum(o.bytes for o in c.objects.values()),
            "sha256": "",
            "status": c.status if c.verified else f"{c.status}: {c.error}",
        }
        for source, m in manifests.items()
        for c in m.copies.values()
    ]
    try:
        create_table_artifact(
            table=rows,
            key=artifact_key("backup", record.environment, "contents"),
            description=f"backup {record.incident_id}: what it holds",
        )
    except Exception as exc:
        get_run_logger().error("could not publish the backup table: %s", exc)
