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

A killed run of the incident may also have left its promotion running, its database fence
set, or the apps naming an instance they cannot write to (``_repair_left_state``); those
are repaired first, under the lock, as the killed run would have, and the region probed
again.

A dry run changes nothing: its plan says which repairs and which roll would come first,
and that the run is refused if the region is still unhealthy after them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import ExitStack
from typing import Literal

from prefect import get_run_logger

from flows.database_connection import connection_detail, point_apps_at, promotion_began
from flows.database_fence import incident_owner, left_fence, open_left_fence
from flows.fence import lift_stale_fences
from flows.rebuilt_label import rebuilt_by
from flows.region_lock import lock_step
from flows.secret_refresh import refresh_secret_readers
from lifeboat.record import RunRecord
from lifeboat.topology import SqlInstanceRef, Topology
from tasks.cloud_run import ServiceState
from tasks.cloud_run_secrets import ReaderState, run_describe_secret_reader, split_version
from tasks.cloud_sql import describe
from tasks.cloud_sql_operations import running_operation, wait_operation
from tasks.cloud_sql_role_fence import sql_app_role_fence
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


def _wait_promotion(topo: Topology, record: RunRecord, operation: str) -> None:
    """Wait for that promotion (step ``wait-running-promotion``). The region is probed
    once the repairs after it are made: until then it fails its checks (the apps name an
    instance that is promoting, or one the database fence keeps them out of), and that is
    no reason to refuse the run that finishes the switch."""
    rebuilt = topo.cloud_sql.primary
    with record.step("wait-running-promotion") as step:
        with contextlib.suppress(PermanentError):  # a failed promotion: the probe judges
            wait_operation(topo.environment, rebuilt.project, operation, timeout=1700)
        step.detail = f"a promotion of {rebuilt.instance} a killed run left was running: waited"


def _rebuilt_primary(topo: Topology, record: RunRecord) -> bool:
    """Cloud SQL shows the primary-region instance a primary, and this incident rebuilt it
    (its label): never a stale old primary that happens to be one."""
    rebuilt = topo.cloud_sql.primary
    try:
        state = describe(topo.environment, rebuilt.project, rebuilt.instance)
    except Exception as exc:  # gone, or not readable: nothing to point the apps at
        get_run_logger().warning("could not read %s: %s", rebuilt.instance, exc)
        return False
    return not state.is_replica and rebuilt_by(state.labels, record)


def _apps_on_the_fenced_secondary(topo: Topology, record: RunRecord) -> bool:
    """The apps' secret names the promoted secondary, which this incident's database fence
    keeps them out of, while the rebuilt primary is promoted. A run killed between the
    start of its promotion and its repoint (flows/failback_promotion.py) leaves them so:
    the old primary stays fenced once a promotion has started (a write there would be
    lost), so every write fails and the primary region fails its checks until the apps
    name the new primary, the step the killed run did not reach."""
    env, promoted = topo.environment, topo.cloud_sql.replica
    if not _rebuilt_primary(topo, record):
        return False
    owner = sql_app_role_fence(env, promoted.project, promoted.instance)
    if not owner.startswith(incident_owner(record)):
        return False
    return bool(secret_manager_names(env, promoted.project, promoted.instance))


def _repoint(
    topo: Topology, record: RunRecord, step: str, target: SqlInstanceRef, why: str
) -> None:
    """Point the apps at ``target`` (step ``step``; ``why`` says what the secret named, in
    the log and the record): the secondary region's readers are rolled (a failure raises),
    the primary's tried once (it is the region being judged). The run's own
    database-connection step then finds the version in place."""
    with record.step(step) as recorded:
        get_run_logger().warning("%s: pointing the apps at %s", why, target.instance)
        update, refreshed = point_apps_at(
            topo,
            record,
            target,
            required=[topo.regions.secondary],
            optional=[topo.regions.primary],
        )
        recorded.detail = f"{why}: {connection_detail(update, refreshed)}"


def _apps_on_a_replica(topo: Topology) -> bool:
    """The apps' secret names the rebuilt primary while it is a replica no promotion runs
    on. A run whose promotion failed after its roll, and could not point the apps back
    (killed, or the roll back failed), leaves them so, and its fence lifted: every write
    fails, and the primary region fails its checks."""
    rebuilt = topo.cloud_sql.primary
    if promotion_began(topo.environment, rebuilt):  # not a replica, or promoting: fine
        return False
    return bool(secret_manager_names(topo.environment, rebuilt.project, rebuilt.instance))


def _repoint_needed(topo: Topology, record: RunRecord) -> Literal["promoted", "back", ""]:
    """Where the apps must be pointed before the region can pass: at the promoted
    rebuilt primary, back at the promoted secondary, or nowhere."""
    if _apps_on_the_fenced_secondary(topo, record):
        return "promoted"
    return "back" if _apps_on_a_replica(topo) else ""


def _repair_left_state(
    topo: Topology, record: RunRecord, take_lock: Callable[[], Lease]
) -> tuple[list[str], list[str], bool]:
    """What a killed run of the incident may have left between its promotion's start and
    its end, repaired in order under the region lock, each only when found: its running
    promotion waited for; its database fence opened where its own exit would have; the
    apps pointed at the database that is primary now. Returns what was done, what of it
    changed something, and whether the region needs time to settle: a promotion ended, or
    the apps pointed (their revisions roll); a role's LOGIN alone holds at once."""
    done: list[str] = []
    changed: list[str] = []
    if (promoting := _promotion_running(topo)) is not None:
        # Under the lock: a run of the incident still alive is refused at once, not
        # after its promotion.
        take_lock()
        _wait_promotion(topo, record, promoting)
        done.append("the running promotion ended")
    settle = bool(done)
    # A killed run's database fence: on the secondary (no promotion, or a failed one)
    # or, through replication, on the rebuilt primary it promoted. Its region fails
    # every check until it is opened.
    sql = topo.cloud_sql
    if open_left_fence(topo, record, sql.replica, sql.primary, take_lock):
        changed.append("the database fence a killed run left was lifted")
    needed = _repoint_needed(topo, record)
    if needed:
        take_lock()
        # Read again under the lock: a live run of the incident it waited for may have
        # pointed the apps, or promoted again, meanwhile.
        needed = _repoint_needed(topo, record)
    if needed == "promoted":
        why = (
            f"the secret named {sql.replica.instance}, fenced since {sql.primary.instance}'s "
            "promotion began"
        )
        _repoint(topo, record, "point-apps-at-promoted", sql.primary, why)
        changed.append(f"the apps were pointed at the promoted {sql.primary.instance}")
        settle = True
    elif needed == "back":
        # Before the unrolled readers are rolled to the latest version: that version is
        # the one naming the replica.
        why = f"the secret named {sql.primary.instance}, a replica no promotion runs on"
        _repoint(topo, record, "point-apps-back", sql.replica, why)
        changed.append(f"the apps were pointed back at {sql.replica.instance}")
        settle = True
    return done + changed, changed, settle


def _left_state_plan(topo: Topology, record: RunRecord) -> list[str]:
    """What ``_repair_left_state`` would do, read only: a dry run's plan lines."""
    sql = topo.cloud_sql
    if _promotion_running(topo) is not None:
        # What comes after depends on how the promotion ends: nothing more can be said.
        return [
            f"wait for the promotion of {sql.primary.instance} a killed run of the incident "
            "left running; then lift the database fence it left, and point the apps at the "
            "instance that is primary once it ends, if they name another"
        ]
    lines: list[str] = []
    if (fenced := left_fence(topo, record, sql.replica, sql.primary)) is not None:
        lines.append(
            f"lift the database fence a killed run of the incident left on {fenced.instance}"
        )
    needed = _repoint_needed(topo, record)
    if needed == "promoted":
        lines.append(
            f"point the apps at the promoted {sql.primary.instance}: the secret names "
            f"{sql.replica.instance}, fenced since that promotion began"
        )
    elif needed == "back":
        lines.append(
            f"point the apps back at {sql.replica.instance}: the secret names "
            f"{sql.primary.instance}, a replica no promotion runs on"
        )
    return lines


def _roll_readers(
    topo: Topology,
    record: RunRecord,
    health: HealthReport,
    unrolled: list[ReaderState],
    version: str,
) -> HealthReport:
    """Roll the primary region's unrolled readers to ``version`` (step
    ``roll-primary-readers``), then give the region time to pass its checks."""
    primary = topo.regions.primary
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
    """Refuse unless the primary region is healthy, repairing what a killed run of the
    incident left and rolling its unrolled readers first when that may be why; returns
    the plan lines of what a dry run would repair and roll first, and what the gate saw.

    ``take_lock`` enters the region lock for the rest of the run (a no-op if held).
    """
    env, primary = topo.environment, topo.regions.primary
    health = health_probe(env, Target.primary)
    if not is_down(topo, health):
        return [], f"healthy ({health.summary()})"
    # Whether the lock was taken, not whether something was done: a repair may take it
    # and then find that the run it waited for made the repair already.
    taken: list[Lease] = []

    def lock() -> Lease:
        if not taken:
            taken.append(take_lock())
        return taken[0]

    changed: list[str] = []
    done: list[str] = []
    settle = False
    if not dry_run:
        done, changed, settle = _repair_left_state(topo, record, lock)
        if taken:  # probed again: what it repaired, or the run it waited for, may do
            health = health_probe(env, Target.primary)
            if not is_down(topo, health):
                why = " and ".join(done) or "the run of the incident it waited for ended"
                return [], f"healthy once {why} ({health.summary()})"
    version = secret_manager_latest_version(env)
    unrolled = unrolled_readers(_readers(topo), version)
    if dry_run:
        # A dry run is refused only where a run would be refused at once: its plan says
        # what a run would repair or roll first, then judge.
        repairs = _left_state_plan(topo, record)
        rolls = (
            [gate_plan_line(primary.name, unrolled, version)]  # it ends with the probe
            if unrolled and version
            else [f"then probe {primary.name} again, and refuse if it is still unhealthy"]
        )
        if repairs or (unrolled and version):
            return repairs + rolls, (
                f"unhealthy ({health.summary()}); a run "
                + ("repairs what a killed run left" if repairs else "rolls its readers")
                + " first"
            )
    if unrolled and version:
        # Before any settle: a killed run may have added the version and not rolled its
        # readers, and the region passes only once they are.
        lock()
        changed.append("its services were rolled to the secret's latest version")
        done.append("its readers were rolled")
        health = _roll_readers(topo, record, health, unrolled, version)
    elif settle:  # a promotion ended, or the apps were pointed: the region may take time
        health = _settled_health(topo)
    if done and not is_down(topo, health):
        return [], f"healthy once {' and '.join(done)} ({health.summary()})"
    stale = lift_stale_fences(
        topo, record, secondary_states, dry_run, topo.cloud_sql.primary, locked=bool(taken)
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
