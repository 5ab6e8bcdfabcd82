"""The step both switches end with: backups and PITR on the instance they promoted."""

from __future__ import annotations

from flows.resume import resumable
from lifeboat.record import RunRecord
from lifeboat.topology import SqlInstanceRef, Topology
from tasks.cloud_sql_backup_config import sql_keep_backups


def backups_on_new_primary(
    topo: Topology, record: RunRecord, target: SqlInstanceRef, like: SqlInstanceRef
) -> None:
    """Give ``target`` the backup settings of ``like`` (a replica keeps none), as a step."""
    with record.step("backups-on-new-primary") as step:
        kept = resumable(sql_keep_backups, record, "backups")(
            topo.environment,
            target.project,
            target.instance,
            like.project,
            like.instance,
            topo.backups.pitr_log_days,
        )
        step.detail = kept.describe()
        if not kept.changed:
            step.outcome = "unchanged"
