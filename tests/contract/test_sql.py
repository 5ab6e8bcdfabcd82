"""The real google-cloud-sql client against the lab's Cloud SQL emulator and real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
import pytest
from google.api_core import exceptions
from google.cloud import sqladmin_v1 as sql
from google.cloud.sqladmin_v1.services.sql_backup_runs_service.transports import (
    SqlBackupRunsServiceGrpcTransport,
)
from google.cloud.sqladmin_v1.services.sql_instances_service.transports import (
    SqlInstancesServiceGrpcTransport,
)
from google.cloud.sqladmin_v1.services.sql_operations_service.transports import (
    SqlOperationsServiceGrpcTransport,
)

from lab.core.context import LabContext
from lab.core.faults import FaultRule
from lab.core.settings import LabSettings
from lab.sql import SqlBackend, create
from lab.sql.wire import to_rest
from tests.contract.conftest import free_port
from tests.discovery import assert_valid

PROJECT = "lifeboat-lab"
PRIMARY, REPLICA = "orders-primary", "orders-replica"
DONE = sql.Operation.SqlOperationStatus.DONE
CALL = {"timeout": 10.0}


class FakeStorage:
    """The GCS emulator's one lab-internal seam (not a Google client), recorded in memory."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}

    def insert_object(
        self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> dict[str, str]:
        self.objects[(bucket, name)] = (data, content_type)
        return {"bucket": bucket, "name": name}


@dataclass
class Lab:
    ctx: LabContext
    backend: SqlBackend
    instances: sql.SqlInstancesServiceClient
    operations: sql.SqlOperationsServiceClient
    backup_runs: sql.SqlBackupRunsServiceClient
    storage: FakeStorage = field(default_factory=FakeStorage)

    def wait(self, op: sql.Operation, timeout: float = 30.0) -> sql.Operation:
        """Poll operations.get until DONE, as callers of the real API must."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.operations.get(
                request=sql.SqlOperationsGetRequest(project=PROJECT, operation=op.name), **CALL
            )
            if current.status == DONE or time.monotonic() > deadline:
                return current
            time.sleep(0.05)

    def get(self, name: str) -> sql.DatabaseInstance:
        return self.instances.get(
            request=sql.SqlInstancesGetRequest(project=PROJECT, instance=name), **CALL
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    settings = LabSettings(
        root=tmp_path_factory.mktemp("sql-lab"),
        time_scale=0.002,
        pg_address_prefix="127.0.77.",
        pg_port=free_port(),
    )
    ctx = LabContext.create(settings)
    port = free_port()
    backend, server = create(ctx, port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    lab = Lab(
        ctx,
        backend,
        sql.SqlInstancesServiceClient(transport=SqlInstancesServiceGrpcTransport(channel=channel)),
        sql.SqlOperationsServiceClient(
            transport=SqlOperationsServiceGrpcTransport(channel=channel)
        ),
        sql.SqlBackupRunsServiceClient(
            transport=SqlBackupRunsServiceGrpcTransport(channel=channel)
        ),
    )
    ctx.backends["storage"] = lab.storage
    backend.create_instance(PROJECT, PRIMARY, "us-central1", databases=["orders"])
    backend.create_instance(PROJECT, REPLICA, "us-east1", databases=[], master=PRIMARY)
    with psycopg.connect(backend.dsn(PROJECT, PRIMARY, "orders"), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
        conn.execute("INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 500) g")
    yield lab
    channel.close()
    server.stop(grace=None)
    backend.shutdown()
    ctx.scheduler.stop()


def _rows(backend: SqlBackend, instance: str, query: str = "SELECT count(*) FROM orders") -> int:
    with psycopg.connect(backend.dsn(PROJECT, instance, "orders")) as conn:
        row = conn.execute(query.encode()).fetchone()
        assert row is not None
        return int(row[0])


def _promote(instance: str) -> sql.SqlInstancesPromoteReplicaRequest:
    return sql.SqlInstancesPromoteReplicaRequest(project=PROJECT, instance=instance)


def _running(pid: int) -> bool:
    """Whether the process runs; a zombie awaiting its reaper does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone(pid: int) -> bool:
    """Whether the process ends within 2 s (pg_ctl stop returns as the postmaster exits)."""
    deadline = time.monotonic() + 2
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _running(pid)


def test_get_and_list_describe_primary_and_replica(lab: Lab) -> None:
    primary, replica = lab.get(PRIMARY), lab.get(REPLICA)

    assert primary.instance_type == sql.SqlInstanceType.CLOUD_SQL_INSTANCE
    assert primary.state == sql.DatabaseInstance.SqlInstanceState.RUNNABLE
    assert primary.database_version == sql.SqlDatabaseVersion.POSTGRES_15
    assert list(primary.replica_names) == [REPLICA]
    assert primary.connection_name == f"{PROJECT}:us-central1:{PRIMARY}"
    host, port = lab.backend.address(PROJECT, PRIMARY)
    assert primary.ip_addresses[0].ip_address == host and host.startswith("127.0.77.")
    assert port == lab.ctx.settings.pg_port
    assert replica.instance_type == sql.SqlInstanceType.READ_REPLICA_INSTANCE
    assert replica.master_instance_name == f"{PROJECT}:{PRIMARY}"
    listed = lab.instances.list(request=sql.SqlInstancesListRequest(project=PROJECT), **CALL)
    assert {PRIMARY, REPLICA} <= {i.name for i in listed.items}
    assert_valid("sqladmin.v1", "DatabaseInstance", lab.backend.describe_instance(PROJECT, REPLICA))
    assert lab.backend.primaries_in_region("us-central1")[0] == (PROJECT, PRIMARY)
    assert lab.backend.primaries_in_region("us-east1") == []


def test_unknown_instance_is_not_found(lab: Lab) -> None:
    with pytest.raises(exceptions.NotFound):
        lab.get("no-such-instance")
    with pytest.raises(exceptions.NotFound):
        lab.instances.promote_replica(request=_promote("no-such-instance"), **CALL)


def test_promoting_a_primary_is_invalid(lab: Lab) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="not a read replica"):
        lab.instances.promote_replica(request=_promote(PRIMARY), **CALL)


def test_injected_fault_reaches_the_client(lab: Lab) -> None:
    lab.ctx.faults.add(FaultRule(api="sql", method="Get", status=503, count=1))
    with pytest.raises(exceptions.ServiceUnavailable):
        lab.get(PRIMARY)
    assert lab.get(PRIMARY).name == PRIMARY


def test_region_outage_blocks_admin_operations_not_reads(lab: Lab) -> None:
    lab.ctx.set_outage("us-east1", True)
    try:
        with pytest.raises(exceptions.ServiceUnavailable):
            lab.instances.promote_replica(request=_promote(REPLICA), **CALL)
        assert lab.get(REPLICA).name == REPLICA
    finally:
        lab.ctx.set_outage("us-east1", False)


def test_second_operation_while_one_runs_is_operation_in_progress(lab: Lab) -> None:
    lab.ctx.latency.configure(overrides={"sql.patch": 500.0})  # 1 s at time_scale 0.002
    try:
        body = sql.DatabaseInstance(settings=sql.Settings(user_labels={"drill": "d-42"}))
        patch = sql.SqlInstancesPatchRequest(project=PROJECT, instance=PRIMARY, body=body)
        first = lab.instances.patch(request=patch, **CALL)
        with pytest.raises(exceptions.Aborted, match="operationInProgress"):
            lab.instances.patch(request=patch, **CALL)
    finally:
        lab.ctx.latency.configure(overrides={"sql.patch": 30.0})
    assert lab.get(PRIMARY).settings.user_labels.get("drill") is None
    done = lab.wait(first)
    assert done.operation_type == sql.Operation.SqlOperationType.UPDATE and not done.error.errors
    assert lab.get(PRIMARY).settings.user_labels["drill"] == "d-42"
    assert_valid("sqladmin.v1", "Operation", to_rest(done))


def test_real_promote_makes_the_replica_writable(lab: Lab) -> None:
    b = lab.backend
    b.create_instance(PROJECT, "promo-primary", "us-central1", databases=["orders"])
    b.create_instance(PROJECT, "promo-replica", "us-east1", databases=[], master="promo-primary")
    with psycopg.connect(b.dsn(PROJECT, "promo-primary", "orders"), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        conn.execute("INSERT INTO orders SELECT generate_series(1, 1000)")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if _rows(b, "promo-replica") == 1000:
                break
        except psycopg.errors.UndefinedTable:  # the CREATE TABLE has not replayed yet
            pass
        time.sleep(0.05)
    assert _rows(b, "promo-replica") == 1000
    lag = b.replica_lag(PROJECT, "promo-replica")
    assert lag["streaming"] and lag["bytes"] >= 0 and lag["seconds"] >= 0
    assert not b.accepts_writes(PROJECT, "promo-replica")

    op = lab.instances.promote_replica(request=_promote("promo-replica"), **CALL)
    done = lab.wait(op)

    assert done.operation_type == sql.Operation.SqlOperationType.PROMOTE_REPLICA
    assert not done.error.errors, done.error
    assert b.accepts_writes(PROJECT, "promo-replica")
    with psycopg.connect(b.dsn(PROJECT, "promo-replica", "orders"), autocommit=True) as conn:
        conn.execute("INSERT INTO orders VALUES (1001)")
    promoted, old_primary = lab.get("promo-replica"), lab.get("promo-primary")
    assert promoted.instance_type == sql.SqlInstanceType.CLOUD_SQL_INSTANCE
    assert promoted.master_instance_name == ""
    assert list(old_primary.replica_names) == []
    listed = lab.operations.list(
        request=sql.SqlOperationsListRequest(project=PROJECT, instance="promo-replica"), **CALL
    )
    assert [o.name for o in listed.items] == [op.name]


def test_backup_run_then_restore_into_another_instance(lab: Lab) -> None:
    op = lab.backup_runs.insert(
        request=sql.SqlBackupRunsInsertRequest(project=PROJECT, instance=PRIMARY), **CALL
    )
    assert op.operation_type == sql.Operation.SqlOperationType.BACKUP_VOLUME
    done = lab.wait(op)
    assert not done.error.errors, done.error
    backup_id = done.backup_context.backup_id
    get_run = sql.SqlBackupRunsGetRequest(project=PROJECT, instance=PRIMARY, id=backup_id)
    run = lab.backup_runs.get(request=get_run, **CALL)
    assert run.status == sql.SqlBackupRunStatus.SUCCESSFUL and run.id > 2**31
    listed = lab.backup_runs.list(
        request=sql.SqlBackupRunsListRequest(project=PROJECT, instance=PRIMARY), **CALL
    )
    assert backup_id in [r.id for r in listed.items]
    assert_valid("sqladmin.v1", "BackupRun", to_rest(run))
    lab.backend.create_instance(PROJECT, "restore-target", "us-east1", databases=[])

    context = sql.RestoreBackupContext(
        backup_run_id=backup_id, instance_id=PRIMARY, project=PROJECT
    )
    request = sql.SqlInstancesRestoreBackupRequest(
        project=PROJECT,
        instance="restore-target",
        body=sql.InstancesRestoreBackupRequest(restore_backup_context=context),
    )
    restored = lab.wait(lab.instances.restore_backup(request=request, **CALL))

    assert restored.operation_type == sql.Operation.SqlOperationType.RESTORE_VOLUME
    assert not restored.error.errors, restored.error
    assert _rows(lab.backend, "restore-target") == _rows(lab.backend, PRIMARY) == 500
    request.body.restore_backup_context.backup_run_id = 12345
    with pytest.raises(exceptions.NotFound):
        lab.instances.restore_backup(request=request, **CALL)

    by_id = sql.SqlBackupRunsDeleteRequest(project=PROJECT, instance=PRIMARY, id=backup_id)
    dropped = lab.wait(lab.backup_runs.delete(request=by_id, **CALL))
    assert dropped.operation_type == sql.Operation.SqlOperationType.DELETE_BACKUP
    assert not dropped.error.errors, dropped.error
    with pytest.raises(exceptions.NotFound):
        lab.backup_runs.get(request=get_run, **CALL)


def test_export_writes_plain_sql_into_cloud_storage(lab: Lab) -> None:
    def export(uri: str) -> sql.Operation:
        context = sql.ExportContext(uri=uri, databases=["orders"], file_type=sql.SqlFileType.SQL)
        body = sql.InstancesExportRequest(export_context=context)
        return lab.instances.export(
            request=sql.SqlInstancesExportRequest(project=PROJECT, instance=REPLICA, body=body),
            **CALL,
        )

    done = lab.wait(export("gs://dr-exports/orders.sql"))

    assert done.operation_type == sql.Operation.SqlOperationType.EXPORT
    assert not done.error.errors, done.error
    data, content_type = lab.storage.objects[("dr-exports", "orders.sql")]
    assert content_type == "application/sql"
    assert b"CREATE TABLE public.orders" in data and b"item 500" in data
    with pytest.raises(exceptions.InvalidArgument):
        export("/tmp/not-gcs.sql")
    del lab.ctx.backends["storage"]
    try:
        failed = lab.wait(export("gs://dr-exports/again.sql"))
    finally:
        lab.ctx.backends["storage"] = lab.storage
    assert failed.status == DONE and "Storage emulator" in failed.error.errors[0].message


def test_a_postgres_failure_ends_the_operation_with_its_error(lab: Lab) -> None:
    context = sql.ExportContext(uri="gs://dr-exports/x.sql", databases=["no_such_db"])
    body = sql.InstancesExportRequest(export_context=context)
    request = sql.SqlInstancesExportRequest(project=PROJECT, instance=PRIMARY, body=body)

    done = lab.wait(lab.instances.export(request=request, **CALL))

    assert done.status == DONE
    assert done.error.errors[0].code == "ERROR_RDBMS"
    assert "no_such_db" in done.error.errors[0].message


def test_insert_replica_then_delete_leaves_nothing_behind(lab: Lab) -> None:
    body = sql.DatabaseInstance(
        name="scratch-replica",
        region="europe-west1",
        master_instance_name=PRIMARY,
        settings=sql.Settings(tier="db-custom-1-3840", user_labels={"lifeboat-drill": "d-7"}),
    )
    insert = sql.SqlInstancesInsertRequest(project=PROJECT, body=body)
    op = lab.instances.insert(request=insert, **CALL)
    assert op.operation_type == sql.Operation.SqlOperationType.CREATE_REPLICA
    assert lab.get("scratch-replica").state == sql.DatabaseInstance.SqlInstanceState.PENDING_CREATE
    with pytest.raises(exceptions.Conflict):
        lab.instances.insert(request=insert, **CALL)
    done = lab.wait(op)
    assert not done.error.errors, done.error
    scratch = lab.get("scratch-replica")
    assert scratch.instance_type == sql.SqlInstanceType.READ_REPLICA_INSTANCE
    assert scratch.settings.user_labels["lifeboat-drill"] == "d-7"
    assert "scratch-replica" in lab.get(PRIMARY).replica_names
    assert _rows(lab.backend, "scratch-replica") == 500
    cluster = lab.backend.get_instance(PROJECT, "scratch-replica").cluster
    pid = cluster.pid()
    assert pid is not None and _running(pid)

    deleted = lab.wait(
        lab.instances.delete(
            request=sql.SqlInstancesDeleteRequest(project=PROJECT, instance="scratch-replica"),
            **CALL,
        )
    )

    assert deleted.operation_type == sql.Operation.SqlOperationType.DELETE
    assert not deleted.error.errors, deleted.error
    with pytest.raises(exceptions.NotFound):
        lab.get("scratch-replica")
    assert _gone(pid)
    assert not cluster.base.exists()
    assert "scratch-replica" not in lab.get(PRIMARY).replica_names


def test_shutdown_stops_every_cluster(tmp_path: Path) -> None:
    settings = LabSettings(root=tmp_path, pg_address_prefix="127.0.78.", pg_port=free_port())
    ctx = LabContext.create(settings)
    backend = SqlBackend(ctx)
    try:
        backend.create_instance(PROJECT, "solo", "us-central1", databases=["app"])
        pid = backend.get_instance(PROJECT, "solo").cluster.pid()
        assert pid is not None and backend.accepts_writes(PROJECT, "solo")
    finally:
        backend.shutdown()
        ctx.scheduler.stop()
    assert _gone(pid)
