"""readiness: could a failover succeed right now? A read-only plan evaluation.

Like AWS ARC's readiness checks, every 30 minutes: each resource the failover names
exists; the live primary keeps point-in-time recovery for the seed's 7 days, and the
monitoring role could fence the apps' role on it (a planned switch's database fence); the
replica is RUNNABLE and within the critical RPO; the secondary's services
are deployable (they exist and their latest revision is Ready); the DNS zone and the
url-map answer; the buckets and the apps' database secret outlive the primary region and
the Prefect worker is not in it (lifeboat/independence.py); the worker holds, in each
project, every permission the flows need there (Resource Manager's testIamPermissions
against the table in lifeboat/iam.py); the newest verified backup of each source and the
newest passed drill (a verified restore) are young enough; each cross-region copy bucket
(``backups.copies``) is where the topology says and holds a young enough verified copy of
each source; once MongoDB's changes are captured (mongo-capture), the newest slice is
within the 5-minute RPO and every captured collection keeps changeStreamPreAndPostImages
on (the capture replays updates by their post-images). One
row per check, green or red; any red row fails the run after the table is published. A
check that errors is a red row naming the error, never a crash that hides the other rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event
from pydantic import BaseModel

from flows.evidence import published
from flows.launch import ENVIRONMENT_FIELD, SwitchRequest
from lifeboat import runtime
from lifeboat.iam_check import needs_by_project, verdict
from lifeboat.independence import (
    bucket_independence,
    copy_bucket_problems,
    secret_independence,
    worker_independence,
)
from lifeboat.manifest import Source
from lifeboat.record import RunRecord
from lifeboat.slices import RPO_MINUTES, CaptureState
from lifeboat.topology import BackupCopy, Topology
from tasks.catalog import catalog_newest
from tasks.cloud_run import run_describe_service
from tasks.cloud_sql import describe, sql_live_primary, sql_replica_lag
from tasks.cloud_sql_pitr import sql_pitr_window
from tasks.cloud_sql_role_fence import fence_privileges
from tasks.dns import read_record
from tasks.errors import PermanentError
from tasks.inventory import (
    inventory_bucket,
    inventory_dns_zone,
    inventory_newest_passed_drill,
    inventory_url_map,
)
from tasks.mongo_capture import mongo_capture_state_read, mongo_without_post_images
from tasks.records import artifact_key
from tasks.resource_manager import resource_manager_held_permissions
from tasks.retrying import fresh_task
from tasks.secret_manager import secret_manager_replication

SOURCES: list[Source] = ["mongodb", "cloudsql"]


class Row(BaseModel):
    check: str
    target: str
    green: bool = False
    measured: str = ""
    limit: str = ""
    detail: str = ""

    def table(self) -> dict[str, str]:
        return {
            "check": self.check,
            "target": self.target,
            "status": "green" if self.green else "RED",
            "measured": self.measured,
            "limit": self.limit,
            "detail": self.detail,
        }


Check = Callable[[Row], None]  # fills in the row; raising makes it red with the error


@fresh_task(task_run_name="readiness-{row.check}-{row.target}")
def evaluate(row: Row, check: Check) -> Row:
    try:
        check(row)
    except Exception as exc:
        row.green, row.detail = False, str(exc)[:300]
    return row


def _services(topo: Topology, role: str) -> Check:
    region = topo.regions.secondary if role == "secondary" else topo.regions.primary

    def check(row: Row) -> None:
        states = [
            run_describe_service(topo.environment, region.project, region.name, s.name)
            for s in topo.services
        ]
        missing = [s.service for s in states if not s.exists]
        not_ready = [s.service for s in states if s.exists and not s.ready]
        # A fence a planned switch kept (its promotion started, then the run ended early)
        # refuses public traffic until a re-run of its incident lifts it: red, named.
        fenced = [f"{s.service} (by {s.fenced_by})" for s in states if s.fenced_by]
        row.measured = f"{len(states) - len(missing) - len(not_ready)}/{len(states)} ready"
        row.green = not missing and not fenced and (role != "secondary" or not not_ready)
        row.detail = "; ".join(
            part
            for part in (
                f"missing: {', '.join(missing)}" if missing else "",
                f"not Ready: {', '.join(not_ready)}" if not_ready else "",
                f"fenced from public traffic: {', '.join(fenced)}; re-run that incident "
                "to finish its switch and lift it"
                if fenced
                else "",
            )
            if part
        ) or ("deployable: every latest revision is Ready" if role == "secondary" else "exist")

    return check


def _live_primary(topo: Topology) -> Check:
    """The instance that takes writes, found from Cloud SQL (after a failover it is the
    promoted replica, and the topology's primary is stale)."""

    def check(row: Row) -> None:
        state = sql_live_primary.fn(topo.environment)
        row.target = state.name
        row.measured, row.green = state.state, state.state == "RUNNABLE"
        row.detail = f"{state.instance_type} in {state.region}"
        if state.name != topo.cloud_sql.primary.instance:
            row.detail += (
                f"; taking writes since a failover ({topo.cloud_sql.primary.instance} is stale)"
            )

    return check


def _database_fence(topo: Topology) -> Check:
    """Could a planned switch fence the apps' role on the live primary (a NOLOGIN, and its
    sessions ended: tasks/cloud_sql_role_fence.py)? Red names the grant that is missing."""

    def check(row: Row) -> None:
        state = sql_live_primary.fn(topo.environment)
        row.target = state.name
        may = fence_privileges(topo.environment, state.project, state.name)
        sql = topo.cloud_sql
        row.limit = "CREATEROLE; pg_signal_backend or membership"
        row.measured = (
            f"NOLOGIN {'yes' if may.alter else 'no'}; end sessions "
            f"{'yes' if may.end_sessions else 'no'}"
        )
        row.green = may.ready
        missing = []
        if not may.app_role_exists:
            missing.append(f"there is no role {sql.app_user} (cloud_sql.app_user)")
        if not may.alter:
            missing.append(f"{sql.monitor_user} lacks CREATEROLE")
        if not may.end_sessions:
            missing.append(
                f"{sql.monitor_user} may not end {sql.app_user}'s sessions: GRANT "
                f"pg_signal_backend TO {sql.monitor_user} (or GRANT {sql.app_user} TO "
                f"{sql.monitor_user}); without it a planned switch waits 30 s for them, "
                "then fails before the promotion"
            )
        row.detail = (
            "; ".join(missing)
            if missing
            else f"{sql.monitor_user} can fence {sql.app_user} on {state.name}"
        )

    return check


def _pitr(topo: Topology) -> Check:
    """The live primary can be restored to any moment of the last ``pitr_log_days``: PITR
    is on and its transaction logs are kept at least that long (seed 004: 7 days)."""
    days = topo.backups.pitr_log_days

    def check(row: Row) -> None:
        state = sql_live_primary.fn(topo.environment)
        window = sql_pitr_window.fn(topo.environment, state.project, state.name)
        row.target = state.name
        row.limit = f"on, ≥ {days} days of logs"
        row.measured = f"on, {window.retention_days} days" if window.enabled else "off"
        row.green = window.enabled and window.retention_days >= days
        row.detail = (
            "settings.backupConfiguration.pointInTimeRecoveryEnabled is false"
            if not window.enabled
            else f"transactionLogRetentionDays {window.retention_days}"
        )

    return check


def _replica_lag(topo: Topology) -> Check:
    replica = topo.cloud_sql.replica
    limit_s = min(o.rpo_minutes for o in topo.objectives.values()) * 60

    def check(row: Row) -> None:
        state = describe(topo.environment, replica.project, replica.instance)
        if state.state != "RUNNABLE" or not state.is_replica:
            raise PermanentError(f"replica is {state.state} ({state.instance_type})")
        lag = sql_replica_lag(topo.environment, replica.project, replica.instance)
        row.measured, row.limit = f"{lag.seconds:.1f} s, {lag.bytes} bytes", f"{limit_s:.0f} s"
        row.green = lag.seconds <= limit_s
        row.detail = f"measured on the {lag.source}"

    return check


def _dns_records(topo: Topology) -> Check:
    def check(row: Row) -> None:
        inventory_dns_zone(topo.environment)
        missing = [
            r.name
            for r in topo.dns.records
            if read_record(topo.environment, r.name, r.type) is None
        ]
        row.measured = f"{len(topo.dns.records) - len(missing)}/{len(topo.dns.records)} records"
        row.green = not missing
        row.detail = f"missing: {', '.join(missing)}" if missing else "zone and records answer"

    return check


def _simple(call: Callable[[], str]) -> Check:
    def check(row: Row) -> None:
        row.detail, row.green = call(), True

    return check


def _bucket(topo: Topology, bucket: str) -> Check:
    """The bucket exists, and outlives the primary region (a failover takes its lease and
    writes its record there while that region is down)."""

    def check(row: Row) -> None:
        got = inventory_bucket(topo.environment, bucket)
        row.green, row.detail = bucket_independence(
            bucket, got.location, got.location_type, topo.regions.primary.name
        )
        row.measured = got.location_type

    return check


def _worker(topo: Topology) -> Check:
    def check(row: Row) -> None:
        row.green, row.detail = worker_independence(
            topo.workers.location, topo.regions.primary.name
        )
        row.limit = f"not {topo.regions.primary.name}"

    return check


def _secret_replication(topo: Topology) -> Check:
    def check(row: Row) -> None:
        replicas = secret_manager_replication(topo.environment)
        row.green, row.detail = secret_independence(
            topo.cloud_sql.app_secret.name,
            replicas,
            topo.regions.primary.name,
            topo.regions.secondary.name,
        )
        row.measured = "automatic" if replicas is None else ", ".join(replicas)
        row.limit = f"includes {topo.regions.secondary.name}"

    return check


def _permissions(topo: Topology, project: str, needed: dict[str, tuple[str, ...]]) -> Check:
    """The worker holds every permission the flows need in ``project``; red names each
    one missing and the flows that need it."""

    def check(row: Row) -> None:
        held = resource_manager_held_permissions(topo.environment, project, sorted(needed))
        row.green, row.measured, row.detail = verdict(needed, held)

    return check


def _backup_age(topo: Topology, source: Source, now: datetime) -> Check:
    limit_h = topo.backups.staleness.alert_hours

    def check(row: Row) -> None:
        newest = catalog_newest(topo.environment, source, verified_only=True)
        row.limit = f"{limit_h:g} h"
        if newest is None:
            raise PermanentError(f"no verified {source} backup")
        age = newest.age_hours(now)
        row.measured, row.green = f"{age:.1f} h", age <= limit_h
        row.detail = f"newest verified: {newest.backup_id}"

    return check


def _backup_copy(topo: Topology, copy: BackupCopy, now: datetime) -> Check:
    """A copy bucket is where the topology says, not in the primary region, and holds a
    verified copy of each source younger than the staleness alert."""
    limit_h = topo.backups.staleness.alert_hours

    def check(row: Row) -> None:
        got = inventory_bucket(topo.environment, copy.bucket)
        row.limit = f"{copy.location}, {limit_h:g} h"
        problems = copy_bucket_problems(copy.location, got.location, topo.regions.primary.name)
        ages = []
        for source in SOURCES:
            newest = catalog_newest(topo.environment, source, True, copy.bucket)
            if newest is None:
                problems.append(f"no verified {source} copy")
                continue
            age = newest.age_hours(now)
            ages.append(f"{source} {age:.1f} h")
            if age > limit_h:
                problems.append(f"{source} copy {newest.backup_id} is {age:.1f} h old")
        row.measured = f"{got.location.lower()}; " + ", ".join(ages)
        row.green = not problems
        row.detail = "; ".join(problems) or f"{copy.bucket}: verified copies of every source"

    return check


def _restore_age(topo: Topology, now: datetime) -> Check:
    limit_d = topo.drills.verified_restore_max_age_days

    def check(row: Row) -> None:
        newest = inventory_newest_passed_drill(topo.environment)
        row.limit = f"{limit_d:g} days"
        if newest is None or newest.ended_at is None:
            raise PermanentError("no recovery drill has passed: no restore was ever verified")
        age = (now - newest.ended_at).total_seconds() / 86400
        row.measured, row.green = f"{age:.1f} days", age <= limit_d
        row.detail = f"drill {newest.incident_id}"

    return check


def _capture_row(environment: str, now: datetime) -> list[tuple[Row, Check]]:
    """The capture-age row; none while no capture has run (the continuous capture is not
    set up here). A state that cannot be read (corrupt, refused) is a red row."""
    row = Row(check="capture-age", target="mongodb-changes")
    try:
        capture, _ = mongo_capture_state_read(environment)
    except Exception as exc:
        return [(row, _unreadable(f"capture state unreadable: {exc}"))]
    if capture is None:
        return []
    images = Row(check="post-images", target="mongodb")
    return [(row, _capture_age(capture, now)), (images, _post_images(environment))]


def _unreadable(why: str) -> Check:
    def check(row: Row) -> None:
        raise PermanentError(why)

    return check


def _post_images(environment: str) -> Check:
    """The capture replays updates by their post-images: a collection without
    changeStreamPreAndPostImages makes the next slice a gap."""

    def check(row: Row) -> None:
        missing = mongo_without_post_images(environment)
        row.limit = "every captured collection"
        row.measured, row.green = f"{len(missing)} without", not missing
        row.detail = (
            f"changeStreamPreAndPostImages off: {', '.join(missing)}; the next capture is a gap"
            if missing
            else "changeStreamPreAndPostImages on"
        )

    return check


def _capture_age(state: CaptureState, now: datetime) -> Check:
    # One minute over the RPO for a capture run to start and ship its slice.
    limit_m = RPO_MINUTES + 1

    def check(row: Row) -> None:
        age = (now - state.until).total_seconds() / 60
        row.limit = f"{limit_m:g} min"
        row.measured, row.green = f"{age:.1f} min", age <= limit_m
        row.detail = f"slice {state.seq} after backup {state.base_backup_id}"

    return check


def checks(topo: Topology, now: datetime) -> list[tuple[Row, Check]]:
    env, sql = topo.environment, topo.cloud_sql
    return [
        (Row(check="services", target=topo.regions.primary.name), _services(topo, "primary")),
        (Row(check="services", target=topo.regions.secondary.name), _services(topo, "secondary")),
        (Row(check="sql-instance", target="live primary"), _live_primary(topo)),
        (Row(check="pitr", target="live primary"), _pitr(topo)),
        (Row(check="database-fence", target="live primary"), _database_fence(topo)),
        (Row(check="replica", target=sql.replica.instance), _replica_lag(topo)),
        (Row(check="dns", target=topo.dns.zone), _dns_records(topo)),
        (Row(check="url-map", target=topo.cdn.url_map), _simple(lambda: inventory_url_map(env))),
        *[
            (Row(check="bucket", target=b), _bucket(topo, b))
            for b in (topo.backups.bucket, topo.backups.records_bucket)
        ],
        (Row(check="secret-replication", target=sql.app_secret.name), _secret_replication(topo)),
        (Row(check="worker-location", target=topo.workers.location or "undeclared"), _worker(topo)),
        *[
            (Row(check="permissions", target=project), _permissions(topo, project, needed))
            for project, needed in needs_by_project(topo).items()
        ],
        *[(Row(check="backup-age", target=s), _backup_age(topo, s, now)) for s in SOURCES],
        *[
            (Row(check="backup-copy", target=c.location), _backup_copy(topo, c, now))
            for c in topo.backups.copies
        ],
        (Row(check="verified-restore-age", target="recovery-drill"), _restore_age(topo, now)),
    ]


@flow(name="readiness")
def readiness(environment: Annotated[str, ENVIRONMENT_FIELD]) -> list[dict[str, str]]:
    request = SwitchRequest.validate_launch(
        environment, "readiness check", None, "schedule", prefix="ready"
    )
    topo = runtime.topology(request.environment)
    record = request.record("readiness", "scheduled", False)
    with published(record, notify_success=False):
        table = _check_all(topo, record)
    return table


def _check_all(topo: Topology, record: RunRecord) -> list[dict[str, str]]:
    now = datetime.now(UTC)
    with record.step("checks") as step:
        planned = checks(topo, now) + _capture_row(topo.environment, now)
        futures = [evaluate.submit(row, check) for row, check in planned]
        rows = [f.result() for f in futures]
        step.detail = f"{sum(r.green for r in rows)}/{len(rows)} green"
    table = [r.table() for r in rows]
    red = [f"{r.check} {r.target}" for r in rows if not r.green]
    record.after = {"checks": table, "red": red}
    create_table_artifact(
        table=table,
        key=artifact_key("readiness", topo.environment),
        description=f"readiness of {topo.environment} at {now:%Y-%m-%d %H:%M} UTC: "
        + ("RED" if red else "green"),
    )
    emit_event(
        event=f"lifeboat.readiness.{'red' if red else 'green'}",
        resource={"prefect.resource.id": f"lifeboat.environment.{topo.environment}"},
        payload={"red": red, "checks": len(rows)},
    )
    if red:
        raise PermanentError(f"not ready: {', '.join(red)}")
    get_run_logger().info("ready: %d checks green", len(rows))
    record.finish("completed")
    return table
