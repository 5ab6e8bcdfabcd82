"""Google's discovery client (REST) against the lab's Cloud SQL emulator and real PostgreSQL.

Every reply is validated against the sqladmin v1 discovery document, so an invented
field or a wrong enum fails here before any product code reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httplib2
import psycopg
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from lab.core.context import LabContext
from lab.core.faults import FaultRule
from lab.core.serve import ThreadedServer
from lab.core.settings import LabSettings
from lab.sql import SqlBackend, create
from tests.contract.conftest import free_port
from tests.discovery import assert_valid

PROJECT = "lifeboat-lab"
PRIMARY, REPLICA = "orders-primary", "orders-replica"


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
    url: str
    api: Any  # the discovery Resource
    storage: FakeStorage = field(default_factory=FakeStorage)

    def run(self, request: Any, schema: str) -> dict[str, Any]:
        """Execute one request and check the reply against Google's schema."""
        body: dict[str, Any] = request.execute(num_retries=0)
        assert_valid("sqladmin.v1", schema, body)
        return body

    def wait(self, op: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Poll operations.get until DONE, as callers of the real API must."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.run(
                self.api.operations().get(project=PROJECT, operation=op["name"]), "Operation"
            )
            if current["status"] == "DONE" or time.monotonic() > deadline:
                return current
            time.sleep(0.05)

    def get(self, name: str) -> dict[str, Any]:
        return self.run(
            self.api.instances().get(project=PROJECT, instance=name), "DatabaseInstance"
        )

    def promote(self, name: str) -> dict[str, Any]:
        return self.run(
            self.api.instances().promoteReplica(project=PROJECT, instance=name), "Operation"
        )


def discovery_client(url: str) -> Any:
    """The client Google documents for Cloud SQL Admin in Python, from its bundled document."""
    return build(
        "sqladmin",
        "v1",
        http=httplib2.Http(timeout=10),
        static_discovery=True,
        client_options={"api_endpoint": url},
    )


def error_of(exc: HttpError) -> dict[str, Any]:
    """Google's error JSON: {"error": {"code", "message", "status", "errors": [...]}}."""
    body: dict[str, Any] = json.loads(exc.content)["error"]
    return body


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    settings = LabSettings(
        root=tmp_path_factory.mktemp("sql-lab"),
        time_scale=0.002,
        pg_address_prefix="127.0.77.",
        pg_port=free_port(),
    )
    ctx = LabContext.create(settings)
    backend, app = create(ctx)
    server = ThreadedServer(app, "127.0.0.1", free_port(), "sql")
    server.start()
    lab = Lab(ctx, backend, server.url, discovery_client(server.url))
    ctx.backends["storage"] = lab.storage
    backend.create_instance(PROJECT, PRIMARY, "us-central1", databases=["orders"])
    backend.create_instance(PROJECT, REPLICA, "us-east1", databases=[], master=PRIMARY)
    with psycopg.connect(backend.dsn(PROJECT, PRIMARY, "orders"), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
        conn.execute("INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 500) g")
    yield lab
    server.stop()
    backend.shutdown()
    ctx.scheduler.stop()


def _orders_replicated(
    backend: SqlBackend, primary: str, replica: str, count: int, timeout: float
) -> None:
    """Create ``orders`` with ``count`` rows on the primary; wait until the replica has them."""
    with psycopg.connect(backend.dsn(PROJECT, primary, "orders"), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        conn.execute(f"INSERT INTO orders SELECT generate_series(1, {count})".encode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _rows(backend, replica) == count:
                break
        except psycopg.errors.UndefinedTable:  # the CREATE TABLE has not replayed yet
            pass
        time.sleep(0.05)
    assert _rows(backend, replica) == count


def _rows(backend: SqlBackend, instance: str, query: str = "SELECT count(*) FROM orders") -> int:
    with psycopg.connect(backend.dsn(PROJECT, instance, "orders")) as conn:
        row = conn.execute(query.encode()).fetchone()
        assert row is not None
        return int(row[0])


def _running(pid: int) -> bool:
    """Whether the process runs; a zombie awaiting its reaper does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # reaped before the open, or the read
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

    assert primary["instanceType"] == "CLOUD_SQL_INSTANCE"
    assert primary["state"] == "RUNNABLE"
    assert primary["databaseVersion"] == "POSTGRES_15"
    assert primary["replicaNames"] == [REPLICA]
    assert primary["connectionName"] == f"{PROJECT}:us-central1:{PRIMARY}"
    host, port = lab.backend.address(PROJECT, PRIMARY)
    assert primary["ipAddresses"][0]["ipAddress"] == host and host.startswith("127.0.77.")
    assert port == lab.ctx.settings.pg_port
    assert primary["settings"]["settingsVersion"] == "1"  # int64 travels as a string
    assert replica["instanceType"] == "READ_REPLICA_INSTANCE"
    assert replica["masterInstanceName"] == f"{PROJECT}:{PRIMARY}"
    assert "replicaNames" not in replica  # unset fields are absent, never null
    listed = _all_instances(lab)
    assert {PRIMARY, REPLICA} <= {i["name"] for i in listed}
    assert lab.backend.primaries_in_region("us-central1")[0] == (PROJECT, PRIMARY)
    assert lab.backend.primaries_in_region("us-east1") == []


def _all_instances(lab: Lab, **query: Any) -> list[dict[str, Any]]:
    """Every page of instances.list, following nextPageToken as Google requires."""
    items: list[dict[str, Any]] = []
    request = lab.api.instances().list(project=PROJECT, **query)
    while request is not None:
        page = lab.run(request, "InstancesListResponse")
        items += page.get("items", [])
        request = lab.api.instances().list_next(request, page)
    return items


def test_lists_are_paged_and_an_empty_list_has_no_items(lab: Lab) -> None:
    for n in range(3):
        lab.backend.create_instance(PROJECT, f"paged-{n}", "us-central1", databases=[])
    first = lab.run(
        lab.api.instances().list(project=PROJECT, maxResults=2), "InstancesListResponse"
    )
    assert len(first["items"]) == 2 and first["nextPageToken"]
    names = [i["name"] for i in _all_instances(lab, maxResults=2)]
    assert len(names) == len(set(names)) and {f"paged-{n}" for n in range(3)} <= set(names)
    default_page = lab.run(lab.api.instances().list(project=PROJECT), "InstancesListResponse")
    assert "nextPageToken" in default_page  # the lab's default page is small on purpose
    empty = lab.run(lab.api.instances().list(project="no-such-project"), "InstancesListResponse")
    assert empty == {"kind": "sql#instancesList"}
    with pytest.raises(HttpError) as bad:
        lab.run(lab.api.instances().list(project=PROJECT, pageToken="garbage"), "x")
    assert bad.value.status_code == 400


def test_databases_list_names_every_database_at_once_but_cloud_sqls_own(lab: Lab) -> None:
    reply = lab.run(
        lab.api.databases().list(project=PROJECT, instance=PRIMARY), "DatabasesListResponse"
    )
    names = [d["name"] for d in reply["items"]]
    assert {"orders", "postgres"} <= set(names) and "cloudsqladmin" not in names
    assert "nextPageToken" not in reply  # databases.list has no pages
    assert {(d["project"], d["instance"]) for d in reply["items"]} == {(PROJECT, PRIMARY)}
    with pytest.raises(HttpError) as missing:
        lab.run(lab.api.databases().list(project=PROJECT, instance="no-such-instance"), "x")
    assert missing.value.status_code == 404


def test_gcloud_path_reaches_the_same_instances(lab: Lab) -> None:
    """gcloud speaks the same REST API under /sql/v1beta4/ (reference/gcp-clients.md)."""
    import httpx

    reply = httpx.get(f"{lab.url}/sql/v1beta4/projects/{PROJECT}/instances/{PRIMARY}", timeout=10)
    assert reply.status_code == 200
    assert reply.json()["name"] == PRIMARY
    assert_valid("sqladmin.v1beta4", "DatabaseInstance", reply.json())
    missing = httpx.get(f"{lab.url}/sql/v1beta4/projects/{PROJECT}/instances/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


def test_unknown_instance_is_not_found_in_googles_error_shape(lab: Lab) -> None:
    with pytest.raises(HttpError) as got:
        lab.get("no-such-instance")
    error = error_of(got.value)
    assert got.value.status_code == 404 and error["code"] == 404
    assert error["errors"][0]["reason"] == "instanceDoesNotExist"
    with pytest.raises(HttpError) as promoted:
        lab.promote("no-such-instance")
    assert promoted.value.status_code == 404
    with pytest.raises(HttpError) as unknown:
        lab.run(lab.api.instances().truncateLog(project=PROJECT, instance=PRIMARY, body={}), "x")
    assert unknown.value.status_code == 404


def test_promoting_a_primary_is_invalid(lab: Lab) -> None:
    with pytest.raises(HttpError) as got:
        lab.promote(PRIMARY)
    assert got.value.status_code == 400
    assert "not a read replica" in error_of(got.value)["message"]


def test_insert_without_a_name_is_refused(lab: Lab) -> None:
    with pytest.raises(HttpError) as got:
        lab.run(lab.api.instances().insert(project=PROJECT, body={"region": "us-east1"}), "x")
    assert got.value.status_code == 400 and "name" in error_of(got.value)["message"]


def test_injected_fault_reaches_the_client(lab: Lab) -> None:
    lab.ctx.faults.add(
        FaultRule(api="sql", method="GET", path=f"instances/{PRIMARY}$", status=503, count=1)
    )
    with pytest.raises(HttpError) as got:
        lab.get(PRIMARY)
    assert got.value.status_code == 503
    assert lab.get(PRIMARY)["name"] == PRIMARY


def test_region_outage_blocks_admin_operations_not_reads(lab: Lab) -> None:
    lab.ctx.set_outage("us-east1", True)
    try:
        with pytest.raises(HttpError) as got:
            lab.promote(REPLICA)
        assert got.value.status_code == 503
        assert lab.get(REPLICA)["name"] == REPLICA
    finally:
        lab.ctx.set_outage("us-east1", False)


def test_an_operation_is_pending_then_running_then_done(lab: Lab) -> None:
    """Operation.status: PENDING ("queued, but has not started yet"), RUNNING, DONE; a
    client that treats "not RUNNING" as finished stops at the first poll."""
    # 1 s PENDING, then 1 s RUNNING, at time_scale 0.002.
    lab.ctx.latency.configure(overrides={"sql.pending": 500.0, "sql.patch": 500.0})
    body = {"settings": {"userLabels": {"queued": "yes"}}}
    try:
        op = lab.run(
            lab.api.instances().patch(project=PROJECT, instance=PRIMARY, body=body), "Operation"
        )
        seen, pending_polls = [op["status"]], 0
        while seen[-1] != "DONE":
            time.sleep(0.05)
            got = lab.run(
                lab.api.operations().get(project=PROJECT, operation=op["name"]), "Operation"
            )
            if got["status"] != seen[-1]:
                seen.append(got["status"])
            if got["status"] == "PENDING":
                pending_polls += 1
                assert "startTime" not in got and "queued" not in lab.get(PRIMARY)["settings"].get(
                    "userLabels", {}
                )
    finally:
        lab.ctx.latency.configure(overrides={"sql.pending": 5.0, "sql.patch": 30.0})
    assert seen == ["PENDING", "RUNNING", "DONE"]
    assert pending_polls >= 3  # PENDING lasts: polls see it, not only the insert's reply
    assert lab.get(PRIMARY)["settings"]["userLabels"]["queued"] == "yes"


def test_second_operation_while_one_runs_is_operation_in_progress(lab: Lab) -> None:
    lab.ctx.latency.configure(overrides={"sql.patch": 500.0})  # 1 s at time_scale 0.002
    body = {"settings": {"userLabels": {"drill": "d-42"}}}
    patch = lab.api.instances().patch(project=PROJECT, instance=PRIMARY, body=body)
    try:
        first = lab.run(patch, "Operation")
        with pytest.raises(HttpError) as second:
            lab.run(lab.api.instances().patch(project=PROJECT, instance=PRIMARY, body=body), "x")
    finally:
        lab.ctx.latency.configure(overrides={"sql.patch": 30.0})
    assert second.value.status_code == 409
    assert error_of(second.value)["errors"][0]["reason"] == "operationInProgress"
    assert "drill" not in lab.get(PRIMARY)["settings"]["userLabels"]
    done = lab.wait(first)
    assert done["operationType"] == "UPDATE" and "error" not in done
    assert lab.get(PRIMARY)["settings"]["userLabels"]["drill"] == "d-42"


def test_real_promote_makes_the_replica_writable(lab: Lab) -> None:
    b = lab.backend
    b.create_instance(PROJECT, "promo-primary", "us-central1", databases=["orders"])
    b.create_instance(PROJECT, "promo-replica", "us-east1", databases=[], master="promo-primary")
    _orders_replicated(b, "promo-primary", "promo-replica", 1000, timeout=10)
    lag = b.replica_lag(PROJECT, "promo-replica")
    assert lag["streaming"] and lag["bytes"] >= 0 and lag["seconds"] >= 0
    assert not b.accepts_writes(PROJECT, "promo-replica")

    op = lab.promote("promo-replica")
    assert op["status"] in ("PENDING", "RUNNING")
    done = lab.wait(op)

    assert done["operationType"] == "PROMOTE_REPLICA"
    assert "error" not in done, done
    assert b.accepts_writes(PROJECT, "promo-replica")
    with psycopg.connect(b.dsn(PROJECT, "promo-replica", "orders"), autocommit=True) as conn:
        conn.execute("INSERT INTO orders VALUES (1001)")
    promoted, old_primary = lab.get("promo-replica"), lab.get("promo-primary")
    assert promoted["instanceType"] == "CLOUD_SQL_INSTANCE"
    assert "masterInstanceName" not in promoted
    assert "replicaNames" not in old_primary
    listed = lab.run(
        lab.api.operations().list(project=PROJECT, instance="promo-replica"),
        "OperationsListResponse",
    )
    assert [o["name"] for o in listed["items"]] == [op["name"]]


def test_backup_run_then_restore_into_another_instance(lab: Lab) -> None:
    # Users are instance-wide in Cloud SQL: a restore brings the roles the grants name.
    with psycopg.connect(lab.backend.dsn(PROJECT, PRIMARY, "orders"), autocommit=True) as conn:
        conn.execute("CREATE ROLE orders_app LOGIN")
        conn.execute("GRANT SELECT ON orders TO orders_app")
    runs = lab.api.backupRuns()
    op = lab.run(runs.insert(project=PROJECT, instance=PRIMARY, body={}), "Operation")
    assert op["operationType"] == "BACKUP_VOLUME"
    done = lab.wait(op)
    assert "error" not in done, done
    backup_id = done["backupContext"]["backupId"]
    assert isinstance(backup_id, str) and int(backup_id) > 2**31  # int64 as a string
    run = lab.run(runs.get(project=PROJECT, instance=PRIMARY, id=backup_id), "BackupRun")
    assert run["status"] == "SUCCESSFUL"
    listed = lab.run(runs.list(project=PROJECT, instance=PRIMARY), "BackupRunsListResponse")
    assert backup_id in [r["id"] for r in listed["items"]]
    lab.backend.create_instance(PROJECT, "restore-target", "us-east1", databases=[])

    def restore(run_id: str) -> Any:
        context = {"backupRunId": run_id, "instanceId": PRIMARY, "project": PROJECT}
        return lab.api.instances().restoreBackup(
            project=PROJECT, instance="restore-target", body={"restoreBackupContext": context}
        )

    restored = lab.wait(lab.run(restore(backup_id), "Operation"))

    assert restored["operationType"] == "RESTORE_VOLUME"
    assert "error" not in restored, restored
    assert _rows(lab.backend, "restore-target") == _rows(lab.backend, PRIMARY) == 500
    grant = "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = 'orders_app'"
    assert _rows(lab.backend, "restore-target", grant) == 1
    with pytest.raises(HttpError) as missing:
        lab.run(restore("12345"), "Operation")
    assert missing.value.status_code == 404

    dropped = lab.wait(
        lab.run(runs.delete(project=PROJECT, instance=PRIMARY, id=backup_id), "Operation")
    )
    assert dropped["operationType"] == "DELETE_BACKUP"
    assert "error" not in dropped, dropped
    with pytest.raises(HttpError) as gone:
        lab.run(runs.get(project=PROJECT, instance=PRIMARY, id=backup_id), "BackupRun")
    assert gone.value.status_code == 404


def _export(lab: Lab, instance: str, uri: str, database: str = "orders") -> dict[str, Any]:
    body = {"exportContext": {"uri": uri, "databases": [database], "fileType": "SQL"}}
    return lab.run(
        lab.api.instances().export(project=PROJECT, instance=instance, body=body), "Operation"
    )


def test_export_writes_plain_sql_into_cloud_storage(lab: Lab) -> None:
    done = lab.wait(_export(lab, REPLICA, "gs://dr-exports/orders.sql"))

    assert done["operationType"] == "EXPORT"
    assert "error" not in done, done
    assert done["exportContext"]["uri"] == "gs://dr-exports/orders.sql"
    data, content_type = lab.storage.objects[("dr-exports", "orders.sql")]
    assert content_type == "application/sql"
    assert b"CREATE TABLE public.orders" in data and b"item 500" in data
    with pytest.raises(HttpError) as bad:
        _export(lab, REPLICA, "/tmp/not-gcs.sql")
    assert bad.value.status_code == 400
    del lab.ctx.backends["storage"]
    try:
        failed = lab.wait(_export(lab, REPLICA, "gs://dr-exports/again.sql"))
    finally:
        lab.ctx.backends["storage"] = lab.storage
    assert (
        failed["status"] == "DONE" and "Storage emulator" in failed["error"]["errors"][0]["message"]
    )


def test_a_postgres_failure_ends_the_operation_with_its_error(lab: Lab) -> None:
    done = lab.wait(_export(lab, PRIMARY, "gs://dr-exports/x.sql", database="no_such_db"))

    assert done["status"] == "DONE"  # DONE with errors: the API does not raise
    assert done["error"]["errors"][0]["code"] == "ERROR_RDBMS"
    assert "no_such_db" in done["error"]["errors"][0]["message"]


def test_an_accepted_promotion_can_end_with_an_error_and_no_change(lab: Lab) -> None:
    """The lab's control arms it (``fail_operations``): the operation is accepted and runs
    its modelled time, then ends DONE with the error; the replica stays one, and
    replicates again. The next promotion, not armed, goes through."""
    b = lab.backend
    b.create_instance(PROJECT, "armed-primary", "us-central1", databases=["orders"])
    b.create_instance(PROJECT, "armed-replica", "us-east1", databases=[], master="armed-primary")
    b.fail_operations("PROMOTE_REPLICA", "INTERNAL_ERROR", "armed by the test", 1)

    op = lab.promote("armed-replica")
    assert op["status"] in ("PENDING", "RUNNING")
    done = lab.wait(op)

    assert done["status"] == "DONE"
    assert [(e["code"], e["message"]) for e in done["error"]["errors"]] == [
        ("INTERNAL_ERROR", "armed by the test")
    ]
    assert lab.get("armed-replica")["instanceType"] == "READ_REPLICA_INSTANCE"
    assert not b.accepts_writes(PROJECT, "armed-replica")
    # It replicates again (the lab's guess; lab/FIDELITY.md): a later write reaches it.
    _orders_replicated(b, "armed-primary", "armed-replica", 10, timeout=30)
    again = lab.wait(lab.promote("armed-replica"))
    assert "error" not in again, again
    assert lab.get("armed-replica")["instanceType"] == "CLOUD_SQL_INSTANCE"


def test_insert_replica_keeps_the_settings_it_was_given_then_delete_leaves_nothing(
    lab: Lab,
) -> None:
    settings = {
        "tier": "db-custom-1-3840",
        "userLabels": {"lifeboat-drill": "d-7"},
        "edition": "ENTERPRISE",
        "ipConfiguration": {
            "ipv4Enabled": False,
            "privateNetwork": "projects/p/global/networks/vpc",
        },
        "databaseFlags": [{"name": "max_connections", "value": "200"}],
    }
    body = {
        "name": "scratch-replica",
        "region": "europe-west1",
        "masterInstanceName": PRIMARY,
        "settings": settings,
    }
    op = lab.run(lab.api.instances().insert(project=PROJECT, body=body), "Operation")
    assert op["operationType"] == "CREATE_REPLICA"
    assert lab.get("scratch-replica")["state"] == "PENDING_CREATE"
    with pytest.raises(HttpError) as taken:
        lab.run(lab.api.instances().insert(project=PROJECT, body=body), "Operation")
    assert taken.value.status_code == 409
    done = lab.wait(op)
    assert "error" not in done, done
    scratch = lab.get("scratch-replica")
    assert scratch["instanceType"] == "READ_REPLICA_INSTANCE"
    assert scratch["settings"]["userLabels"]["lifeboat-drill"] == "d-7"
    assert scratch["settings"]["tier"] == "db-custom-1-3840"
    assert scratch["settings"]["ipConfiguration"]["privateNetwork"].endswith("/vpc")
    assert scratch["settings"]["databaseFlags"] == settings["databaseFlags"]
    assert [ip["type"] for ip in scratch["ipAddresses"]] == ["PRIVATE"]
    assert "scratch-replica" in lab.get(PRIMARY)["replicaNames"]
    assert _rows(lab.backend, "scratch-replica") == 500
    cluster = lab.backend.get_instance(PROJECT, "scratch-replica").cluster
    pid = cluster.pid()
    assert pid is not None and _running(pid)

    deleted = lab.wait(
        lab.run(
            lab.api.instances().delete(project=PROJECT, instance="scratch-replica"), "Operation"
        )
    )

    assert deleted["operationType"] == "DELETE"
    assert "error" not in deleted, deleted
    with pytest.raises(HttpError):
        lab.get("scratch-replica")
    assert _gone(pid)
    assert not cluster.base.exists()
    assert "scratch-replica" not in lab.get(PRIMARY).get("replicaNames", [])


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


def test_only_a_network_the_instance_allows_can_connect(lab: Lab) -> None:
    """A public IP with no authorized network accepts no connection (configure-ip)."""
    networks = {
        "closed-public": {"ipv4Enabled": True},
        "authorized": {"ipv4Enabled": True, "authorizedNetworks": [{"value": "127.0.0.0/8"}]},
        "elsewhere": {"ipv4Enabled": True, "authorizedNetworks": [{"value": "10.0.0.0/8"}]},
        "private": {"ipv4Enabled": False, "privateNetwork": "projects/p/global/networks/vpc"},
    }
    ops = [
        lab.run(
            lab.api.instances().insert(
                project=PROJECT,
                body={"name": name, "region": "us-east1", "settings": {"ipConfiguration": ip}},
            ),
            "Operation",
        )
        for name, ip in networks.items()
    ]
    for op in ops:
        assert "error" not in lab.wait(op)

    def connects(name: str) -> bool:
        address = lab.get(name)["ipAddresses"][0]["ipAddress"]
        try:
            with psycopg.connect(
                host=address,
                port=lab.ctx.settings.pg_port,
                user="postgres",
                dbname="postgres",
                connect_timeout=5,
            ):
                return True
        except psycopg.OperationalError as exc:
            assert "pg_hba.conf rejects" in str(exc)
            return False

    assert {name: connects(name) for name in networks} == {
        "closed-public": False,
        "authorized": True,
        "elsewhere": False,
        "private": True,
    }
    # The lab itself still reaches every instance (Cloud SQL's own cloudsqladmin).
    assert all(lab.backend.accepts_writes(PROJECT, name) for name in networks)


# -- Google's own CLI, an independent client -------------------------------------------------
GCLOUD = shutil.which("gcloud")


def gcloud(lab: Lab, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run gcloud with only the sql API overridden to the lab (never Google).

    The configuration is written as ``gcloud config set`` writes it, which saves a CLI
    start per property.
    """
    profile = config / "configurations" / "config_default"
    if not profile.exists():
        profile.parent.mkdir(parents=True)
        profile.write_text(
            "[auth]\ndisable_credentials = true\n"
            "[component_manager]\ndisable_update_check = true\n"
            f"[core]\ndisable_usage_reporting = true\nproject = {PROJECT}\n"
            f"[api_endpoint_overrides]\nsql = {lab.url}/\n"
        )
        (config / "active_config").write_text("default")
    return subprocess.run(
        [GCLOUD or "gcloud", *args, "-q"],
        env={**os.environ, "CLOUDSDK_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(GCLOUD is None, reason="gcloud (Google Cloud CLI) is not installed")
def test_a_promotion_stops_replication_when_it_starts_running(lab: Lab) -> None:
    """ "Promoting a replica stops replication": a write the primary acknowledges once the
    promote operation runs is not on the promoted instance, though one acknowledged
    before it started is (the replica had caught up)."""
    b = lab.backend
    b.create_instance(PROJECT, "cut-primary", "us-central1", databases=["orders"])
    b.create_instance(PROJECT, "cut-replica", "us-east1", databases=[], master="cut-primary")
    primary = b.dsn(PROJECT, "cut-primary", "orders")
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        conn.execute("INSERT INTO orders VALUES (1)")

    def replica_rows() -> int:
        try:
            return _rows(b, "cut-replica")
        except psycopg.errors.UndefinedTable:  # the CREATE TABLE has not replayed yet
            return 0

    deadline = time.monotonic() + 10
    while replica_rows() != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert replica_rows() == 1
    # 1 s PENDING, then 2 s RUNNING, at time_scale 0.002.
    lab.ctx.latency.configure(overrides={"sql.pending": 500.0, "sql.promote": 1000.0})
    try:
        op = lab.promote("cut-replica")
        while (
            lab.run(lab.api.operations().get(project=PROJECT, operation=op["name"]), "Operation")[
                "status"
            ]
            == "PENDING"
        ):
            time.sleep(0.05)
        time.sleep(0.3)  # the walreceiver has stopped
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute("INSERT INTO orders VALUES (2)")  # acknowledged by the old primary
        done = lab.wait(op)
    finally:
        lab.ctx.latency.configure(overrides={"sql.pending": 5.0, "sql.promote": 180.0})
    assert done["status"] == "DONE" and "error" not in done, done
    assert b.accepts_writes(PROJECT, "cut-replica")
    assert _rows(b, "cut-replica", "SELECT count(*) FROM orders WHERE id = 2") == 0
    assert _rows(b, "cut-replica") == 1


def test_gcloud_reads_and_promotes_through_the_lab(lab: Lab, tmp_path: Path) -> None:
    described = gcloud(lab, tmp_path, "sql", "instances", "describe", PRIMARY, "--format=json")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["name"] == PRIMARY
    listed = gcloud(lab, tmp_path, "sql", "instances", "list", "--format=value(name)")
    assert listed.returncode == 0 and {PRIMARY, REPLICA} <= set(listed.stdout.split())
    missing = gcloud(lab, tmp_path, "sql", "instances", "describe", "nope")
    assert missing.returncode != 0 and "does not exist" in missing.stderr

    lab.backend.create_instance(PROJECT, "cli-primary", "us-central1", databases=["orders"])
    lab.backend.create_instance(
        PROJECT, "cli-replica", "us-east1", databases=[], master="cli-primary"
    )
    promoted = gcloud(lab, tmp_path, "sql", "instances", "promote-replica", "cli-replica")
    assert promoted.returncode == 0, promoted.stderr  # gcloud waits for the operation
    assert lab.get("cli-replica")["instanceType"] == "CLOUD_SQL_INSTANCE"
    ops = gcloud(
        lab,
        tmp_path,
        "sql",
        "operations",
        "list",
        "--instance=cli-replica",
        "--format=value(operationType,status)",
    )
    assert ops.returncode == 0 and ops.stdout.split() == ["PROMOTE_REPLICA", "DONE"]
    again = gcloud(lab, tmp_path, "sql", "instances", "promote-replica", "cli-replica")
    assert again.returncode != 0 and "not a read replica" in again.stderr
    backup = gcloud(lab, tmp_path, "sql", "backups", "create", "--instance=cli-primary")
    assert backup.returncode == 0, backup.stderr
    runs = gcloud(
        lab, tmp_path, "sql", "backups", "list", "--instance=cli-primary", "--format=value(status)"
    )
    assert runs.returncode == 0 and runs.stdout.split() == ["SUCCESSFUL"]


def test_a_protected_instance_refuses_delete_until_the_protection_is_lifted(lab: Lab) -> None:
    lab.backend.create_instance(
        PROJECT,
        "kept",
        "us-central1",
        databases=["orders"],
        settings={"deletionProtectionEnabled": True},
    )
    assert lab.get("kept")["settings"]["deletionProtectionEnabled"] is True
    with pytest.raises(HttpError) as got:
        lab.run(lab.api.instances().delete(project=PROJECT, instance="kept"), "Operation")
    assert got.value.status_code == 400
    assert error_of(got.value)["message"].startswith("The instance is protected.")
    assert lab.get("kept")["state"] == "RUNNABLE"  # refused before any change

    with pytest.raises(HttpError) as bad:
        lab.run(
            lab.api.instances().patch(
                project=PROJECT,
                instance="kept",
                body={"settings": {"deletionProtectionEnabled": "no"}},
            ),
            "Operation",
        )
    # Google names the field as proto does (lab/core/discovery.py, proto_path).
    assert bad.value.status_code == 400 and "deletion_protection_enabled" in str(bad.value)

    lab.wait(
        lab.run(
            lab.api.instances().patch(
                project=PROJECT,
                instance="kept",
                body={"settings": {"deletionProtectionEnabled": False}},
            ),
            "Operation",
        )
    )
    assert lab.get("kept")["settings"]["deletionProtectionEnabled"] is False
    lab.wait(lab.run(lab.api.instances().delete(project=PROJECT, instance="kept"), "Operation"))
    with pytest.raises(HttpError):
        lab.get("kept")


@pytest.mark.skipif(GCLOUD is None, reason="gcloud (Google Cloud CLI) is not installed")
def test_gcloud_delete_is_refused_on_a_protected_instance(lab: Lab, tmp_path: Path) -> None:
    lab.backend.create_instance(
        PROJECT,
        "cli-kept",
        "us-central1",
        databases=["orders"],
        settings={"deletionProtectionEnabled": True},
    )
    refused = gcloud(lab, tmp_path, "sql", "instances", "delete", "cli-kept")
    assert refused.returncode != 0 and "The instance is protected" in refused.stderr
    lifted = gcloud(
        lab, tmp_path, "sql", "instances", "patch", "cli-kept", "--no-deletion-protection"
    )
    assert lifted.returncode == 0, lifted.stderr
    assert lab.get("cli-kept")["settings"]["deletionProtectionEnabled"] is False
    deleted = gcloud(lab, tmp_path, "sql", "instances", "delete", "cli-kept")
    assert deleted.returncode == 0, deleted.stderr
