"""Cloud SQL: on-demand backup runs, their retention, and integrity counts on a live instance."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime, sqladmin
from lifeboat.secrets import read_secret
from tasks.cloud_sql import describe, monitor_connection
from tasks.cloud_sql_operations import sql_call, wait_operation
from tasks.errors import PermanentError
from tasks.polling import wait_until
from tasks.retrying import calling, cloud_task

# A backup run in one of these states will not change any more.
FINAL = ("SUCCESSFUL", "FAILED", "SKIPPED", "DELETED")


class BackupRunInfo(BaseModel):
    id: int
    instance: str
    status: str
    kind: str
    description: str
    enqueued_at: datetime | None
    ended_at: datetime | None
    error: str | None = None


def _info(run: sqladmin.BackupRun) -> BackupRunInfo:
    return BackupRunInfo(
        id=run.id,
        instance=run.instance,
        status=run.status,
        kind=run.type,
        description=run.description,
        enqueued_at=run.enqueued_time,
        ended_at=run.end_time,
        error=run.error.message if run.error and run.error.message else None,
    )


def list_backup_runs(environment: str, project: str, instance: str) -> list[BackupRunInfo]:
    """Every backup run of an instance (every page), newest first."""
    items = runtime.clients(environment).sql.pages(
        lambda s, token: s.backupRuns().list(project=project, instance=instance, pageToken=token),
        runtime.call_timeout(environment),
    )
    runs = [_info(sqladmin.BackupRun.model_validate(item)) for item in items]
    return sorted(runs, key=lambda r: r.id, reverse=True)


def get_backup_run(environment: str, project: str, instance: str, run_id: int) -> BackupRunInfo:
    got = sql_call(
        environment,
        lambda s: s.backupRuns().get(project=project, instance=instance, id=str(run_id)),
    )
    return _info(sqladmin.BackupRun.model_validate(got))


@cloud_task(timeout_seconds=3600, task_run_name="sql-backup-{instance}")
def sql_insert_backup_run(
    environment: str, project: str, instance: str, description: str
) -> BackupRunInfo:
    """Take an on-demand backup run and wait until it is SUCCESSFUL.

    Idempotent: the description names the Lifeboat backup; a run with the same
    description (a retry after a lost reply) is waited for instead of starting another.
    """
    body = {"description": description, "instance": instance}
    with calling("sql-backup", f"{project}:{instance}"):
        existing = [
            r
            for r in list_backup_runs(environment, project, instance)
            if r.description == description and r.status not in ("FAILED", "DELETED")
        ]
        if existing:
            run_id = existing[0].id
            _wait_backup_run(environment, project, instance, run_id)
        else:
            # Not joined to a running backup: that one may be another tool's, and only a
            # run that carries our description can be found again by a retry.
            started = sql_call(
                environment,
                lambda s: s.backupRuns().insert(project=project, instance=instance, body=body),
            )
            name = sqladmin.Operation.model_validate(started).name
            done = wait_operation(environment, project, name, timeout=3500)
            if done.backup_context is None or done.backup_context.backup_id is None:
                raise PermanentError(
                    f"sql-backup: operation {done.name} on {project}:{instance} names no backup run"
                )
            run_id = done.backup_context.backup_id
        info = get_backup_run(environment, project, instance, run_id)
    if info.status != "SUCCESSFUL":
        raise PermanentError(
            f"sql-backup: backup run {info.id} of {project}:{instance} is {info.status}"
            + (f": {info.error}" if info.error else "")
        )
    get_run_logger().info("backup run %s of %s:%s is SUCCESSFUL", info.id, project, instance)
    return info


def _wait_backup_run(environment: str, project: str, instance: str, run_id: int) -> None:
    def finished() -> bool:
        return get_backup_run(environment, project, instance, run_id).status in FINAL

    wait_until(
        finished,
        timeout=3500,
        interval=runtime.clients(environment).poll_interval,
        what=f"backup run {run_id}",
    )


@cloud_task(timeout_seconds=120, task_run_name="sql-list-backups-{instance}")
def sql_list_backup_runs(environment: str, project: str, instance: str) -> list[BackupRunInfo]:
    """The instance's backup runs, newest first.

    Idempotent: read-only.
    """
    with calling("sql-list-backups", f"{project}:{instance}"):
        return list_backup_runs(environment, project, instance)


@cloud_task(timeout_seconds=600, task_run_name="sql-delete-backup-{run_id}")
def sql_delete_backup_run(environment: str, project: str, instance: str, run_id: int) -> bool:
    """Delete one backup run and wait; returns whether this call deleted it.

    Idempotent: a backup run already gone is not an error.
    """
    from google.api_core import exceptions as gexc

    with calling("sql-delete-backup", f"{project}:{instance}/backupRuns/{run_id}"):
        try:
            got = sql_call(
                environment,
                lambda s: s.backupRuns().delete(project=project, instance=instance, id=str(run_id)),
            )
        except gexc.NotFound:
            return False
        wait_operation(environment, project, sqladmin.Operation.model_validate(got).name, 550)
    return True


class IntegrityCounts(BaseModel):
    """The integrity queries' results, all from one snapshot, and its moment."""

    counts: dict[str, int]
    # The database's clock as the snapshot was taken: a restore of the instance to this
    # moment (PITR) must give the same counts.
    at: datetime


def _integrity(environment: str, project: str, instance: str, database: str) -> IntegrityCounts:
    sql = runtime.topology(environment).cloud_sql
    with calling("sql-integrity", f"{project}:{instance}/{database}"):
        state = describe(environment, project, instance)
        if not state.address:
            raise PermanentError(f"sql-integrity: {project}:{instance} has no IP address")
        password = read_secret(sql.monitor_password_secret) if sql.monitor_password_secret else None
        counts: dict[str, int] = {}
        with monitor_connection(
            environment, state.address, password, timeout_s=10, database=database
        ) as conn:
            conn.execute("SET default_transaction_read_only = on")
            # Repeatable read: every query sees the snapshot the first one took, so the
            # counts belong to one moment, the first statement's. Its timestamp is read as
            # that statement starts, a moment before the snapshot: a commit landing in
            # between is counted but not in a restore to that moment. On a busy primary a
            # PITR check can so differ by a row or two: approximate by microseconds.
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                moment = conn.execute("SELECT statement_timestamp()").fetchone()
                for name, query in sql.integrity_queries.items():
                    row = conn.execute(query).fetchone()
                    counts[name] = int(row[0]) if row else 0
    assert moment is not None
    get_run_logger().info("integrity of %s:%s/%s: %s", project, instance, database, counts)
    return IntegrityCounts(counts=counts, at=moment[0])


@cloud_task(timeout_seconds=300, task_run_name="sql-integrity-{instance}")
def sql_integrity_counts(
    environment: str, project: str, instance: str, database: str
) -> dict[str, int]:
    """Run the topology's integrity queries (seed 004: row counts) on a live instance.

    Idempotent: read-only, in a read-only transaction.
    """
    return _integrity(environment, project, instance, database).counts


@cloud_task(timeout_seconds=300, task_run_name="sql-integrity-at-{instance}")
def sql_integrity_snapshot(
    environment: str, project: str, instance: str, database: str
) -> IntegrityCounts:
    """The integrity queries and the moment they saw, for a backup's manifest: the drill
    restores that moment and compares.

    Idempotent: read-only, in a read-only transaction.
    """
    return _integrity(environment, project, instance, database)
