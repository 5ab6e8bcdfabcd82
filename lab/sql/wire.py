"""The backend's resources as Cloud SQL Admin v1 proto-plus messages (and REST JSON)."""

from __future__ import annotations

import json
from typing import Any

from google.cloud.sqladmin_v1 import types as sql

from lab.sql.resources import DATABASE_VERSION, BackupRun, Instance, Operation

_LINK = "https://sqladmin.googleapis.com/v1/projects/{project}/instances/{instance}"


def instance_to_proto(inst: Instance) -> sql.DatabaseInstance:
    return sql.DatabaseInstance(
        kind="sql#instance",
        name=inst.name,
        project=inst.project,
        region=inst.region,
        gce_zone=f"{inst.region}-a",
        database_version=DATABASE_VERSION,
        database_installed_version=f"{DATABASE_VERSION}_LAB",
        backend_type=sql.SqlBackendType.SECOND_GEN,
        instance_type=inst.instance_type,
        master_instance_name=f"{inst.project}:{inst.master}" if inst.master else "",
        replica_names=list(inst.replicas),
        state=inst.state,
        ip_addresses=[sql.IpMapping(type_=sql.SqlIpAddressType.PRIMARY, ip_address=inst.host)],
        connection_name=f"{inst.project}:{inst.region}:{inst.name}",
        self_link=_LINK.format(project=inst.project, instance=inst.name),
        create_time=inst.create_time,
        settings=sql.Settings(
            kind="sql#settings",
            tier=inst.tier,
            user_labels=dict(inst.labels),
            settings_version=inst.settings_version,
            activation_policy=sql.Settings.SqlActivationPolicy.ALWAYS,
            availability_type=sql.SqlAvailabilityType.ZONAL,
        ),
    )


def operation_to_proto(op: Operation) -> sql.Operation:
    link = _LINK.format(project=op.project, instance=op.target)
    message = sql.Operation(
        kind="sql#operation",
        name=op.name,
        status=op.status,
        operation_type=op.operation_type,
        target_id=op.target,
        target_project=op.project,
        target_link=link,
        self_link=f"https://sqladmin.googleapis.com/v1/projects/{op.project}/operations/{op.name}",
        user="lab@lifeboat.local",
        insert_time=op.insert_time,
        start_time=op.start_time,
        end_time=op.end_time,
    )
    if op.errors:
        message.error = sql.OperationErrors(
            kind="sql#operationErrors",
            errors=[
                sql.OperationError(kind="sql#operationError", code=e.code, message=e.message)
                for e in op.errors
            ],
        )
    if op.export_uri is not None:
        message.export_context = sql.ExportContext(
            kind="sql#exportContext",
            uri=op.export_uri,
            databases=op.export_databases,
            file_type=sql.SqlFileType.SQL,
        )
    if op.backup_id is not None:
        message.backup_context = sql.BackupContext(kind="sql#backupContext", backup_id=op.backup_id)
    return message


def backup_run_to_proto(run: BackupRun) -> sql.BackupRun:
    message = sql.BackupRun(
        kind="sql#backupRun",
        id=run.id,
        status=run.status,
        type_=sql.SqlBackupRunType.ON_DEMAND,
        backup_kind=sql.SqlBackupKind.SNAPSHOT,
        description=run.description,
        instance=run.instance,
        location=run.region,
        database_version=DATABASE_VERSION,
        enqueued_time=run.enqueued_time,
        start_time=run.start_time,
        end_time=run.end_time,
        self_link=f"{_LINK.format(project=run.project, instance=run.instance)}/backupRuns/{run.id}",
    )
    if run.error:
        message.error = sql.OperationError(
            kind="sql#operationError", code="ERROR_RDBMS", message=run.error
        )
    return message


def to_rest(message: Any) -> dict[str, Any]:
    """A message in the REST API's JSON shape: camelCase names, enum names."""
    text = type(message).to_json(message, use_integers_for_enums=False, indent=None)
    result: dict[str, Any] = json.loads(text)
    return result


def instance_json(inst: Instance) -> dict[str, Any]:
    return to_rest(instance_to_proto(inst))


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
