"""The failback's fence on the secondary region: set it, hold it, lift it whatever happens.

Cloud Run honours ingress, not scaling: a service at min 0 still serves. So the fence is
ingress internal-only on every secondary service (tasks/cloud_run_ingress.py). It is held
from before the promotion until the public path verifiably reaches the primary, and lifted
in every outcome: when the fenced steps end or fail (``fenced_secondary``), by the flow's
cancellation and crash hooks (``lift_fences_of_run``), by a resumed run (which re-enters
the fence, adopting the one in place, and lifts it), and by a refused one
(``lift_stale_fences``, under the region lock so that another run's fence is never lifted).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger
from prefect.logging import get_logger
from prefect.logging.loggers import flow_run_logger

from flows.region_lock import region_lock
from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.topology import Topology
from tasks.cloud_run import ServiceState, run_describe_service
from tasks.cloud_run_ingress import (
    FENCE_INGRESS,
    FenceResult,
    run_fence_ingress,
    run_lift_ingress_fence,
)


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


@dataclass(frozen=True)
class Fence:
    """The fences set, and when they all held (a perf_counter reading)."""

    results: list[FenceResult]
    held_at: float

    def seconds_held(self) -> float:
        return time.perf_counter() - self.held_at


@contextmanager
def fenced_secondary(topo: Topology, record: RunRecord) -> Iterator[Fence]:
    """Fence every secondary service for the block; lift the fences however it ends."""
    env, region = topo.environment, topo.regions.secondary
    owner = fence_owner(record)
    record.fence = {"ingress": FENCE_INGRESS, "region": region.name, "set": [], "lifted": []}
    held: float | None = None
    try:
        with record.step("fence-secondary") as step:
            futures = [
                run_fence_ingress.submit(env, region.project, region.name, s.name, owner)
                for s in topo.services
            ]
            fenced = [f.result() for f in futures]
            record.fence["set"] = [r.model_dump() for r in fenced]
            step.detail = "; ".join(r.describe() for r in fenced)
        held = time.perf_counter()
        yield Fence(fenced, held)
    finally:
        with record.step("lift-fence") as step:
            lifted = _lift_all(topo, [s.name for s in topo.services])
            record.fence["lifted"] = [r.model_dump() for r in lifted]
            step.detail = "; ".join(r.describe() for r in lifted)
        # A run that verified has set the outage already (it ended at the verification);
        # one that failed inside kept public traffic out until now.
        if held is not None and record.outage_seconds is None:
            record.outage_seconds = time.perf_counter() - held


def _lift_all(topo: Topology, services: list[str]) -> list[FenceResult]:
    """Lift each fence; every service is tried even if one fails, then the failure is raised."""
    env, region = topo.environment, topo.regions.secondary
    futures = [
        run_lift_ingress_fence.submit(env, region.project, region.name, name) for name in services
    ]
    results: list[FenceResult] = []
    failure: BaseException | None = None
    for future in futures:
        try:
            results.append(future.result())
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return results


def lift_stale_fences(
    topo: Topology,
    record: RunRecord,
    states: list[ServiceState],
    dry_run: bool,
    *,
    locked: bool = False,
) -> str:
    """Lift fences a killed run left, under the region lock; returns what was lifted.

    Taking the lock first matters: a fence held by a run still in progress is refused
    with the lock, and stays. ``locked``: this run holds it already.
    """
    fenced = [s.service for s in states if s.fenced_by]
    if not fenced or dry_run:
        return ""
    with ExitStack() as stack:
        if not locked:
            stack.enter_context(
                region_lock(topo.environment, record.incident_id, record.flow, record.operator)
            )
        step = stack.enter_context(record.step("lift-stale-fence"))
        lifted = _lift_all(topo, fenced)
        record.fence = {"lifted": [r.model_dump() for r in lifted]}
        step.detail = "; ".join(r.describe() for r in lifted)
    return step.detail


def lift_fences_of_run(flow_run: Any) -> list[str]:
    """Flow hook (cancelled, crashed): lift the fences this run's incident holds.

    The process worker runs it in its own process, after the flow's process has ended
    (killed included), outside any flow run: so tasks are called one at a time (``.submit``
    needs a flow's task runner and fails there), and every service is tried even when one
    fails. What it did is logged under the flow run, so the UI shows it.
    """
    logger = _hook_logger(flow_run)
    params = dict(getattr(flow_run, "parameters", None) or {})
    incident = params.get("incident_id")
    run_id = str(getattr(flow_run, "id", ""))

    def ours(holder: str) -> bool:
        return bool(holder) and bool(
            (incident and holder.startswith(f"failback/{incident}/"))
            or (run_id and holder.endswith(f"/{run_id}"))
        )

    try:
        topo = runtime.topology(str(params["environment"]))
    except Exception as exc:
        logger.error("could not lift the fence after the run ended early: %s", exc)
        return []
    env, region = topo.environment, topo.regions.secondary
    lifted: list[str] = []
    failed: list[str] = []
    for service in topo.services:
        try:
            state = run_describe_service(env, region.project, region.name, service.name)
            if ours(state.fenced_by):
                run_lift_ingress_fence(env, region.project, region.name, service.name)
                lifted.append(service.name)
        except Exception as exc:
            failed.append(f"{service.name}: {str(exc)[:200]}")
    logger.warning("lifted the fence on %s after the run ended early", lifted or "nothing")
    if failed:
        logger.error(
            "could not lift the fence after the run ended early (%s); a re-run of the "
            "incident lifts it",
            "; ".join(failed),
        )
    return lifted


def _hook_logger(flow_run: Any) -> Any:
    """The flow run's logger (its lines reach the server), else a plain one."""
    try:
        return get_run_logger()
    except Exception:  # hooks run outside the flow run's context
        pass
    try:
        return flow_run_logger(flow_run)
    except Exception:
        return get_logger("lifeboat.failback")
