"""Cloud SQL deletion protection: lifted only for an instance whose data was exported first.

An instance with ``settings.deletionProtectionEnabled`` refuses ``instances.delete`` with
HTTP 400 "The instance is protected" (sql/docs/deletion-protection). Lifeboat never lifts
it on its own initiative: the failback lifts it on an instance it has just exported and
verified, and says so in its plan and record.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from prefect import get_run_logger

from tasks.cloud_sql import describe
from tasks.cloud_sql_operations import patch_and_wait
from tasks.errors import TransientError
from tasks.retrying import calling, cloud_task


@cloud_task(timeout_seconds=900, task_run_name="sql-deletion-protection-{instance}-{enabled}")
def sql_set_deletion_protection(
    environment: str, project: str, instance: str, enabled: bool
) -> bool:
    """Turn deletion protection on or off and wait; returns whether this call changed it.

    Idempotent: an instance already in that state, or gone, is left alone; an update
    already running on it (a retried call) is waited for, not started twice.
    """
    resource = f"{project}:{instance}"
    with calling("sql-deletion-protection", resource):
        try:
            current = describe(environment, project, instance)
        except gexc.NotFound:
            return False
        if current.deletion_protection == enabled:
            return False
        patch_and_wait(environment, project, instance, {"deletionProtectionEnabled": enabled})
        # The operation joined may have been someone else's update: check ours took.
        if describe(environment, project, instance).deletion_protection != enabled:
            raise TransientError(f"sql-deletion-protection: {resource} did not change yet")
    get_run_logger().info(
        "deletion protection on %s is now %s", resource, "on" if enabled else "off"
    )
    return True
