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
set, or the apps naming an instance they cannot write to (flows/left_state.py); those are
repaired first, under the lock, as the killed run would have, and the region probed
again.

A dry run changes nothing: its plan says which repairs and which roll would come first,
and that the run is refused if the region is still unhealthy after them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

from prefect import get_run_logger

from flows.fence import lift_stale_fences
from flows.left_state import read_left_state, repair_left_state
from flows.region_lock import lock_step
from flows.secret_refresh import refresh_secret_readers
from lifeboat.record import RunRecord
from lifeboat.topology import Topology
from tasks.cloud_run import ServiceState
from tasks.cloud_run_secrets import ReaderState, run_describe_secret_reader, split_version
from tasks.errors import PreflightRefused, TransientError
from tasks.health import HealthReport, Target, health_probe, health_verify
from tasks.secret_manager import secret_manager_latest_version
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
        repaired = repair_left_state(topo, record, lock)
        done, changed, settle = repaired.done, repaired.changed, repaired.settle
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
        repairs = read_left_state(topo, record).plan(topo.cloud_sql)
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
