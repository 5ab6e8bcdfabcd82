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

from collections.abc import Callable
from typing import Any

from prefect import get_run_logger

from lifeboat import sqladmin
from tasks.cloud_sql import read_instance
from tasks.cloud_sql_operations import (
    join_or_start,
    operations,
    sql_call,
    wait_idle,
    wait_operation,
)
from tasks.cloud_sql_pitr import IMPORT
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task


@cloud_task(timeout_seconds=120, task_run_name="sql-source-of-{instance}")
def sql_backup_source(
    environment: str, project: str, instance: str
) -> tuple[list[str], dict[str, Any]]:
    """What a restore from this instance's exports needs of it, read at backup time: its
    built-in users by name (never a password), and how to create an instance like it
    (region, database version, settings: tier, edition, network, flags, backups).

    Idempotent: reads.
    """
    with calling("sql-backup-source", f"{project}:{instance}"):
        got = sql_call(environment, lambda s: s.users().list(project=project, instance=instance))
        source = read_instance(environment, project, instance)
    users = sorted(
        str(u["name"]) for u in got.get("items", []) if u.get("type", "BUILT_IN") == "BUILT_IN"
    )
    spec = {
        "region": source.region,
        "databaseVersion": source.database_version,
        "settings": sqladmin.settings_like(source, {}, replica=False),
    }
    return users, spec


@cloud_task(timeout_seconds=1800, task_run_name="sql-prepare-import-{instance}")
def sql_prepare_import(
    environment: str, project: str, instance: str, users: list[str], databases: list[str]
) -> list[str]:
    """Create the users and the databases the dumps need that the instance lacks; returns
    what it created (``user:NAME``, ``database:NAME``).

    Idempotent: a create an earlier try left running is waited out before anything is
    listed (a name still being made is not listed yet), then what exists is left alone.
    """
    created: list[str] = []
    with calling("sql-prepare-import", f"{project}:{instance}"):
        wait_idle(environment, project, instance, "listing users and databases of")
        for collection, kind, wanted in (
            ("users", "CREATE_USER", users),
            ("databases", "CREATE_DATABASE", databases),
        ):
            have = set(_names(environment, _collection(collection, project, instance, "list")))
            for name in wanted:
                if name not in have:
                    start = _collection(collection, project, instance, "insert", {"name": name})
                    join_or_start(environment, project, instance, kind, start, timeout=850)
                    created.append(f"{collection.removesuffix('s')}:{name}")
    if created:
        get_run_logger().info("created on %s: %s", instance, ", ".join(created))
    return created


Start = Callable[[Any], Any]


def _collection(
    collection: str, project: str, instance: str, verb: str, body: dict[str, Any] | None = None
) -> Start:
    """A users or databases call on the instance. Created one at a time: the instance
    runs one operation at a time, so none of ours is running when the next starts."""
    extra = {} if body is None else {"body": body}

    def make(s: Any) -> Any:
        return getattr(getattr(s, collection)(), verb)(project=project, instance=instance, **extra)

    return make


def _names(environment: str, make: Start) -> list[str]:
    return [str(item["name"]) for item in sql_call(environment, make).get("items", [])]


@cloud_task(timeout_seconds=3600, task_run_name="sql-import-{database}-{instance}")
def sql_import_dump(environment: str, project: str, instance: str, database: str, uri: str) -> bool:
    """Import the SQL dump at ``uri`` into ``database``; returns False when an earlier try
    already imported it.

    Idempotent: an import into this database that finished is not repeated (its rows
    would be written twice, or its tables refused); one still running is waited for. One
    that failed, or one of another dump, leaves the database not the backup's: refused,
    naming the target, for a new one (or force, which replaces it).
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
        earlier = earlier_import(environment, project, instance, database)
        if earlier is not None and earlier.status != "DONE":
            wait_operation(environment, project, earlier.name, timeout=3500)
            earlier = earlier_import(environment, project, instance, database)
        if earlier is not None:
            refusal = import_refusal(earlier, resource, uri)
            if refusal:
                raise PermanentError(refusal)
            get_run_logger().info("%s was imported into %s already", uri, resource)
            return False
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


def import_refusal(op: sqladmin.Operation, resource: str, uri: str) -> str | None:
    """Why a database an earlier import finished in cannot take ``uri``, or None when that
    import was this dump's and succeeded."""
    context = op.import_context
    if op.failure:
        return (
            f"target_instance: an earlier import into {resource} failed ({op.failure}); "
            "the database may be half made: restore into a new target, or replace this "
            "one with force"
        )
    if context is None or context.uri != uri:
        other = context.uri if context else "another dump"
        return (
            f"target_instance: {resource} holds {other}, not {uri}: restore into a new "
            "target, or replace this one with force"
        )
    return None


def earlier_import(
    environment: str, project: str, instance: str, database: str
) -> sqladmin.Operation | None:
    """The newest import into ``database`` of this instance, if any. Operations list
    newest first, and the reading stops at the instance's creation: an instance of the same
    name deleted before (a forced restore replaces its target) had its own imports."""
    for op in operations(environment, project, instance):
        if op.operation_type == "CREATE":
            return None
        context = op.import_context
        if op.operation_type == IMPORT and context and context.database == database:
            return op
    return None
