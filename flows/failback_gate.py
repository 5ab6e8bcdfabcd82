"""The failback's health gate on the primary region, and the one repair it may make first.

A failback is refused while the primary region is unhealthy. One cause of an unhealthy
primary region is Lifeboat's own doing, and the failback repairs it rather than refuse:
a failover made while the primary region was down could not refresh the services there
that read the database URL at instance start (flows/secret_refresh.py). When the region
comes back they still hold the old primary's URL. The failback rolls them itself before
it exports and deletes that instance (``stale_readers``); but if the instance is gone or
broken some other way (deleted by hand, or its zone down), their checks fail. So when
the region fails its checks and some of its services (read once each: a region that is
down may not answer) were not rolled for the secret's latest version, the failback
rolls them to it (under the region lock: it is a side effect), then probes again until
the region passes (at most ROLL_SETTLE_S). The latest version
names the database that is primary now: the promoted secondary, or, for a run resumed
after its own database-connection step, the rebuilt primary; either way the one the
apps must use.

A dry run changes nothing: its plan says the roll would come first, and that the run is
refused if the region is still unhealthy after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import ExitStack

from prefect import get_run_logger

from flows.database_connection import connection_detail, point_apps_at, promotion_began
from flows.database_fence import open_left_fence
from flows.fence import lift_stale_fences
from flows.region_lock import lock_step
from flows.secret_refresh import refresh_secret_readers
from lifeboat.record import RunRecord
from lifeboat.topology import Topology
from tasks.cloud_run import ServiceState
from tasks.cloud_run_secrets import ReaderState, run_describe_secret_reader, split_version
from tasks.cloud_sql_operations import running_operation, wait_operation
from tasks.errors import PermanentError, PreflightRefused, TransientError
from tasks.health import HealthReport, Target, health_probe, health_verify
from tasks.secret_manager import secret_manager_latest_version, secret_manager_names
from tasks.storage import Lease


def _readers(topo: Topology) -> list[ReaderState]:
    """How each primary-region service reads the secret: one read each, no retry (the
    region may be down; a service that cannot be read is left out of the roll)."""
    primary = topo.regions.primary
    futures = [
        run_describe_secret_reader.submit(topo.environment, primary.project, primary.name, s.name)
        for s in topo.services
    ]
    return [f.result() for f in futures]


def unrolled_readers(states: list[ReaderState], version: str | None) -> list[ReaderState]:
    """The services whose running instances may hold an older version than ``version``:
    they read the secret at instance start and no revision was rolled for ``version``.

    A service whose traffic is pinned to named revisions is left out: a roll cannot help it.
    """
    if not version:
        return []
    number = split_version(version)[2]
    return [s for s in states if s.reader is not None and s.reader.behind(number)]


def stale_readers(region: str, states: list[ServiceState], version: str | None) -> list[str]:
    """The services of ``region`` (as preflight read them) that ``unrolled_readers`` names."""
    readers = [
        ReaderState(service=s.service, region=region, reader=s.secret_reader) for s in states
    ]
    return [s.service for s in unrolled_readers(readers, version)]


def repoint_plan_line(region: str, services: list[str], version: str, instance: str) -> str:
    return (
        f"roll {region}/{{{', '.join(services)}}} for secret version {split_version(version)[2]}"
        f" before the export: they read the database URL at instance start and still name "
        f"{instance}, which is exported, then deleted (writes they take go to the primary "
        "instead, and a crash after the delete leaves them working)"
    )


def gate_plan_line(region: str, unrolled: list[ReaderState], version: str) -> str:
    names = ", ".join(s.service for s in unrolled)
    return (
        f"roll {region}/{{{names}}} for secret version {split_version(version)[2]} first: the "
        f"region fails its health checks and these read the database URL at instance start "
        f"with no revision for that version (a failover cannot refresh a region that is "
        f"down); then probe {region} again, and refuse if it is still unhealthy"
    )


# How long the region may take to pass its checks once the rolled revisions are ready:
# traffic moves to the new revision, whose instances start and read the secret.
ROLL_SETTLE_S = 60.0


def _settled_health(topo: Topology) -> HealthReport:
    """The region's health once the roll has settled: all checks passing, or (after
    ROLL_SETTLE_S) one more probe for the gate to judge."""
    env = topo.environment
    settle = min(ROLL_SETTLE_S, topo.health.verify_timeout_s)
    try:
        report: HealthReport = health_verify.with_options(retries=0)(env, Target.primary, settle)
    except TransientError:
        report = health_probe(env, Target.primary)
    return report


def _promotion_running(topo: Topology) -> str | None:
    """A promotion of the rebuilt primary a killed run of the incident left running (the
    region lock lets no other run promote it): its name, if one runs."""
    rebuilt = topo.cloud_sql.primary
    try:
        return running_operation(
            topo.environment, rebuilt.project, rebuilt.instance, "PROMOTE_REPLICA"
        )
    except Exception:  # the instance may not exist (the run failed before rebuilding it)
        return None


def _after_promotion(topo: Topology, record: RunRecord, operation: str) -> HealthReport:
    """Wait for that promotion, then for the region to pass its checks. The killed run
    pointed the apps at the instance while it promoted (flows/failback_promotion.py), so
    the region fails its checks until the promotion ends: that is no reason to refuse
    the run that finishes the switch."""
    rebuilt = topo.cloud_sql.primary
    with record.step("wait-running-promotion") as step:
        with contextlib.suppress(PermanentError):  # a failed promotion: the probe judges
            wait_operation(topo.environment, rebuilt.project, operation, timeout=1700)
        health = _settled_health(topo)
        step.detail = (
            f"a promotion of {rebuilt.instance} a killed run left was running: waited for "
            f"it; then {topo.regions.primary.name}: {health.summary()}"
        )
    return health


def _apps_on_a_replica(topo: Topology) -> bool:
    """The apps' secret names the rebuilt primary while it is a replica no promotion runs
    on. A run whose promotion failed after its roll, and could not point the apps back
    (killed, or the roll back failed), leaves them so, and its fence lifted: every write
    fails, and the primary region fails its checks."""
    rebuilt = topo.cloud_sql.primary
    if promotion_began(topo.environment, rebuilt):  # not a replica, or promoting: fine
        return False
    return bool(secret_manager_names(topo.environment, rebuilt.project, rebuilt.instance))


def _point_back(topo: Topology, record: RunRecord) -> HealthReport:
    """Point the apps back at the promoted secondary, the primary while the rebuilt one is
    a replica; then probe again. Before the unrolled readers are rolled to the latest
    version: that version is the one naming the replica."""
    promoted, rebuilt = topo.cloud_sql.replica, topo.cloud_sql.primary
    with record.step("point-apps-back") as step:
        get_run_logger().warning(
            "the apps' secret names %s, a replica no promotion runs on: pointing them back at %s",
            rebuilt.instance,
            promoted.instance,
        )
        update, refreshed = point_apps_at(
            topo,
            record,
            promoted,
            required=[topo.regions.secondary],
            optional=[topo.regions.primary],
        )
        health = _settled_health(topo)
        done = connection_detail(update, refreshed)
        step.detail = (
            f"the secret named {rebuilt.instance}, a replica: {done}; "
            f"then {topo.regions.primary.name}: {health.summary()}"
        )
    return health


def is_down(topo: Topology, health: HealthReport) -> bool:
    return health.failed >= topo.health.down_after_failures


def gate_primary(
    topo: Topology,
    record: RunRecord,
    secondary_states: list[ServiceState],
    dry_run: bool,
    take_lock: Callable[[], Lease],
) -> tuple[list[str], str]:
    """Refuse unless the primary region is healthy, rolling its unrolled readers first
    when that may be why; returns the plan lines of what a dry run would roll first, and
    what the gate saw.

    ``take_lock`` enters the region lock for the rest of the run (a no-op if held).
    """
    env, primary = topo.environment, topo.regions.primary
    health = health_probe(env, Target.primary)
    if not is_down(topo, health):
        return [], f"healthy ({health.summary()})"
    locked = False  # the lock is taken before any wait or change, and once
    changed: list[str] = []
    if not dry_run and (promoting := _promotion_running(topo)) is not None:
        # Under the lock: a run of the incident still alive is refused at once, not
        # after its promotion.
        take_lock()
        locked = True
        health = _after_promotion(topo, record, promoting)
        if not is_down(topo, health):
            return [], f"healthy once the running promotion ended ({health.summary()})"
    if not dry_run:
        # A killed run's database fence: on the secondary (no promotion, or a failed one)
        # or, through replication, on the rebuilt primary it promoted. Its region fails
        # every check until it is opened.
        sql = topo.cloud_sql
        opened = open_left_fence(topo, record, sql.replica, sql.primary, take_lock)
        if opened:
            locked = True
            changed.append("the database fence a killed run left was lifted")
            health = health_probe(env, Target.primary)  # a role's LOGIN holds at once
            if not is_down(topo, health):
                return [], f"healthy once the database fence was lifted ({health.summary()})"
    if not dry_run and _apps_on_a_replica(topo):
        take_lock()
        locked = True
        changed.append(f"the apps were pointed back at {topo.cloud_sql.replica.instance}")
        health = _point_back(topo, record)
        if not is_down(topo, health):
            return [], f"healthy once the apps named the primary again ({health.summary()})"
    version = secret_manager_latest_version(env)
    unrolled = unrolled_readers(_readers(topo), version)
    if unrolled and version and dry_run:
        return [gate_plan_line(primary.name, unrolled, version)], (
            f"unhealthy ({health.summary()}); a run rolls its readers first"
        )
    if unrolled and version:
        take_lock()
        locked = True
        changed.append("its services were rolled to the secret's latest version")
        with record.step("roll-primary-readers") as step:
            get_run_logger().warning(
                "%s is unhealthy (%s) and %s read the database URL at instance start without "
                "a revision for %s: rolling them first",
                primary.name,
                health.summary(),
                ", ".join(s.service for s in unrolled),
                version,
            )
            # Tried once (a failure is reported, then the probe decides): a refusal must
            # come soon, not after a task's retries.
            rolled = refresh_secret_readers(topo, record, version, required=[], optional=[primary])
            health = _settled_health(topo)
            step.detail = f"{rolled}; then {primary.name}: {health.summary()}"
        if not is_down(topo, health):
            return [], f"healthy once its readers were rolled ({health.summary()})"
    stale = lift_stale_fences(
        topo, record, secondary_states, dry_run, topo.cloud_sql.primary, locked=locked
    )
    raise PreflightRefused(
        f"failback refused: the primary region {primary.name} is unhealthy "
        f"({health.summary()}); "
        + (
            "nothing was changed"
            if not changed
            else f"{' and '.join(changed)} first, nothing else was changed"
        )
        + (f"; {stale}" if stale else "")
    )


def hold(stack: ExitStack, record: RunRecord) -> Callable[[], Lease]:
    """A ``take_lock`` for ``gate_primary``: the region-lock step, taken once on ``stack``."""
    held: list[Lease] = []

    def take() -> Lease:
        if not held:
            held.append(lock_step(stack, record))
        return held[0]

    return take
