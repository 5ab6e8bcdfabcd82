"""Cloud SQL from a backup's SQL exports: the users and databases an import needs, then
``instances.import`` of each dump.

An export is what outlives the instance, its backup runs and its region (backup runs go
when their instance is deleted), and it is what the cross-region copies carry. A dump of
one database holds neither its database nor the instance's users: Cloud SQL imports into
a database that exists, and the dump's grants fail on a role the instance lacks. So the
users the backup recorded are created first (without passwords: a backup never holds
one), then each database, then each dump is imported.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger

from lifeboat import sqladmin
from tasks.cloud_sql_operations import (
    join_or_start,
    operations,
    sql_call,
    wait_idle,
    wait_operation,
)
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task

IMPORT = "IMPORT"


@cloud_task(timeout_seconds=120, task_run_name="sql-users-{instance}")
def sql_list_users(environment: str, project: str, instance: str) -> list[str]:
    """The instance's built-in users, by name (never a password).

    Idempotent: a read.
    """
    with calling("sql-users", f"{project}:{instance}"):
        got = sql_call(environment, lambda s: s.users().list(project=project, instance=instance))
    return sorted(
        str(u["name"]) for u in got.get("items", []) if u.get("type", "BUILT_IN") == "BUILT_IN"
    )


@cloud_task(timeout_seconds=1800, task_run_name="sql-prepare-import-{instance}")
def sql_prepare_import(
    environment: str, project: str, instance: str, users: list[str], databases: list[str]
) -> list[str]:
    """Create the users and the databases the dumps need that the instance lacks; returns
    what it created (``user:NAME``, ``database:NAME``).

    Idempotent: what exists is left alone, and a create already running (a retried call)
    is joined, not started twice.
    """
    created: list[str] = []
    with calling("sql-prepare-import", f"{project}:{instance}"):
        have_users = set(
            _names(environment, lambda s: s.users().list(project=project, instance=instance))
        )
        for user in users:
            if user not in have_users:
                body = {"name": user}
                _create(
                    environment,
                    project,
                    instance,
                    "CREATE_USER",
                    lambda s, b=body: s.users().insert(project=project, instance=instance, body=b),
                )
                created.append(f"user:{user}")
        have_dbs = set(
            _names(environment, lambda s: s.databases().list(project=project, instance=instance))
        )
        for database in databases:
            if database not in have_dbs:
                body = {"name": database}
                _create(
                    environment,
                    project,
                    instance,
                    "CREATE_DATABASE",
                    lambda s, b=body: s.databases().insert(
                        project=project, instance=instance, body=b
                    ),
                )
                created.append(f"database:{database}")
    if created:
        get_run_logger().info("created on %s: %s", instance, ", ".join(created))
    return created


def _names(environment: str, make: Any) -> list[str]:
    return [str(item["name"]) for item in sql_call(environment, make).get("items", [])]


def _create(environment: str, project: str, instance: str, kind: str, start: Any) -> None:
    wait_idle(environment, project, instance, kind.lower())
    join_or_start(environment, project, instance, kind, start, timeout=850)


@cloud_task(timeout_seconds=3600, task_run_name="sql-import-{database}-{instance}")
def sql_import_dump(environment: str, project: str, instance: str, database: str, uri: str) -> bool:
    """Import the SQL dump at ``uri`` into ``database``; returns False when an earlier try
    already imported it.

    Idempotent: an import of this dump that finished is not repeated (its rows would be
    written twice, or its tables refused); one still running is waited for. One that
    failed leaves a half-made database, so the instance is refused: restore into a new one.
    """
    body = {
        "importContext": {
            "uri": uri,
            "database": database,
            "fileType": "SQL",
            "kind": "sql#importContext",
        }
    }
    resource = f"{project}:{instance}/{database}"
    with calling("sql-import", f"{resource} ← {uri}"):
        earlier = _earlier_import(environment, project, instance, database, uri)
        if earlier is not None and earlier.status != "DONE":
            wait_operation(environment, project, earlier.name, timeout=3500)
            return True
        if earlier is not None and earlier.failure:
            raise PermanentError(
                f"sql-import: an earlier import of {uri} into {resource} failed "
                f"({earlier.failure}); its database may be half made: restore into a new "
                "target, or replace this one (force)"
            )
        if earlier is not None:
            get_run_logger().info("%s was imported into %s already", uri, resource)
            return False
        wait_idle(environment, project, instance, "importing into")
        join_or_start(
            environment,
            project,
            instance,
            IMPORT,
            lambda s: s.instances().import_(project=project, instance=instance, body=body),
            timeout=3500,
        )
    get_run_logger().info("imported %s into %s", uri, resource)
    return True


def _earlier_import(
    environment: str, project: str, instance: str, database: str, uri: str
) -> sqladmin.Operation | None:
    """The newest import of this dump into this database, if any (operations list newest
    first)."""
    for op in operations(environment, project, instance):
        context = op.import_context
        if (
            op.operation_type == IMPORT
            and context
            and (context.uri, context.database) == (uri, database)
        ):
            return op
    return None
