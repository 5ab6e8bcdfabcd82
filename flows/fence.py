"""A planned switch's fence: public traffic, and so every write, kept off a region's services
while its database stops being the primary.

Cloud Run honours ingress, not scaling: a service at min 0 still serves. So the fence is
ingress internal-only on every service of the region (tasks/cloud_run_ingress.py): the
secondary's for a failback, the primary's for a graceful failover. It is set before the
promotion and held until the public path verifiably reaches the other region.

When it may be lifted is the point of it (``lift_decision``). Before the promotion starts,
the fenced services' database is still the primary and still replicates, so lifting loses
nothing: a run that fails or is killed then lifts it. Once the promotion has started, a
fenced service that still names the old database would write where no one will read:
its fence is kept until it names the new one (the run repointed it), and otherwise until
a re-run of the incident finishes the switch and lifts it. The flows' cancellation and
crash hooks (``lift_fences_of_run``) and a refused re-run (``lift_stale_fences``, under
the region lock so that another run's fence is never touched) follow the same rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.futures import PrefectFuture
from prefect.logging import get_logger
from prefect.logging.loggers import flow_run_logger

from flows.region_lock import region_lock
from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.topology import Region, RegionRole, SqlInstanceRef, Topology
from tasks.cloud_run import ServiceState, run_describe_service
from tasks.cloud_run_ingress import (
    FENCE_INGRESS,
    FenceResult,
    run_fence_ingress,
    run_lift_ingress_fence,
)
from tasks.cloud_sql_wal import promotion_started

T = TypeVar("T")


def fence_owner(record: RunRecord) -> str:
    """Who holds the fence, written on each service: flow, incident and flow run."""
    return f"{record.flow}/{record.incident_id}/{record.flow_run_id or 'local'}"


def describe_services(topo: Topology, project: str, region: str) -> list[ServiceState]:
    futures = [
        run_describe_service.submit(topo.environment, project, region, s.name)
        for s in topo.services
    ]
    return [f.result() for f in futures]


def fence_line(region: str, state: ServiceState) -> str:
    if state.fenced_by:
        return (
            f"keep the fence on {region}/{state.service} (set by {state.fenced_by}; "
            f"ingress {state.ingress_before} before it)"
        )
    return (
        f"fence {region}/{state.service}: ingress {state.ingress or 'unknown'} → "
        f"{FENCE_INGRESS} (public traffic and writes stop: the planned outage starts)"
    )


def lift_line(region: str, state: ServiceState) -> str:
    restore = state.ingress_before if state.fenced_by else state.ingress
    return f"lift the fence: {region}/{state.service} ingress → {restore or 'unknown'}"


def lift_decision(
    fenced: Sequence[str], promotion_started: bool, repointed: set[str]
) -> tuple[list[str], list[str]]:
    """Which fenced services may be lifted now, and which must stay fenced.

    Before the promotion starts, all: their database is still the primary. After, only
    those repointed to the new primary; the others would write to a database that is
    no longer one.
    """
    if not promotion_started:
        return list(fenced), []
    return [s for s in fenced if s in repointed], [s for s in fenced if s not in repointed]


def fence_decision(
    services: Sequence[str], promotion_started: bool, fenced_now: set[str]
) -> list[str]:
    """Which services a run fences. Before the promotion starts, all. After it (a resumed
    run), only those still fenced, which it adopts: by ``lift_decision`` a service lifted
    after the promotion had been repointed, and fencing it again would be an outage for
    nothing (the failback crash sweep's re-run after a kill at the lift, 8 updates more).
    """
    if not promotion_started:
        return list(services)
    return [s for s in services if s in fenced_now]


@dataclass
class Fence:
    """A fence in place: what was set, when it all held, and what the run has done since
    that decides what may be lifted (the flow sets ``promotion_started`` just before it
    asks for the promotion, and adds to ``repointed`` once a service names the new
    database)."""

    region: Region
    results: list[FenceResult]
    held_at: float
    unfenced: dict[str, str] = field(default_factory=dict)  # best effort: service → why not
    promotion_started: bool = False
    repointed: set[str] = field(default_factory=set)

    def seconds_held(self) -> float:
        return time.perf_counter() - self.held_at


@contextmanager
def fenced(
    topo: Topology,
    record: RunRecord,
    role: RegionRole,
    promoted: SqlInstanceRef,
    *,
    required: bool = True,
    skip: dict[str, str] | None = None,
) -> Iterator[Fence]:
    """Fence every service of the region for the block; on the way out, lift what
    ``lift_decision`` allows and keep the rest, saying why. ``promoted``: the replica the
    run promotes; when the flow said the promotion started, Cloud SQL is asked whether it
    did (a refused request started nothing, and then everything is lifted).

    ``required`` False (a failover whose primary looks down): each service is tried
    once; what could not be fenced is reported in the step and the record, not raised.
    ``skip``: services not even tried, with why (their region did not answer the
    preflight: a try would only cost the recovery its client's retries).
    """
    region = topo.regions.by_role(role)
    owner = fence_owner(record)
    services = [s.name for s in topo.services]
    record.fence = {"ingress": FENCE_INGRESS, "region": region.name, "set": [], "lifted": []}
    fence: Fence | None = None
    resumed = promotion_has_started(topo, promoted, unknown=False)
    asked = [name for name in services if name not in (skip or {})]
    targets = asked
    try:
        with record.step(f"fence-{role.value}") as step:
            unread: dict[str, str] = {}
            if resumed:
                fenced_now, unread = _fences_held(topo, region, asked, required=required)
                targets = fence_decision(asked, True, fenced_now)
            task = run_fence_ingress if required else run_fence_ingress.with_options(retries=0)
            futures = {
                name: task.submit(topo.environment, region.project, region.name, name, owner)
                for name in targets
            }
            results, failed = _collect(futures, raise_failure=required)
            unfenced = {**(skip or {}), **unread, **failed}
            record.fence["set"] = [r.model_dump() for r in results]
            step.detail = "; ".join(r.describe() for r in results)
            left = [name for name in asked if name not in targets and name not in unread]
            if left:
                record.fence["left_open"] = left
                step.detail += (
                    f"; left open: {', '.join(left)} (the promotion had started, and these "
                    "were lifted once they named the new primary)"
                )
            if unfenced:
                record.fence["unfenced"] = unfenced
                step.detail += "; not fenced (best effort, its region looks down): " + "; ".join(
                    f"{name}: {why}" for name, why in unfenced.items()
                )
        fence = Fence(region, results, time.perf_counter(), unfenced, promotion_started=resumed)
        yield fence
    finally:
        # A required fence that failed may have been set on some services without a
        # result to say so: all its targets are lifted (a service with no fence is left
        # alone). A best effort one lifts what it set, not asking a region that looks down.
        ours = targets if required or fence is None else [r.service for r in fence.results]
        started = fence is not None and fence.promotion_started
        if fence is not None and started and set(ours) - fence.repointed:
            started = promotion_has_started(topo, promoted, unknown=True)
        _lift_on_exit(topo, record, region, ours, fence, started, required)


def _fences_held(
    topo: Topology, region: Region, services: Sequence[str], *, required: bool
) -> tuple[set[str], dict[str, str]]:
    """Which of ``services`` hold a fence now, and, for a best-effort fence, those that
    could not be read, with why (their region looks down: a resumed failover goes on)."""
    futures = {
        name: run_describe_service.submit(topo.environment, region.project, region.name, name)
        for name in services
    }
    states, unread = _collect(futures, raise_failure=required)
    unknown = {
        name: f"could not read it, so it may still hold an earlier run's fence: {why}"
        for name, why in unread.items()
    }
    return {st.service for st in states if st.fenced_by}, unknown


def promotion_has_started(topo: Topology, promoted: SqlInstanceRef, *, unknown: bool) -> bool:
    """Whether the promotion has started, as Cloud SQL says; ``unknown`` when it cannot
    say: the safe side of the caller (fence everything: False; keep the fence: True)."""
    try:
        return promotion_started(topo.environment, promoted.project, promoted.instance)
    except Exception as exc:
        get_run_logger().warning("could not tell whether the promotion started: %s", exc)
        return unknown


def _lift_on_exit(
    topo: Topology,
    record: RunRecord,
    region: Region,
    services: list[str],
    fence: Fence | None,
    started: bool,
    required: bool,
) -> None:
    assert record.fence is not None
    lift, keep = lift_decision(services, started, fence.repointed if fence else set())
    if not lift and not keep:
        return  # a best-effort fence that set nothing: nothing to lift, no step to show
    with record.step("lift-fence") as step:
        lifted, failed = _lift_all(topo, region, lift, raise_failure=required)
        record.fence["lifted"] = [r.model_dump() for r in lifted]
        parts = [r.describe() for r in lifted]
        if failed:
            record.fence["not_lifted"] = failed
            parts += [f"could not lift {name}: {why}" for name, why in failed.items()]
        if keep:
            record.fence["kept"] = keep
            parts.append(kept_message(region, keep))
            get_run_logger().warning(kept_message(region, keep))
        step.detail = "; ".join(parts)
    # A run that verified has set the outage already (it ended at the verification);
    # one that failed inside kept public traffic out until now.
    if fence is not None and record.outage_seconds is None:
        record.outage_seconds = fence.seconds_held()


def kept_message(region: Region, keep: Sequence[str]) -> str:
    return (
        f"kept the fence on {region.name}/{', '.join(keep)}: the promotion has started and "
        "they may still name the old database, so lifting it would let writes land where "
        "they would be lost; a re-run of the incident finishes the switch and lifts it"
    )


def _collect(
    futures: Mapping[str, PrefectFuture[T]], *, raise_failure: bool
) -> tuple[list[T], dict[str, str]]:
    """Each future's result; failures raised after all have ended, or returned by name."""
    results: list[T] = []
    failed: dict[str, str] = {}
    failure: BaseException | None = None
    for name, future in futures.items():
        try:
            results.append(future.result())
        except Exception as exc:
            failure = failure or exc
            failed[name] = str(exc)[:300]
    if failure is not None and raise_failure:
        raise failure
    return results, failed


def _lift_all(
    topo: Topology, region: Region, services: Sequence[str], *, raise_failure: bool = True
) -> tuple[list[FenceResult], dict[str, str]]:
    """Lift each fence; every service is tried even if one fails. A service with no
    Lifeboat fence is left alone (the task reads its annotations first)."""
    futures = {
        name: run_lift_ingress_fence.submit(topo.environment, region.project, region.name, name)
        for name in services
    }
    return _collect(futures, raise_failure=raise_failure)


def lift_fences(
    topo: Topology, record: RunRecord, role: RegionRole, states: list[ServiceState], step: str
) -> str:
    """Lift the fences ``states`` show on a region, in a step of their own; returns what
    was lifted. For a run that has repointed those services itself (a failback lifting
    what a failover had to keep on the primary)."""
    region = topo.regions.by_role(role)
    fenced = [s.service for s in states if s.fenced_by]
    if not fenced:
        return ""
    with record.step(step) as running:
        lifted, _ = _lift_all(topo, region, fenced)
        running.detail = "; ".join(r.describe() for r in lifted)
    return running.detail


def lift_stale_fences(
    topo: Topology,
    record: RunRecord,
    states: list[ServiceState],
    dry_run: bool,
    promoted: SqlInstanceRef,
    *,
    locked: bool = False,
) -> str:
    """Lift the fences a killed run left on the secondary, under the region lock, unless
    its promotion of ``promoted`` had started; returns what was done, for the message.

    Taking the lock first matters: a fence held by a run still in progress is refused
    with the lock, and stays. ``locked``: this run holds it already.
    """
    fenced = [s.service for s in states if s.fenced_by]
    if not fenced or dry_run:
        return ""
    region = topo.regions.secondary
    with ExitStack() as stack:
        if not locked:
            stack.enter_context(
                region_lock(topo.environment, record.incident_id, record.flow, record.operator)
            )
        step = stack.enter_context(record.step("lift-stale-fence"))
        if promotion_started(topo.environment, promoted.project, promoted.instance):
            record.fence = {"kept": fenced}
            step.outcome = "unchanged"
            step.detail = kept_message(region, fenced)
            return f"the fence a killed run left is kept: {step.detail}"
        lifted, _ = _lift_all(topo, region, fenced)
        record.fence = {"lifted": [r.model_dump() for r in lifted]}
        step.detail = "; ".join(r.describe() for r in lifted)
    return f"the fence a killed run left was lifted ({step.detail})"


def lift_fences_of_run(
    flow_run: Any, flow: str, role: RegionRole, promoted: Callable[[Topology], SqlInstanceRef]
) -> list[str]:
    """Flow hook (cancelled, crashed): lift the fences this run's incident holds on the
    region, unless the promotion of ``promoted(topology)`` has started (then a re-run of
    the incident lifts them).

    The process worker runs it in its own process, after the flow's process has ended
    (killed included), outside any flow run: so tasks are called one at a time (``.submit``
    needs a flow's task runner and fails there), and every service is tried even when one
    fails. What it did is logged under the flow run, so the UI shows it.
    """
    logger = hook_logger(flow_run)
    params = dict(getattr(flow_run, "parameters", None) or {})
    incident = params.get("incident_id")
    run_id = str(getattr(flow_run, "id", ""))

    def ours(holder: str) -> bool:
        # A holder is flow/incident/flow run: this run, or an earlier run of the incident.
        return bool(holder) and bool(
            (incident and holder.startswith(f"{flow}/{incident}/"))
            or (run_id and holder.endswith(f"/{run_id}"))
        )

    try:
        topo = runtime.topology(str(params["environment"]))
        region = topo.regions.by_role(role)
        instance = promoted(topo)
        started = promotion_started(topo.environment, instance.project, instance.instance)
    except Exception as exc:
        logger.error("could not decide on the fence after the run ended early: %s", exc)
        return []
    env = topo.environment
    lifted: list[str] = []
    kept: list[str] = []
    failed: list[str] = []
    for service in topo.services:
        try:
            state = run_describe_service(env, region.project, region.name, service.name)
            if not ours(state.fenced_by):
                continue
            if started:
                kept.append(service.name)
                continue
            run_lift_ingress_fence(env, region.project, region.name, service.name)
            lifted.append(service.name)
        except Exception as exc:
            failed.append(f"{service.name}: {str(exc)[:200]}")
    if kept:
        logger.warning("%s", kept_message(region, kept))
    logger.warning("lifted the fence on %s after the run ended early", lifted or "nothing")
    if failed:
        logger.error(
            "could not lift the fence after the run ended early (%s); a re-run of the "
            "incident lifts it",
            "; ".join(failed),
        )
    return lifted


def hook_logger(flow_run: Any) -> Any:
    """The flow run's logger (its lines reach the server), else a plain one."""
    try:
        return get_run_logger()
    except Exception:  # hooks run outside the flow run's context
        pass
    try:
        return flow_run_logger(flow_run)
    except Exception:
        return get_logger("lifeboat.fence")
