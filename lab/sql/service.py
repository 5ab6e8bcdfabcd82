"""gRPC handlers for Cloud SQL Admin v1: read the request, call the backend, shape the reply."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.cloud.sqladmin_v1 import types as sql

from lab.core.context import LabContext
from lab.core.grpc_support import guarded
from lab.sql.exceptions import InvalidRequest
from lab.sql.models import SqlBackend
from lab.sql.wire import (
    backup_run_to_proto,
    instance_to_proto,
    matches_filter,
    operation_to_proto,
    to_rest,
)

_PREFIX = "google.cloud.sql.v1."


def _project(request: Any) -> str:
    if not request.project:
        raise InvalidRequest("The request needs a project.")
    return str(request.project)


def _enum_name(value: Any) -> str:
    """An enum's API name, or "" when unspecified (proto3 cannot tell unset from zero)."""
    return "" if int(value) == 0 else str(value.name)


class _Instances:
    def __init__(self, backend: SqlBackend):
        self.b = backend

    def get(self, r: sql.SqlInstancesGetRequest, _: Any) -> sql.DatabaseInstance:
        return instance_to_proto(self.b.get_instance(_project(r), r.instance))

    def list(self, r: sql.SqlInstancesListRequest, _: Any) -> sql.InstancesListResponse:
        items = [instance_to_proto(i) for i in self.b.list_instances(_project(r))]
        if r.filter:
            try:
                items = [i for i in items if matches_filter(to_rest(i), r.filter)]
            except ValueError as exc:
                raise InvalidRequest(f"Invalid filter {r.filter!r}: {exc}") from exc
        return sql.InstancesListResponse(kind="sql#instancesList", items=items)

    def insert(self, r: sql.SqlInstancesInsertRequest, _: Any) -> sql.Operation:
        body = r.body
        op = self.b.insert_instance(
            _project(r),
            body.name,
            body.region,
            master=body.master_instance_name or None,
            tier=body.settings.tier,
            labels=dict(body.settings.user_labels),
            database_version=_enum_name(body.database_version),
        )
        return operation_to_proto(op)

    def delete(self, r: sql.SqlInstancesDeleteRequest, _: Any) -> sql.Operation:
        return operation_to_proto(self.b.delete_instance(_project(r), r.instance))

    def promote_replica(self, r: sql.SqlInstancesPromoteReplicaRequest, _: Any) -> sql.Operation:
        return operation_to_proto(self.b.promote_replica(_project(r), r.instance))

    def restore_backup(self, r: sql.SqlInstancesRestoreBackupRequest, _: Any) -> sql.Operation:
        context = r.body.restore_backup_context
        if not context.backup_run_id:
            raise InvalidRequest("restoreBackupContext.backupRunId is required.")
        op = self.b.restore_backup(
            _project(r),
            r.instance,
            backup_run_id=int(context.backup_run_id),
            source_instance=context.instance_id,
            source_project=context.project,
        )
        return operation_to_proto(op)

    def export(self, r: sql.SqlInstancesExportRequest, _: Any) -> sql.Operation:
        context = r.body.export_context
        op = self.b.export_instance(
            _project(r),
            r.instance,
            uri=context.uri,
            databases=list(context.databases),
            file_type=_enum_name(context.file_type),
        )
        return operation_to_proto(op)

    def patch(self, r: sql.SqlInstancesPatchRequest, _: Any) -> sql.Operation:
        settings = r.body.settings
        op = self.b.patch_instance(
            _project(r),
            r.instance,
            tier=settings.tier or None,
            labels=dict(settings.user_labels) or None,
        )
        return operation_to_proto(op)

    def restart(self, r: sql.SqlInstancesRestartRequest, _: Any) -> sql.Operation:
        return operation_to_proto(self.b.restart_instance(_project(r), r.instance))

    def failover(self, r: sql.SqlInstancesFailoverRequest, _: Any) -> sql.Operation:
        return operation_to_proto(self.b.failover_instance(_project(r), r.instance))


class _BackupRuns:
    def __init__(self, backend: SqlBackend):
        self.b = backend

    def insert(self, r: sql.SqlBackupRunsInsertRequest, _: Any) -> sql.Operation:
        op = self.b.insert_backup_run(_project(r), r.instance, r.body.description)
        return operation_to_proto(op)

    def list(self, r: sql.SqlBackupRunsListRequest, _: Any) -> sql.BackupRunsListResponse:
        runs = self.b.list_backup_runs(_project(r), r.instance)
        return sql.BackupRunsListResponse(
            kind="sql#backupRunsList", items=[backup_run_to_proto(x) for x in runs]
        )

    def get(self, r: sql.SqlBackupRunsGetRequest, _: Any) -> sql.BackupRun:
        return backup_run_to_proto(self.b.get_backup_run(_project(r), r.instance, int(r.id)))

    def delete(self, r: sql.SqlBackupRunsDeleteRequest, _: Any) -> sql.Operation:
        return operation_to_proto(self.b.delete_backup_run(_project(r), r.instance, int(r.id)))


class _Operations:
    def __init__(self, backend: SqlBackend):
        self.b = backend

    def get(self, r: sql.SqlOperationsGetRequest, _: Any) -> sql.Operation:
        return operation_to_proto(self.b.get_operation(_project(r), r.operation))

    def list(self, r: sql.SqlOperationsListRequest, _: Any) -> sql.OperationsListResponse:
        ops = self.b.list_operations(_project(r), r.instance)
        return sql.OperationsListResponse(
            kind="sql#operationsList", items=[operation_to_proto(o) for o in ops]
        )


# (gRPC method, handler attribute, request type, response type) per service.
_Route = tuple[str, str, Any, Any]
_INSTANCES: list[_Route] = [
    ("Get", "get", sql.SqlInstancesGetRequest, sql.DatabaseInstance),
    ("List", "list", sql.SqlInstancesListRequest, sql.InstancesListResponse),
    ("Insert", "insert", sql.SqlInstancesInsertRequest, sql.Operation),
    ("Delete", "delete", sql.SqlInstancesDeleteRequest, sql.Operation),
    ("PromoteReplica", "promote_replica", sql.SqlInstancesPromoteReplicaRequest, sql.Operation),
    ("RestoreBackup", "restore_backup", sql.SqlInstancesRestoreBackupRequest, sql.Operation),
    ("Export", "export", sql.SqlInstancesExportRequest, sql.Operation),
    ("Patch", "patch", sql.SqlInstancesPatchRequest, sql.Operation),
    ("Restart", "restart", sql.SqlInstancesRestartRequest, sql.Operation),
    ("Failover", "failover", sql.SqlInstancesFailoverRequest, sql.Operation),
]
_BACKUP_RUNS: list[_Route] = [
    ("Insert", "insert", sql.SqlBackupRunsInsertRequest, sql.Operation),
    ("List", "list", sql.SqlBackupRunsListRequest, sql.BackupRunsListResponse),
    ("Get", "get", sql.SqlBackupRunsGetRequest, sql.BackupRun),
    ("Delete", "delete", sql.SqlBackupRunsDeleteRequest, sql.Operation),
]
_OPERATIONS: list[_Route] = [
    ("Get", "get", sql.SqlOperationsGetRequest, sql.Operation),
    ("List", "list", sql.SqlOperationsListRequest, sql.OperationsListResponse),
]


def generic_handlers(ctx: LabContext, backend: SqlBackend) -> list[grpc.GenericRpcHandler]:
    """One generic handler per service, each method wrapped in the lab's ``guarded``."""
    services: list[tuple[str, object, list[_Route]]] = [
        ("SqlInstancesService", _Instances(backend), _INSTANCES),
        ("SqlBackupRunsService", _BackupRuns(backend), _BACKUP_RUNS),
        ("SqlOperationsService", _Operations(backend), _OPERATIONS),
    ]
    result = []
    for service, impl, routes in services:
        methods = {}
        for method, attribute, request_type, response_type in routes:
            handler: Callable[[Any, grpc.ServicerContext], Any] = getattr(impl, attribute)
            methods[method] = grpc.unary_unary_rpc_method_handler(
                guarded(ctx, "sql", method, handler),
                request_deserializer=request_type.deserialize,
                response_serializer=response_type.serialize,
            )
        result.append(grpc.method_handlers_generic_handler(_PREFIX + service, methods))
    return result
