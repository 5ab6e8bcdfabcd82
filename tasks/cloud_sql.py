"""Cloud SQL: describe instances, measure replica lag, promote a replica."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime, sqladmin
from lifeboat.secrets import read_secret
from tasks.cloud_sql_operations import (
    join_or_start,
    running_operation,
    sql_call,
    wait_idle,
    wait_operation,
)
from tasks.errors import PermanentError, TransientError
from tasks.retrying import calling, cloud_task


class InstanceState(BaseModel):
    project: str
    name: str
    region: str
    state: str
    instance_type: str
    master: str | None
    replica_names: list[str]
    address: str | None
    labels: dict[str, str] = {}
    deletion_protection: bool = False

    @property
    def is_replica(self) -> bool:
        return self.instance_type == "READ_REPLICA_INSTANCE"


class ReplicaLag(BaseModel):
    """Data at risk if the replica were promoted now."""

    seconds: float
    bytes: int
    measured_at: datetime
    source: str


class PromoteResult(BaseModel):
    instance: str
    changed: bool
    operation: str | None
    before: InstanceState
    after: InstanceState


def read_instance(environment: str, project: str, instance: str) -> sqladmin.Instance:
    """The instance as the API describes it, settings included."""
    got = sql_call(environment, lambda s: s.instances().get(project=project, instance=instance))
    return sqladmin.Instance.model_validate(got)


def describe(environment: str, project: str, instance: str) -> InstanceState:
    return instance_state(project, read_instance(environment, project, instance))


def instance_state(project: str, got: sqladmin.Instance) -> InstanceState:
    # The address apps and Lifeboat connect to: the private one when the instance has it.
    by_type = {ip.type: ip.ip_address for ip in got.ip_addresses}
    address = by_type.get("PRIVATE") or by_type.get("PRIMARY")
    return InstanceState(
        project=project,
        name=got.name,
        region=got.region,
        state=got.state,
        instance_type=got.instance_type,
        master=got.master_instance_name or None,
        replica_names=list(got.replica_names),
        address=address,
        labels=dict(got.settings.user_labels),
        deletion_protection=bool(got.settings.deletion_protection_enabled),
    )


@cloud_task(timeout_seconds=120, task_run_name="sql-describe-{instance}")
def sql_describe_instance(environment: str, project: str, instance: str) -> InstanceState:
    """Read an instance's type, state, master and address.

    Idempotent: a read.
    """
    with calling("sql-describe", f"{project}:{instance}"):
        return describe(environment, project, instance)


@cloud_task(timeout_seconds=120, task_run_name="sql-live-primary")
def sql_live_primary(environment: str) -> InstanceState:
    """The instance that takes writes now, as Cloud SQL reports it, not as the file names it.

    The topology's replica becomes a primary only through a failover's promotion, which
    leaves the old primary stale: so a promoted replica is the live primary, and the
    topology's primary is it only while it is not a replica itself (after a failback it
    is a fresh primary again). Backups, readiness and drills follow this, so that after a
    failover they back up and watch the database the apps write to.

    Idempotent: a read.
    """
    sql = runtime.topology(environment).cloud_sql
    replica, primary = sql.replica, sql.primary
    with calling("sql-live-primary", f"{replica.project}:{replica.instance}"):
        try:
            promoted = describe(environment, replica.project, replica.instance)
        except Exception as exc:
            if not _is_not_found(exc):
                raise
            promoted = None  # being rebuilt by a failback: the primary holds the data
        if promoted is not None and not promoted.is_replica:
            return promoted
    with calling("sql-live-primary", f"{primary.project}:{primary.instance}"):
        state = describe(environment, primary.project, primary.instance)
    if state.is_replica:
        raise PermanentError(
            f"sql-live-primary: neither {primary.instance} nor {replica.instance} is a primary"
        )
    return state


def _is_not_found(exc: BaseException) -> bool:
    from google.api_core import exceptions as gexc

    return isinstance(exc, gexc.NotFound)


@cloud_task(timeout_seconds=60, task_run_name="sql-replica-lag-{instance}")
def sql_replica_lag(environment: str, project: str, instance: str) -> ReplicaLag:
    """Estimate the data a promotion of this replica would lose, from the standby itself.

    Bytes are WAL received but not replayed plus, when the primary answers, WAL the
    primary wrote that the standby has not received. Seconds are the age of the last
    replayed transaction while bytes are outstanding (at least the standby's uptime when it
    has replayed none since it started), and 0 when the standby has caught up (an idle
    primary would otherwise look minutes behind).

    Idempotent: a read.
    """
    topo = runtime.topology(environment)
    sql = topo.cloud_sql
    with calling("sql-replica-lag", f"{project}:{instance}"):
        state = describe(environment, project, instance)
        if not state.address:
            raise PermanentError(f"sql-replica-lag: {project}:{instance} has no IP address")
        password = read_secret(sql.monitor_password_secret) if sql.monitor_password_secret else None
        with monitor_connection(environment, state.address, password, timeout_s=5) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(),"
                " COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(),"
                " pg_last_wal_replay_lsn()), 0),"
                # A standby that has replayed nothing since it started has no timestamp;
                # its last replayed transaction is then older than its start, so that
                # start bounds the age from below instead of reporting no lag at all.
                " EXTRACT(EPOCH FROM now() - COALESCE(pg_last_xact_replay_timestamp(),"
                " pg_postmaster_start_time())),"
                " pg_last_wal_replay_lsn()::text"
            ).fetchone()
        assert row is not None
        in_recovery, pending, age, replay_lsn = row
        if not in_recovery:
            return ReplicaLag(
                seconds=0, bytes=0, measured_at=datetime.now(UTC), source="not a standby"
            )
        # What the primary wrote and the standby has not replayed includes what it has
        # received and not replayed: the larger of the two, not their sum.
        behind = max(int(pending), _unreplayed_bytes(environment, state, replay_lsn, password))
        seconds = float(age or 0.0) if behind > 0 else 0.0
        return ReplicaLag(
            seconds=seconds, bytes=behind, measured_at=datetime.now(UTC), source="standby"
        )


def monitor_connection(
    environment: str,
    host: str | None,
    password: str | None,
    timeout_s: int,
    database: str = "postgres",
) -> psycopg.Connection[tuple[Any, ...]]:
    """A read-only session as the topology's monitoring role (never the app's)."""
    sql = runtime.topology(environment).cloud_sql
    return psycopg.connect(
        host=host,
        port=sql.port,
        user=sql.monitor_user,
        password=password,
        dbname=database,
        connect_timeout=timeout_s,
        autocommit=True,
    )


def _unreplayed_bytes(
    environment: str, replica: InstanceState, replay_lsn: str, password: str | None
) -> int:
    """WAL the primary wrote that the replica has not replayed; 0 if the primary is gone."""
    if not replica.master:
        return 0
    master_project, _, master_name = replica.master.rpartition(":")
    try:
        primary = describe(environment, master_project or replica.project, master_name)
        with monitor_connection(environment, primary.address, password, timeout_s=2) as conn:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (replay_lsn,)
            ).fetchone()
    except Exception:
        return 0
    return max(0, int(row[0])) if row else 0


# Instance states that end by themselves (sqladmin's SqlInstanceState): created, or back
# from maintenance.
SETTLING_STATES = frozenset({"PENDING_CREATE", "MAINTENANCE"})


def insert_and_wait(
    environment: str,
    project: str,
    instance: str,
    kind: str,
    body: dict[str, Any],
    *,
    exists: bool,
) -> None:
    """Insert an instance and wait for it; one that exists already (a retried call) is
    not inserted again: its create operation, if still running, is waited for."""
    if not exists:
        join_or_start(
            environment,
            project,
            instance,
            kind,
            lambda s: s.instances().insert(project=project, body=body),
            timeout=1700,
        )
        return
    name = running_operation(environment, project, instance, kind)
    if name is not None:
        wait_operation(environment, project, name, timeout=1700)


@cloud_task(timeout_seconds=1800, task_run_name="sql-promote-{instance}")
def sql_promote_replica(environment: str, project: str, instance: str) -> PromoteResult:
    """Promote a read replica to a standalone primary and wait for it.

    Idempotent: an instance that is already a primary is left alone; a promotion already
    running (a resumed run) is waited for, never started twice.
    """
    resource = f"{project}:{instance}"
    with calling("promote-replica", resource):
        before = describe(environment, project, instance)
        if not before.is_replica:
            get_run_logger().info("%s is already a primary; not promoting", resource)
            return PromoteResult(
                instance=instance, changed=False, operation=None, before=before, after=before
            )
        op = join_or_start(
            environment,
            project,
            instance,
            "PROMOTE_REPLICA",
            lambda s: s.instances().promoteReplica(project=project, instance=instance),
            timeout=1700,
        )
        after = describe(environment, project, instance)
        if after.is_replica:
            raise TransientError(f"promote-replica: {resource} still reports READ_REPLICA_INSTANCE")
    return PromoteResult(
        instance=instance, changed=True, operation=op.name, before=before, after=after
    )


@cloud_task(timeout_seconds=900, task_run_name="sql-export-{instance}")
def sql_export_database(
    environment: str, project: str, instance: str, database: str, uri: str
) -> str:
    """Export one database as a SQL dump to ``uri`` (gs://...), and wait for it.

    Exports outlive the instance, unlike its backup runs, which Cloud SQL deletes with it;
    that is why the data an old primary may hold alone is exported before it goes.

    Idempotent: an object already at ``uri`` is kept and not exported again; an export
    already running on the instance is waited for.
    """
    factory = runtime.clients(environment)
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    blob = factory.storage(project).bucket(bucket).blob(name)
    body = {"exportContext": {"uri": uri, "databases": [database], "fileType": "SQL"}}
    with calling("sql-export", f"{project}:{instance} → {uri}"):
        if blob.exists(timeout=runtime.call_timeout(environment)):
            return uri
        join_or_start(
            environment,
            project,
            instance,
            "EXPORT",
            lambda s: s.instances().export(project=project, instance=instance, body=body),
            timeout=850,
        )
    get_run_logger().info("exported %s:%s/%s to %s", project, instance, database, uri)
    return uri


@cloud_task(timeout_seconds=900, task_run_name="sql-delete-{instance}")
def sql_delete_instance(environment: str, project: str, instance: str) -> bool:
    """Delete an instance and wait; returns whether this call deleted it.

    Idempotent: an instance already gone is not an error. Another operation in progress
    (a restore a cancelled drill left running) is waited out first, since Cloud SQL
    refuses a delete while one runs.
    """
    from google.api_core import exceptions as gexc

    with calling("sql-delete", f"{project}:{instance}"):
        try:
            describe(environment, project, instance)
        except gexc.NotFound:
            return False
        if running_operation(environment, project, instance, "DELETE") is None:
            wait_idle(environment, project, instance, "deleting")
        join_or_start(
            environment,
            project,
            instance,
            "DELETE",
            lambda s: s.instances().delete(project=project, instance=instance),
            timeout=850,
        )
    get_run_logger().info("deleted %s:%s", project, instance)
    return True


@cloud_task(timeout_seconds=1800, task_run_name="sql-create-replica-{instance}")
def sql_create_replica(
    environment: str,
    project: str,
    instance: str,
    region: str,
    master: str,
    labels: dict[str, str] | None = None,
    deletion_protection: bool = False,
) -> InstanceState:
    """Create ``instance`` in ``region`` as a read replica of ``master`` and wait for it.

    The replica takes the master's live settings (database version, tier, edition,
    network, flags), so it is reachable and sized the way its master is. Deletion
    protection is the one setting a replica never inherits (sql/docs/deletion-protection);
    ``deletion_protection`` sets it at creation, and a promotion keeps it, so a primary
    rebuilt as a replica is protected from its first moment as a primary.

    Idempotent: a replica of that master already there is returned as it is; an instance
    of that name that is anything else is a permanent error (never overwritten).
    """
    from google.api_core import exceptions as gexc

    with calling("sql-create-replica", f"{project}:{instance} ← {master}"):
        try:
            current = describe(environment, project, instance)
        except gexc.NotFound:
            current = None
        if current is not None:
            if not (current.is_replica and (current.master or "").endswith(master)):
                raise PermanentError(
                    f"sql-create-replica: {project}:{instance} exists "
                    f"and is not a replica of {master}"
                )
            if current.state == "RUNNABLE":
                return current
        source = read_instance(environment, project, master)
        body: dict[str, Any] = {
            "name": instance,
            "region": region,
            "masterInstanceName": master,
            "databaseVersion": source.database_version,
            "instanceType": "READ_REPLICA_INSTANCE",
            "settings": sqladmin.settings_like(source, labels or {}, replica=True),
        }
        if deletion_protection:
            body["settings"]["deletionProtectionEnabled"] = True
        insert_and_wait(
            environment, project, instance, "CREATE_REPLICA", body, exists=current is not None
        )
        state = describe(environment, project, instance)
        if state.state != "RUNNABLE":
            # No creation left to wait for, and still not serving: one still settling is
            # asked again (a retry); a failed or suspended one is for an operator, never
            # a replica to read WAL from.
            error = TransientError if state.state in SETTLING_STATES else PermanentError
            raise error(f"sql-create-replica: {project}:{instance} is {state.state}, not RUNNABLE")
    get_run_logger().info("%s:%s is a replica of %s in %s", project, instance, master, region)
    return state
