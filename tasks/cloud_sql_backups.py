"""Cloud SQL: on-demand backup runs, their retention, and integrity counts on a live instance."""

from __future__ import annotations

from datetime import datetime

from google.cloud import sqladmin_v1
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.secrets import read_secret
from tasks.cloud_sql import describe, monitor_connection, wait_operation
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task


class BackupRunInfo(BaseModel):
    id: int
    instance: str
    status: str
    kind: str
    description: str
    enqueued_at: datetime | None
    ended_at: datetime | None
    error: str | None = None


def _info(run: sqladmin_v1.BackupRun) -> BackupRunInfo:
    def when(value: datetime | None) -> datetime | None:
        # proto-plus hands an unset Timestamp back as the epoch.
        return value if value and value.year > 1970 else None

    return BackupRunInfo(
        id=run.id,
        instance=run.instance,
        status=sqladmin_v1.SqlBackupRunStatus(run.status).name,
        kind=sqladmin_v1.SqlBackupRunType(run.type_).name,
        description=run.description,
        enqueued_at=when(run.enqueued_time),
        ended_at=when(run.end_time),
        error=run.error.message if run.error and run.error.message else None,
    )


def list_backup_runs(environment: str, project: str, instance: str) -> list[BackupRunInfo]:
    """Every backup run of an instance, newest first."""
    client = runtime.clients(environment).sql_backup_runs
    pages = client.list(
        request=sqladmin_v1.SqlBackupRunsListRequest(project=project, instance=instance),
        timeout=runtime.call_timeout(environment),
    )
    runs = [_info(run) for run in pages]
    return sorted(runs, key=lambda r: r.id, reverse=True)


@cloud_task(timeout_seconds=3600, task_run_name="sql-backup-{instance}")
def sql_insert_backup_run(
    environment: str, project: str, instance: str, description: str
) -> BackupRunInfo:
    """Take an on-demand backup run and wait until it is SUCCESSFUL.

    Idempotent: the description names the Lifeboat backup; a run with the same
    description (a retry after a lost reply) is waited for instead of starting another.
    """
    factory = runtime.clients(environment)
    timeout = runtime.call_timeout(environment)
    with calling("sql-backup", f"{project}:{instance}"):
        existing = [
            r
            for r in list_backup_runs(environment, project, instance)
            if r.description == description
        ]
        if existing and existing[0].status == "SUCCESSFUL":
            return existing[0]
        if existing and existing[0].status not in ("FAILED", "DELETED"):
            run_id = existing[0].id
            _wait_backup_run(environment, project, instance, run_id)
        else:
            op = factory.sql_backup_runs.insert(
                request=sqladmin_v1.SqlBackupRunsInsertRequest(
                    project=project,
                    instance=instance,
                    body=sqladmin_v1.BackupRun(description=description, instance=instance),
                ),
                timeout=timeout,
            )
            done = wait_operation(environment, project, str(op.name), timeout=3500)
            run_id = done.backup_context.backup_id
        got = factory.sql_backup_runs.get(
            request=sqladmin_v1.SqlBackupRunsGetRequest(
                project=project, instance=instance, id=run_id
            ),
            timeout=timeout,
        )
    info = _info(got)
    if info.status != "SUCCESSFUL":
        raise PermanentError(
            f"sql-backup: backup run {info.id} of {project}:{instance} is {info.status}"
            + (f": {info.error}" if info.error else "")
        )
    get_run_logger().info("backup run %s of %s:%s is SUCCESSFUL", info.id, project, instance)
    return info


def _wait_backup_run(environment: str, project: str, instance: str, run_id: int) -> None:
    from tasks.polling import wait_until

    factory = runtime.clients(environment)

    def finished() -> bool:
        run = factory.sql_backup_runs.get(
            request=sqladmin_v1.SqlBackupRunsGetRequest(
                project=project, instance=instance, id=run_id
            ),
            timeout=runtime.call_timeout(environment),
        )
        return _info(run).status in ("SUCCESSFUL", "FAILED", "SKIPPED", "DELETED")

    wait_until(finished, timeout=3500, interval=factory.poll_interval, what=f"backup run {run_id}")


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

    factory = runtime.clients(environment)
    with calling("sql-delete-backup", f"{project}:{instance}/backupRuns/{run_id}"):
        try:
            op = factory.sql_backup_runs.delete(
                request=sqladmin_v1.SqlBackupRunsDeleteRequest(
                    project=project, instance=instance, id=run_id
                ),
                timeout=runtime.call_timeout(environment),
            )
        except gexc.NotFound:
            return False
        wait_operation(environment, project, str(op.name), timeout=550)
    return True


@cloud_task(timeout_seconds=300, task_run_name="sql-integrity-{instance}")
def sql_integrity_counts(
    environment: str, project: str, instance: str, database: str
) -> dict[str, int]:
    """Run the topology's integrity queries (seed 004: row counts) on a live instance.

    Idempotent: read-only, in a read-only transaction.
    """
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
            for name, query in sql.integrity_queries.items():
                row = conn.execute(query).fetchone()
                counts[name] = int(row[0]) if row else 0
    get_run_logger().info("integrity of %s:%s/%s: %s", project, instance, database, counts)
    return counts
