"""A planned switch's database fence: the apps' role kept off the primary being replaced,
set after the ingress fence and before the replica's target is read
(tasks/cloud_sql_role_fence.py says why the ingress fence alone loses writes).

When it is lifted mirrors the ingress fence (flows/fence.py): before the promotion starts,
the fenced primary is still the primary, so it is opened again. Once the promotion has
started, the old primary stays fenced (a write there would be lost), and the promoted
instance, which inherited the fence through replication, is opened once it is the
primary: by the run right after its promotion, or on the way out, or by a re-run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from prefect import get_run_logger

from flows.fence import fence_owner, hook_logger, promotion_has_started
from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.topology import SqlInstanceRef, Topology
from tasks.cloud_sql import describe
from tasks.cloud_sql_role_fence import sql_app_role_fence, sql_fence_app_role, sql_open_app_role
from tasks.cloud_sql_wal import promotion_started


@contextmanager
def database_fenced(
    topo: Topology, record: RunRecord, primary: SqlInstanceRef, promoted: SqlInstanceRef
) -> Iterator[None]:
    """Fence the apps' role on ``primary`` for the block (step ``fence-database``; a
    failure raises: the flows promote nothing then); on the way out, open what may be
    opened (``_lift_on_exit``)."""
    fence: dict[str, Any] = {"instance": primary.instance}
    if record.fence is not None:
        record.fence["database"] = fence
    tried = False  # a try that failed may still have set NOLOGIN: the exit looks anyway
    try:
        with record.step("fence-database") as step:
            if promotion_has_started(topo, promoted, unknown=False):
                step.outcome = "unchanged"
                step.detail = (
                    f"the promotion of {promoted.instance} has started: {primary.instance} "
                    "is left as it is"
                )
            else:
                tried = True
                done = sql_fence_app_role(
                    topo.environment, primary.project, primary.instance, fence_owner(record)
                )
                fence["set"] = done.model_dump()
                step.detail = done.describe()
        yield
    finally:
        _lift_on_exit(topo, record, primary, promoted, fence, tried)


LiftOn = Literal["fenced", "promoted", ""]


def lift_on(promotion_started: bool, promoted_is_primary: bool) -> LiftOn:
    """Where a database fence is lifted: on the fenced instance while no promotion has
    started (it is still the primary); on the promoted one once it is a primary (the
    fence reached it through replication; the old primary stays fenced); nowhere while
    the promotion runs (a re-run, or the run waiting for it, lifts it after)."""
    if not promotion_started:
        return "fenced"
    return "promoted" if promoted_is_primary else ""


def incident_owner(record: RunRecord) -> str:
    """The prefix of every fence this incident's runs of the flow set (``fence_owner``)."""
    return f"{record.flow}/{record.incident_id}/"


def open_promoted(topo: Topology, record: RunRecord, promoted: SqlInstanceRef) -> None:
    """Step ``open-database``, when this incident's fence reached the new primary through
    replication: the apps' role may log in there again. Before anything checks the apps
    through it. Every run after its promotion looks (a read), whatever its mode: a re-run
    of an incident whose first run fenced the primary may find it looking down (that
    fence is why), and plan no fence of its own."""
    env, owner = topo.environment, incident_owner(record)
    if not sql_app_role_fence(env, promoted.project, promoted.instance).startswith(owner):
        return
    with record.step("open-database") as step:
        opened = sql_open_app_role(env, promoted.project, promoted.instance, owner)
        step.detail = opened.describe()
    if record.fence is not None and "database" in record.fence:
        record.fence["database"]["opened"] = opened.model_dump(exclude_none=True)


def left_fence(
    topo: Topology, record: RunRecord, fenced: SqlInstanceRef, promoted: SqlInstanceRef
) -> SqlInstanceRef | None:
    """Where an earlier run of the incident left its fence that a re-run may open now (a
    read): the promoted instance if its promotion ended well, else the fenced one (still
    the primary); None while a promotion runs (the run that waits for it opens it after),
    or when no fence of the incident is found."""
    env, owner = topo.environment, incident_owner(record)
    started = promotion_has_started(topo, promoted, unknown=True)
    where = lift_on(started, is_primary(topo, promoted))
    if not where:
        return None
    target = promoted if where == "promoted" else fenced
    if not sql_app_role_fence(env, target.project, target.instance).startswith(owner):
        return None
    return target


def open_left_fence(
    topo: Topology,
    record: RunRecord,
    fenced: SqlInstanceRef,
    promoted: SqlInstanceRef,
    take_lock: Callable[[], object],
) -> str:
    """A re-run's preflight, once ``left_fence`` has found a fence an earlier run of the
    incident left: open it, as that run's own exit would have, under the region lock
    (``take_lock``). Returns what it changed ("" for nothing: a run of the incident the
    lock waited for may have opened it meanwhile)."""
    take_lock()
    # Decided again under the lock: a live run of the incident it waited for may have
    # started a promotion meanwhile, and the secondary may no longer be opened.
    target = left_fence(topo, record, fenced, promoted)
    if target is None:
        return ""
    with record.step("lift-database-fence") as step:
        owner = incident_owner(record)
        opened = sql_open_app_role(topo.environment, target.project, target.instance, owner)
        step.detail = f"left by an earlier run of the incident: {opened.describe()}"
        if not opened.changed:
            step.outcome = "unchanged"
    return step.detail if opened.changed else ""


def _lift_on_exit(
    topo: Topology,
    record: RunRecord,
    primary: SqlInstanceRef,
    promoted: SqlInstanceRef,
    fence: dict[str, Any],
    tried: bool,
) -> None:
    """Never raises: the run's own failure is the one to report. What could not be lifted
    is recorded and logged; a re-run of the incident lifts it (``open_left_fence``)."""
    if "opened" in fence:
        return  # the run opened the new primary after its promotion: nothing is left
    started = promotion_has_started(topo, promoted, unknown=True)
    if not started and not tried:
        return  # nothing set, nothing to lift
    try:
        with record.step("lift-database-fence") as step:
            step.detail = _lift(topo, record, primary, promoted, fence, started)
            if "lifted" not in fence and not fence.get("opened", {}).get("changed"):
                step.outcome = "unchanged"
    except Exception as exc:
        fence["not_lifted"] = str(exc)[:300]
        get_run_logger().error(
            "could not lift the database fence: %s; a re-run of the incident lifts it", exc
        )


def _lift(
    topo: Topology,
    record: RunRecord,
    primary: SqlInstanceRef,
    promoted: SqlInstanceRef,
    fence: dict[str, Any],
    started: bool,
) -> str:
    env, owner = topo.environment, incident_owner(record)
    where = lift_on(started, started and is_primary(topo, promoted))
    if where == "fenced":
        opened = sql_open_app_role(env, primary.project, primary.instance, owner)
        if opened.changed:
            fence["lifted"] = opened.model_dump(exclude_none=True)
        return f"no promotion started: {opened.describe()}"
    if where == "promoted":
        opened = sql_open_app_role(env, promoted.project, promoted.instance, owner)
        fence["opened"] = opened.model_dump(exclude_none=True)
        return f"{opened.describe()}; {primary.instance} stays fenced"
    fence["kept"] = primary.instance
    detail = (
        f"the promotion of {promoted.instance} has started but not ended: "
        f"{primary.instance} stays fenced, and a re-run of the incident opens "
        f"{promoted.instance} once it is the primary"
    )
    get_run_logger().warning("%s", detail)
    return detail


def is_primary(topo: Topology, ref: SqlInstanceRef) -> bool:
    """Whether Cloud SQL shows ``ref`` a primary; False when it cannot say."""
    try:
        return not describe(topo.environment, ref.project, ref.instance).is_replica
    except Exception as exc:
        get_run_logger().warning("could not read %s: %s", ref.instance, exc)
        return False


def open_database_of_run(
    flow_run: Any,
    flow: str,
    primary: Callable[[Topology], SqlInstanceRef],
    promoted: Callable[[Topology], SqlInstanceRef],
) -> None:
    """Flow hook (cancelled, crashed): the same decision as a run's own exit, for this
    incident's fence, one call at a time (there is no task runner there); what it did is
    logged under the flow run. ``primary``: the instance the flow fences; ``promoted``:
    the one it promotes."""
    logger = hook_logger(flow_run)
    params = dict(getattr(flow_run, "parameters", None) or {})
    try:
        topo = runtime.topology(str(params["environment"]))
        owner = f"{flow}/{params['incident_id']}/"
        fenced, promoting = primary(topo), promoted(topo)
        started = promotion_started(topo.environment, promoting.project, promoting.instance)
        where = lift_on(started, started and is_primary(topo, promoting))
        target = promoting if where == "promoted" else fenced
        if not where:
            logger.warning(
                "the promotion of %s has started but not ended: a re-run of the incident "
                "opens it to the apps' role",
                promoting.instance,
            )
            return
        opened = sql_open_app_role(topo.environment, target.project, target.instance, owner)
        logger.warning("the apps' database, the run having stopped: %s", opened.describe())
    except Exception as exc:
        logger.error("could not open the apps' database, the run having stopped: %s", exc)
