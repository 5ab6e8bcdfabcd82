"""Cloud Resource Manager: which of the permissions Lifeboat needs the worker holds."""

from __future__ import annotations

from google.api_core import exceptions as gexc
from prefect import get_run_logger

from lifeboat import runtime
from lifeboat.iam_check import batches
from tasks.errors import PermanentError, is_transient
from tasks.retrying import calling, cloud_task


@cloud_task(timeout_seconds=120, task_run_name="iam-test-permissions-{project}")
def resource_manager_held_permissions(
    environment: str, project: str, permissions: list[str]
) -> list[str]:
    """The permissions of ``permissions`` the worker's identity holds on ``project``.

    Asks ``projects.testIamPermissions`` (Resource Manager v3), at most 100 permissions a
    call, as Google allows. The call itself needs no permission. A 503 or a timeout is
    retried (the whole task, by ``cloud_task``); a 403 means the project does not exist
    or the worker may not see it (Resource Manager answers both alike): a
    ``PermanentError`` saying so, which readiness shows on the project's row.

    Args:
        environment: the environment whose endpoints and credentials are used.
        project: the project id.
        permissions: the permission names to ask about (no wildcards).

    Returns:
        The held subset, in the order asked.

    Idempotent: a read; it changes nothing.
    """
    client = runtime.clients(environment).projects
    timeout = runtime.call_timeout(environment)
    held: list[str] = []
    with calling("iam-test-permissions", f"projects/{project}"):
        for batch in batches(permissions):
            try:
                answer = client.test_iam_permissions(
                    request={"resource": f"projects/{project}", "permissions": batch},
                    # Lifeboat's task retries transient failures, with its own backoff.
                    retry=None,
                    timeout=timeout,
                )
            except gexc.Forbidden as exc:
                if is_transient(exc):
                    raise
                # The REST client's message starts with the method and URL: keep Google's
                # words only, after the reason (readiness cuts a row's detail short).
                said = str(exc.message).rpartition(": ")[2]
                raise PermanentError(
                    f"Resource Manager refused to test permissions on project {project} "
                    "(403): the project does not exist or the worker's identity cannot "
                    f"see it; Google said: {said}"
                ) from exc
            held.extend(answer.permissions)
    get_run_logger().info(
        "project %s: the worker holds %d of %d permissions asked",
        project,
        len(held),
        len(permissions),
    )
    return held
