"""What a killed failback of an incident may have left, read once, then planned or repaired.

A failback killed between the start of its promotion and its end can leave:
- its promotion of the rebuilt primary running (the region lock lets no other run
  promote it);
- its database fence set, on the secondary (no promotion, or a failed one) or, through
  replication, on the rebuilt primary it promoted;
- the apps naming an instance they cannot write to: the fenced secondary while the
  rebuilt primary is promoted, or the rebuilt primary while it is a replica.

Each leaves the primary region failing every check, and so the failback gate
(flows/failback_gate.py) refusing. ``read_left_state`` reads all of it once, as a
``LeftState``. A dry run's plan is that value's lines (pure: tests/unit hold them); a run
repairs it (``repair_left_state``), deciding each repair again under the region lock,
where a live run of the incident it waited for may have made it already.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from prefect import get_run_logger

from flows.database_connection import connection_detail, point_apps_at, promotion_began
from flows.database_fence import incident_owner, left_fence, open_left_fence
from flows.rebuilt_label import rebuilt_by
from lifeboat.record import RunRecord
from lifeboat.topology import CloudSql, SqlInstanceRef, Topology
from tasks.cloud_sql import describe
from tasks.cloud_sql_operations import running_operation, wait_operation
from tasks.cloud_sql_role_fence import sql_app_role_fence
from tasks.errors import PermanentError
from tasks.secret_manager import secret_manager_names

Repoint = Literal["promoted", "back", ""]


@dataclass(frozen=True)
class LeftState:
    """What a killed run of the incident left: the promotion still running (then nothing
    else is read: what follows depends on how it ends), the instance holding its
    database fence, and where the apps must be pointed."""

    promoting: str | None = None
    fenced: SqlInstanceRef | None = None
    repoint: Repoint = ""

    def plan(self, sql: CloudSql) -> list[str]:
        """What a run would repair, in order: a dry run's plan lines."""
        if self.promoting is not None:
            return [
                f"wait for the promotion of {sql.primary.instance} a killed run of the "
                "incident left running; then lift the database fence it left, and point the "
                "apps at the instance that is primary once it ends, if they name another"
            ]
        lines: list[str] = []
        if self.fenced is not None:
            lines.append(
                "lift the database fence a killed run of the incident left on "
                f"{self.fenced.instance}"
            )
        if self.repoint == "promoted":
            lines.append(
                f"point the apps at the promoted {sql.primary.instance}: the secret names "
                f"{sql.replica.instance}, fenced since that promotion began"
            )
        elif self.repoint == "back":
            lines.append(
                f"point the apps back at {sql.replica.instance}: the secret names "
                f"{sql.primary.instance}, a replica no promotion runs on"
            )
        return lines


def read_left_state(topo: Topology, record: RunRecord) -> LeftState:
    """Read what a killed run of the incident left (reads only)."""
    if (promoting := _promotion_running(topo)) is not None:
        return LeftState(promoting=promoting)
    sql = topo.cloud_sql
    return LeftState(
        fenced=left_fence(topo, record, sql.replica, sql.primary),
        repoint=_repoint_needed(topo, record),
    )


@dataclass
class Repaired:
    """What ``repair_left_state`` did, what of it changed something, and whether the
    region needs time to settle: a promotion ended, or the apps were pointed (their
    revisions roll); a role's LOGIN alone holds at once."""

    done: list[str]
    changed: list[str]
    settle: bool


def repair_left_state(
    topo: Topology, record: RunRecord, take_lock: Callable[[], object]
) -> Repaired:
    """Repair what ``read_left_state`` finds, in order, each under the region lock
    (``take_lock``, taken only when something is found): wait for the running promotion
    (then read again: it decides the rest); open the database fence where the killed
    run's own exit would have; point the apps at the database that is primary now."""
    sql = topo.cloud_sql
    done: list[str] = []
    changed: list[str] = []
    left = read_left_state(topo, record)
    if left.promoting is not None:
        # Under the lock: a run of the incident still alive is refused at once, not
        # after its promotion.
        take_lock()
        _wait_promotion(topo, record, left.promoting)
        done.append("the running promotion ended")
        left = read_left_state(topo, record)
    settle = bool(done)
    if left.fenced is not None and open_left_fence(
        topo, record, sql.replica, sql.primary, take_lock
    ):
        changed.append("the database fence a killed run left was lifted")
    needed = left.repoint
    if needed or left.fenced is not None:
        take_lock()
        # Read again under the lock (taken for the fence, or now): a live run of the
        # incident it waited for may have pointed the apps, or promoted and been killed
        # before pointing them, meanwhile.
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
        # Before the gate rolls unrolled readers to the latest version: that version is
        # the one naming the replica.
        why = f"the secret named {sql.primary.instance}, a replica no promotion runs on"
        _repoint(topo, record, "point-apps-back", sql.replica, why)
        changed.append(f"the apps were pointed back at {sql.replica.instance}")
        settle = True
    return Repaired(done + changed, changed, settle)


def _promotion_running(topo: Topology) -> str | None:
    """A promotion of the rebuilt primary a killed run of the incident left running: its
    name, if one runs."""
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


def _apps_on_a_replica(topo: Topology) -> bool:
    """The apps' secret names the rebuilt primary while it is a replica no promotion runs
    on. A run whose promotion failed after its roll, and could not point the apps back
    (killed, or the roll back failed), leaves them so, and its fence lifted: every write
    fails, and the primary region fails its checks."""
    rebuilt = topo.cloud_sql.primary
    if promotion_began(topo.environment, rebuilt):  # not a replica, or promoting: fine
        return False
    return bool(secret_manager_names(topo.environment, rebuilt.project, rebuilt.instance))


def _repoint_needed(topo: Topology, record: RunRecord) -> Repoint:
    """Where the apps must be pointed before the region can pass: at the promoted
    rebuilt primary, back at the promoted secondary, or nowhere. Opening the fence a
    killed run left does not change it: that fence is on the secondary only while the
    rebuilt primary is no primary, and "promoted" needs it one."""
    if _apps_on_the_fenced_secondary(topo, record):
        return "promoted"
    return "back" if _apps_on_a_replica(topo) else ""


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
