"""The backend's resources in Cloud SQL Admin's REST JSON: camelCase, enum names, int64 as text.

Field names and types follow the sqladmin v1 discovery document (the contract tests
validate every reply against it); int64 fields (``BackupRun.id``, ``backupId``,
``settingsVersion``) are JSON strings there, as Google sends them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lab.sql.resources import DATABASE_VERSION, BackupRun, Instance, Operation

API_ROOT = "https://sqladmin.googleapis.com/v1"
_LINK = API_ROOT + "/projects/{project}/instances/{instance}"


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z, as the API writes ``google-datetime`` fields."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _compact(body: dict[str, Any]) -> dict[str, Any]:
    """Unset fields are absent from Google's JSON, never null."""
    return {k: v for k, v in body.items() if v is not None}


def instance_json(inst: Instance) -> dict[str, Any]:
    settings = {
        **inst.settings,
        "kind": "sql#settings",
        "tier": inst.tier,
        "userLabels": dict(inst.labels),
        "settingsVersion": str(inst.settings_version),
        "activationPolicy": "ALWAYS",
        "availabilityType": inst.settings.get("availabilityType", "ZONAL"),
    }
    return _compact(
        {
            "kind": "sql#instance",
            "name": inst.name,
            "project": inst.project,
            "region": inst.region,
            "gceZone": f"{inst.region}-a",
            "databaseVersion": inst.database_version,
            "databaseInstalledVersion": f"{inst.database_version}_LAB",
            "backendType": "SECOND_GEN",
            "instanceType": inst.instance_type,
            "masterInstanceName": f"{inst.project}:{inst.master}" if inst.master else None,
            "replicaNames": list(inst.replicas) or None,
            "state": inst.state,
            "ipAddresses": [{"type": ip_type, "ipAddress": inst.host} for ip_type in inst.ip_types],
            "connectionName": f"{inst.project}:{inst.region}:{inst.name}",
            "selfLink": _LINK.format(project=inst.project, instance=inst.name),
            "createTime": timestamp(inst.create_time),
            "settings": settings,
        }
    )


def operation_json(op: Operation) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "sql#operation",
        "name": op.name,
        "status": op.status,
        "operationType": op.operation_type,
        "targetId": op.target,
        "targetProject": op.project,
        "targetLink": _LINK.format(project=op.project, instance=op.target),
        "selfLink": f"{API_ROOT}/projects/{op.project}/operations/{op.name}",
        "user": "lab@lifeboat.local",
        "insertTime": timestamp(op.insert_time),
        "startTime": timestamp(op.start_time),
        "endTime": timestamp(op.end_time),
    }
    if op.errors:
        body["error"] = {
            "kind": "sql#operationErrors",
            "errors": [
                {"kind": "sql#operationError", "code": e.code, "message": e.message}
                for e in op.errors
            ],
        }
    if op.export_uri is not None:
        body["exportContext"] = {
            "kind": "sql#exportContext",
            "uri": op.export_uri,
            "databases": op.export_databases,
            "fileType": "SQL",
        }
    if op.import_uri is not None:
        body["importContext"] = {
            "kind": "sql#importContext",
            "uri": op.import_uri,
            "database": op.import_database,
            "fileType": "SQL",
        }
    if op.backup_id is not None:
        body["backupContext"] = {"kind": "sql#backupContext", "backupId": str(op.backup_id)}
    return _compact(body)


def backup_run_json(run: BackupRun) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "sql#backupRun",
        "id": str(run.id),
        "status": run.status,
        "type": "ON_DEMAND",
        "backupKind": "SNAPSHOT",
        "description": run.description or None,
        "instance": run.instance,
        "location": run.region,
        "databaseVersion": DATABASE_VERSION,
        "enqueuedTime": timestamp(run.enqueued_time),
        "startTime": timestamp(run.start_time),
        "endTime": timestamp(run.end_time),
        "selfLink": f"{_LINK.format(project=run.project, instance=run.instance)}"
        f"/backupRuns/{run.id}",
    }
    if run.error:
        body["error"] = {"kind": "sql#operationError", "code": "ERROR_RDBMS", "message": run.error}
    return _compact(body)


def matches_filter(rest: dict[str, Any], expression: str) -> bool:
    """The subset of Google's list filter drills use, e.g. ``settings.userLabels.drill:true``.

    Terms are ANDed; each is ``path:value`` or ``path=value`` over the REST JSON, and
    ``path:*`` asks only that the field is set. Raises ValueError on anything else.
    """
    for term in expression.split():
        if term.upper() == "AND":
            continue
        path, sep, expected = term.partition("=") if "=" in term else term.partition(":")
        if not sep or not path or not expected:
            raise ValueError(f"cannot read the term {term!r}")
        node: Any = rest
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        expected = expected.strip("\"'")
        if node is None or (expected != "*" and str(node) != expected):
            return False
    return True


def user_json(project: str, instance: str, name: str) -> dict[str, Any]:
    """A ``User`` as users.list returns it: a built-in user, never its password."""
    return {
        "kind": "sql#user",
        "name": name,
        "host": "",
        "instance": instance,
        "project": project,
        "type": "BUILT_IN",
    }


def database_json(project: str, instance: str, name: str) -> dict[str, Any]:
    """A ``Database`` as databases.list returns it (PostgreSQL's UTF8 and en_US.UTF8)."""
    return {
        "kind": "sql#database",
        "charset": "UTF8",
        "collation": "en_US.UTF8",
        "name": name,
        "instance": instance,
        "project": project,
        "selfLink": f"{_LINK.format(project=project, instance=instance)}/databases/{name}",
    }
