"""Cloud SQL restores into a new instance: to a point in time (``instances.clone``) or from
a backup run (a new instance, then ``restoreBackup``).

Google's rules the checks here follow:
- "A point-in-time recovery always creates a new instance; you cannot perform a PITR to an
  existing instance" (cloud.google.com/sql/docs/postgres/backup-recovery/pitr).
- PITR needs ``settings.backupConfiguration.pointInTimeRecoveryEnabled``, and logs are kept
  ``transactionLogRetentionDays`` (1-7 days for Enterprise, 1-35 for Enterprise Plus;
  default 7 or 14) (cloud.google.com/sql/docs/postgres/backup-recovery/configure-pitr).
- ``POST …/instances/{source}/clone {cloneContext{destinationInstanceName, pointInTime}}``
  returns a long-running operation (cloud.google.com/sql/docs/postgres/admin-api/rest/v1/
  instances/clone); the permission is ``cloudsql.instances.clone``
  (cloud.google.com/sql/docs/postgres/iam-permissions).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from google.api_core import exceptions as gexc
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime, sqladmin
from tasks.cloud_sql import InstanceState, describe, insert_and_wait, read_instance
from tasks.cloud_sql_operations import running_operation, sql_call, wait_operation
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task

RESTORE_LABEL = "lifeboat-restore"  # on an instance a backup-run restore created
CLONE = "CLONE"
RESTORE = "RESTORE_VOLUME"
IMPORT = "IMPORT"
_DEFAULT_RETENTION = {"ENTERPRISE_PLUS": 14}  # else 7 (Enterprise)


class TargetKind(StrEnum):
    absent = "absent"
    ours = "ours"  # made by a restore (a clone, or an instance with the restore label)
    other = "other"  # anything else: refused unless forced


class PitrWindow(BaseModel):
    """What the source allows: whether PITR is on, and how far back it reaches."""

    instance: str
    enabled: bool
    retention_days: int

    def refusal(self, point: datetime, now: datetime) -> str | None:
        """Why ``point`` cannot be restored (naming the parameter); None if it can."""
        if not self.enabled:
            return (
                f"point_in_time: point-in-time recovery is off on {self.instance} "
                "(settings.backupConfiguration.pointInTimeRecoveryEnabled is false)"
            )
        if point > now:
            return f"point_in_time: {point.isoformat()} is in the future"
        if point < now - timedelta(days=self.retention_days):
            return (
                f"point_in_time: {point.isoformat()} is older than {self.instance}'s "
                f"{self.retention_days}-day transaction log retention"
            )
        return None


# How a restore made its instance: its ``lifeboat-restore`` label.
RestoreKind = Literal["backup-run", "export"]


class RestoreTarget(BaseModel):
    name: str
    kind: TargetKind
    how: str | None = None  # the restore label's value: backup-run, export
    # Operation types already run on it (newest first), with whether each succeeded.
    finished: dict[str, bool] = {}
    running: str | None = None  # the unfinished CLONE, RESTORE_VOLUME or IMPORT operation


def parse_point(raw: str) -> datetime:
    """An RFC 3339 timestamp with a zone (Z or an offset), in UTC; PermanentError if not."""
    try:
        point = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PermanentError(
            f"point_in_time: {raw!r} is not RFC 3339 (e.g. 2026-12-05T14:30:00Z)"
        ) from None
    if point.tzinfo is None:
        raise PermanentError(f"point_in_time: {raw!r} has no time zone (add Z or an offset)")
    return point.astimezone(UTC)


def rfc3339(point: datetime) -> str:
    return point.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@cloud_task(timeout_seconds=120, task_run_name="sql-pitr-window-{instance}")
def sql_pitr_window(environment: str, project: str, instance: str) -> PitrWindow:
    """Read the source's PITR setting and log retention.

    Idempotent: a read.
    """
    with calling("sql-pitr-window", f"{project}:{instance}"):
        got = read_instance(environment, project, instance)
    backup = got.settings.backup_configuration
    default = _DEFAULT_RETENTION.get(got.settings.edition or "", 7)
    return PitrWindow(
        instance=instance,
        enabled=bool(backup and backup.point_in_time_recovery_enabled),
        retention_days=(backup.transaction_log_retention_days if backup else None) or default,
    )


@cloud_task(timeout_seconds=120, task_run_name="sql-backup-run-{instance}-{run_id}")
def sql_backup_run_status(environment: str, project: str, instance: str, run_id: int) -> str:
    """The backup run's status; PermanentError naming ``backup_run`` if it does not exist.

    Idempotent: a read.
    """
    with calling("sql-backup-run", f"{project}:{instance}#{run_id}"):
        try:
            got = sql_call(
                environment,
                lambda s: s.backupRuns().get(project=project, instance=instance, id=str(run_id)),
            )
        except gexc.NotFound:
            raise PermanentError(
                f"backup_run: {run_id} is not a backup run of {project}:{instance}"
            ) from None
    return str(got.get("status", ""))


@cloud_task(timeout_seconds=120, task_run_name="sql-restore-target-{instance}")
def sql_restore_target(environment: str, project: str, instance: str) -> RestoreTarget:
    """Whether the target exists, and whether a restore made it (and how far it got).

    Idempotent: a read.
    """
    with calling("sql-restore-target", f"{project}:{instance}"):
        try:
            state = describe(environment, project, instance)
        except gexc.NotFound:
            return RestoreTarget(name=instance, kind=TargetKind.absent)
        operations = _operations(environment, project, instance)
    finished: dict[str, bool] = {}
    running = None
    cloned = False
    for op in operations:
        if op.operation_type in (CLONE, RESTORE, IMPORT):
            cloned = cloned or op.operation_type == CLONE
            if op.status != "DONE":
                running = running or op.name
            else:
                finished.setdefault(op.operation_type, op.failure is None)
        if op.operation_type in ("CREATE", CLONE):
            break  # its creation: older operations were an earlier instance's of that name
    # A clone made it, or a backup-run restore created it (its label): a restore's own.
    ours = cloned or RESTORE_LABEL in state.labels
    return RestoreTarget(
        name=instance,
        kind=TargetKind.ours if ours else TargetKind.other,
        how=state.labels.get(RESTORE_LABEL),
        finished=finished,
        running=running,
    )


def _operations(environment: str, project: str, instance: str) -> list[sqladmin.Operation]:
    items = runtime.clients(environment).sql.pages(
        lambda s, token: s.operations().list(project=project, instance=instance, pageToken=token),
        runtime.call_timeout(environment),
    )
    return [sqladmin.Operation.model_validate(item) for item in items]


@cloud_task(timeout_seconds=3600, task_run_name="sql-clone-{target}")
def sql_clone_to_point(
    environment: str, project: str, source: str, target: str, point_in_time: str
) -> InstanceState:
    """Clone ``source`` as it was at ``point_in_time`` into the new instance ``target``.

    Idempotent: a clone into ``target`` already running (a retried or resumed run) is
    waited for, never started again; a target a finished clone made is returned as it is.
    """
    body: dict[str, Any] = {
        "cloneContext": {"destinationInstanceName": target, "pointInTime": point_in_time}
    }
    with calling("sql-clone", f"{project}:{source} → {target} at {point_in_time}"):
        try:
            describe(environment, project, target)
            exists = True
        except gexc.NotFound:
            exists = False
        name = running_operation(environment, project, target, CLONE) if exists else None
        if name is None and not exists:
            started = sql_call(
                environment,
                lambda s: s.instances().clone(project=project, instance=source, body=body),
            )
            name = sqladmin.Operation.model_validate(started).name
            get_run_logger().info("started a clone of %s into %s (%s)", source, target, name)
        elif name is not None:
            get_run_logger().info("a clone into %s is already running (%s); waiting", target, name)
        if name is not None:
            wait_operation(environment, project, name, timeout=3500)
        state = describe(environment, project, target)
    get_run_logger().info("%s is %s, as %s was at %s", target, state.state, source, point_in_time)
    return state


@cloud_task(timeout_seconds=1800, task_run_name="sql-create-restore-target-{instance}")
def sql_create_restore_target(
    environment: str,
    project: str,
    instance: str,
    region: str,
    like: str | dict[str, Any],
    how: RestoreKind = "backup-run",
) -> InstanceState:
    """Create an empty instance like ``like``: a live instance (project:instance) whose
    settings are read, or a spec a backup recorded (for a source that may be gone);
    labelled as a restore's (``how``), for a backup run or exports to go into.

    Idempotent: a labelled instance of that name (a retried call) is waited for and
    returned; an unlabelled one is refused, never written into.
    """
    with calling("sql-create-restore-target", f"{project}:{instance}"):
        try:
            current: InstanceState | None = describe(environment, project, instance)
        except gexc.NotFound:
            current = None
        if current is not None and RESTORE_LABEL not in current.labels:
            raise PermanentError(
                f"target_instance: {project}:{instance} exists and is not a restore's"
            )
        body: dict[str, Any] = {}
        labels: dict[str, str] = {RESTORE_LABEL: how}
        if current is None and isinstance(like, dict):
            body = sqladmin.insert_body(instance, region, like, labels)
        elif current is None and isinstance(like, str):
            like_project, _, like_name = like.rpartition(":")
            source = read_instance(environment, like_project or project, like_name)
            body = {
                "name": instance,
                "region": region,
                "databaseVersion": source.database_version,
                "settings": sqladmin.settings_like(source, labels, replica=False),
            }
        insert_and_wait(environment, project, instance, "CREATE", body, exists=current is not None)
        return describe(environment, project, instance)
