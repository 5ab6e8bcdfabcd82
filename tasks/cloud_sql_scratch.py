"""Scratch Cloud SQL instances for recovery drills, labelled so a sweeper finds any leak.

Labels: ``lifeboat-drill`` names the drill, ``lifeboat-expires`` holds the expiry in
epoch seconds (label values allow only lowercase letters, digits, ``-`` and ``_``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from prefect import get_run_logger

from lifeboat import runtime, sqladmin
from tasks.cloud_sql import InstanceState, describe, insert_and_wait, instance_state, read_instance
from tasks.cloud_sql_operations import join_or_start, patch_and_wait, running_operation, wait_idle
from tasks.errors import PermanentError, TransientError
from tasks.retrying import calling, cloud_task

DRILL_LABEL = "lifeboat-drill"
EXPIRES_LABEL = "lifeboat-expires"
SCRATCH_PREFIX = "recovery-test-"


def scratch_labels(drill_id: str, expires_at: datetime) -> dict[str, str]:
    return {DRILL_LABEL: drill_id, EXPIRES_LABEL: str(int(expires_at.timestamp()))}


def expiry(state: InstanceState) -> datetime | None:
    """When a labelled scratch instance may be swept; None when it carries no valid label."""
    raw = state.labels.get(EXPIRES_LABEL, "")
    return datetime.fromtimestamp(int(raw), UTC) if raw.isdigit() else None


@cloud_task(timeout_seconds=1800, task_run_name="sql-create-scratch-{instance}")
def sql_create_scratch_instance(
    environment: str,
    project: str,
    instance: str,
    region: str,
    labels: dict[str, str],
    like: str | dict[str, Any] | None = None,
) -> InstanceState:
    """Create an empty primary instance carrying ``labels`` and wait until it runs.

    ``like`` names an instance (``project:instance``) whose live settings the scratch
    copies (database version, tier, edition, network, flags, backups), or is the spec a
    backup recorded of it (the source need not be there): a restore needs the source's
    version, and the drill must reach the scratch the way it reaches the source.

    Idempotent: an instance of that name with the same drill label (a retried call) is
    waited for and returned; any other instance of that name is a permanent error, never
    reused, because a drill must not write into something it did not create.
    """
    with calling("sql-create-scratch", f"{project}:{instance}"):
        try:
            current: InstanceState | None = describe(environment, project, instance)
        except gexc.NotFound:
            current = None
        if current is not None and current.labels.get(DRILL_LABEL) != labels.get(DRILL_LABEL):
            raise PermanentError(
                f"sql-create-scratch: {project}:{instance} exists and is not this drill's"
            )
        body: dict[str, Any] = {}
        if current is None and isinstance(like, dict):
            body = sqladmin.insert_body(instance, region, like, labels)
        elif current is None:
            body = {"name": instance, "region": region}
            if isinstance(like, str):
                like_project, _, like_name = like.rpartition(":")
                source = read_instance(environment, like_project or project, like_name)
                body["databaseVersion"] = source.database_version
                body["settings"] = sqladmin.settings_like(source, labels, replica=False)
            else:
                body["settings"] = {"userLabels": labels}
        insert_and_wait(environment, project, instance, "CREATE", body, exists=current is not None)
        state = describe(environment, project, instance)
    get_run_logger().info("scratch instance %s:%s is %s", project, instance, state.state)
    return state


@cloud_task(timeout_seconds=3600, task_run_name="sql-restore-{instance}")
def sql_restore_backup_run(
    environment: str,
    project: str,
    instance: str,
    source_project: str,
    source_instance: str,
    backup_run_id: int,
) -> None:
    """Restore a backup run of ``source_instance`` into ``instance`` and wait.

    Idempotent: a restore already running on the instance (a retried call) is waited for
    instead of starting a second; a repeated restore replaces the scratch data with the
    same backup, so the result does not change.
    """
    body = {
        "restoreBackupContext": {
            "backupRunId": str(backup_run_id),
            "instanceId": source_instance,
            "project": source_project,
        }
    }
    with calling("sql-restore", f"{project}:{instance} ← {source_instance}#{backup_run_id}"):
        join_or_start(
            environment,
            project,
            instance,
            "RESTORE_VOLUME",
            lambda s: s.instances().restoreBackup(project=project, instance=instance, body=body),
            timeout=3500,
        )
    get_run_logger().info(
        "restored backup run %s of %s into %s", backup_run_id, source_instance, instance
    )


@cloud_task(timeout_seconds=120, task_run_name="sql-list-scratch")
def sql_list_scratch_instances(environment: str, projects: list[str]) -> list[InstanceState]:
    """Instances that carry a drill label or a scratch name, in the given projects.

    Idempotent: a read.
    """
    factory = runtime.clients(environment)
    found: list[InstanceState] = []
    for project in dict.fromkeys(projects):
        with calling("sql-list-scratch", project):
            for item in _list_instances(factory.sql, project, runtime.call_timeout(environment)):
                state = instance_state(project, sqladmin.Instance.model_validate(item))
                if DRILL_LABEL in state.labels or state.name.startswith(SCRATCH_PREFIX):
                    found.append(state)
    return found


def _list_instances(api: sqladmin.SqlAdmin, project: str, timeout: float) -> Iterator[Any]:
    return api.pages(lambda s, token: s.instances().list(project=project, pageToken=token), timeout)


@cloud_task(timeout_seconds=900, task_run_name="sql-claim-scratch-{instance}")
def sql_claim_scratch(
    environment: str, project: str, instance: str, labels: dict[str, str]
) -> bool:
    """Make a clone a drill's scratch: its labels, so that cleanup and the sweeper find it,
    and no deletion protection, so that they can delete it. A clone takes its source's
    settings, labels and protection included (gcloud sql instances clone: "the same data
    and settings"). Returns whether this call changed anything.

    Idempotent: a clone already claimed is not written again; an update already running
    on it (a retried call) is waited for, not started twice.
    """
    resource = f"{project}:{instance}"
    with calling("sql-claim-scratch", resource):
        current = describe(environment, project, instance)
        labelled = all(current.labels.get(k) == v for k, v in labels.items())
        if labelled and not current.deletion_protection:
            return False
        if running_operation(environment, project, instance, "UPDATE") is None:
            wait_idle(environment, project, instance, "claiming")  # its clone, still running
            current = describe(environment, project, instance)
        # userLabels is one map that a patch replaces: the source's labels are kept.
        settings = {"userLabels": {**current.labels, **labels}, "deletionProtectionEnabled": False}
        patch_and_wait(environment, project, instance, settings)
        # The update joined may have been another one: check that ours took.
        now = describe(environment, project, instance)
        if now.deletion_protection or any(now.labels.get(k) != v for k, v in labels.items()):
            raise TransientError(f"sql-claim-scratch: {resource} is not claimed yet")
    return True
