"""Backups and point-in-time recovery on a primary that was a replica until a switch.

Cloud SQL keeps automated backups and PITR on primaries only: a read replica has none,
and a promotion does not turn them on. So after a failover (or a failback) the instance
taking writes cannot be restored to any moment until they are set. Google turns them on
for an existing primary with a patch of ``settings.backupConfiguration``
(``pointInTimeRecoveryEnabled``, ``transactionLogRetentionDays``: 1-7 days for Enterprise,
1-35 for Enterprise Plus; cloud.google.com/sql/docs/postgres/backup-recovery/configure-pitr),
which needs ``cloudsql.instances.update``.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from prefect import get_run_logger
from pydantic import BaseModel

from tasks.cloud_sql import read_instance
from tasks.cloud_sql_operations import patch_and_wait
from tasks.errors import TransientError
from tasks.retrying import calling, cloud_task

# The fields of BackupConfiguration a patch may set (sql/docs/postgres/admin-api/rest/v1/
# instances#backupconfiguration) that a new primary should share with the old one; the
# others (kind, backupTier, transactionalLogStorageState) are Google's output. Not
# ``location``: pinned to the old primary's region, it would keep the new primary's
# backups in the region that failed; left out, Cloud SQL picks the multi-region nearest it.
WRITABLE = (
    "enabled",
    "startTime",
    "pointInTimeRecoveryEnabled",
    "transactionLogRetentionDays",
    "backupRetentionSettings",
    "binaryLogEnabled",
)


class BackupsKept(BaseModel):
    instance: str
    changed: bool
    like: str | None  # the instance whose settings were copied; None: the topology's alone
    configuration: dict[str, Any]

    def describe(self) -> str:
        days = self.configuration.get("transactionLogRetentionDays")
        what = f"backups and PITR on {self.instance}, {days} days of logs"
        origin = f"as {self.like} had" if self.like else "as the topology asks"
        return f"{what} ({origin})" if self.changed else f"{what} already"


def wanted_backups(like: dict[str, Any] | None, pitr_log_days: int) -> dict[str, Any]:
    """The backup configuration a new primary gets: the old one's writable settings (its
    backup window and retention, not its location), with backups and PITR on and at least
    ``pitr_log_days`` of logs, however the old one was set."""
    wanted = {k: v for k, v in (like or {}).items() if k in WRITABLE}
    kept = int(wanted.get("transactionLogRetentionDays") or 0)
    wanted |= {
        "enabled": True,
        "pointInTimeRecoveryEnabled": True,
        "transactionLogRetentionDays": max(kept, pitr_log_days),
    }
    return wanted


def has_backups(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """Whether ``current`` already protects as ``wanted`` asks: on, PITR on, and logs kept
    at least as long. Other settings an operator changed since are not overwritten."""
    current = current or {}
    return (
        bool(current.get("enabled"))
        and bool(current.get("pointInTimeRecoveryEnabled"))
        and int(current.get("transactionLogRetentionDays") or 0)
        >= int(wanted["transactionLogRetentionDays"])
    )


def _configuration(environment: str, project: str, instance: str) -> dict[str, Any] | None:
    config = read_instance(environment, project, instance).settings.backup_configuration
    return None if config is None else config.model_dump(by_alias=True, exclude_unset=True)


@cloud_task(timeout_seconds=900, task_run_name="sql-keep-backups-{instance}")
def sql_keep_backups(
    environment: str,
    project: str,
    instance: str,
    like_project: str,
    like_instance: str,
    pitr_log_days: int,
) -> BackupsKept:
    """Give ``instance`` the backup settings of ``like_instance`` (the primary it replaces;
    gone, it gives none), with PITR on and at least ``pitr_log_days`` of logs, and wait.

    Idempotent: an instance already protected is left alone; an update already running on
    it (a retried or resumed call) is waited for, not started twice.
    """
    resource = f"{project}:{instance}"
    with calling("sql-keep-backups", resource):
        try:
            like = _configuration(environment, like_project, like_instance)
        except gexc.NotFound:
            like = None
        origin = like_instance if like else None
        wanted = wanted_backups(like, pitr_log_days)
        if has_backups(_configuration(environment, project, instance), wanted):
            return BackupsKept(instance=instance, changed=False, like=origin, configuration=wanted)
        patch_and_wait(environment, project, instance, {"backupConfiguration": wanted})
        # The operation joined may have been another update: check that ours took.
        if not has_backups(_configuration(environment, project, instance), wanted):
            raise TransientError(f"sql-keep-backups: {resource} has no PITR yet")
    get_run_logger().info("backups and point-in-time recovery are on for %s", resource)
    return BackupsKept(instance=instance, changed=True, like=origin, configuration=wanted)
