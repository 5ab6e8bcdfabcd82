"""The fencing lock every region switch takes: a GCS lease plus a Prefect concurrency slot.

The lease refuses a second switch at once and names its holder; it also fences runs that
bypass the Prefect server (break-glass). The Prefect global concurrency limit shows the
lock in the UI and closes the gap between two runs reading the lease at the same moment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from uuid import UUID

from prefect import get_client, get_run_logger
from prefect.concurrency.context import ConcurrencyContext
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.logging import get_logger
from prefect.logging.loggers import flow_run_logger

from flows.resume import refuse_a_completed_incident
from lifeboat.record import RunRecord
from tasks.errors import LockHeld
from tasks.storage import Lease, lease_acquire, lease_release

# Prefect renews a held slot's lease while the run lives; a killed run's slot frees
# itself after this long (60 s is Prefect's minimum), unless its hook frees it first.
SLOT_LEASE_S = 60
# The flow-run label naming the lease of the slot the run holds, for its exit hook.
SLOT_LEASE_LABEL = "lifeboat.slot-lease"


def _slot_wait(lease: Lease) -> float:
    """How long to wait for the Prefect slot.

    Another incident's run holding it means a second switch: refuse soon. Our own
    incident's lease found in place means this run resumes one that crashed, whose slot
    is still leased until it expires, so wait that out rather than refuse our own resume
    (or it duplicates a run still going, which then ends first: flows.region_lock.lock_step).
    Three leases, not one and a half: the server frees an expired lease from a loop of its
    own, which ran late on a loaded machine (the crash sweep's re-runs at two of 28 points
    were refused after 90 s, naming the run they resumed as "another run").
    """
    return SLOT_LEASE_S * 3 if lease.resumed else 15


def limit_name(environment: str) -> str:
    return f"dr-region-switch-{environment}"


@contextmanager
def region_lock(environment: str, incident_id: str, flow: str, holder: str) -> Iterator[Lease]:
    """The lease, then the slot; on the way out the lease goes first, then the slot.

    The lease belongs to the incident, not to one run of it: a second run of the same
    incident (a duplicate launch, or a re-run while the first still goes) takes it as its
    own and waits for the slot. That order of release lets it find the lease gone once it
    has the slot, and take it anew, instead of having its lease deleted under it.
    """
    logger = get_run_logger()
    lease = lease_acquire(environment, incident_id, flow, holder)
    logger.info(
        "took the region lock of %s: %s%s",
        environment,
        lease.describe(),
        " (this incident held it already: a crashed run of it, or one still going; "
        "its slot is waited for)"
        if lease.resumed
        else "",
    )
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    limit_name(environment),
                    occupy=1,
                    timeout_seconds=_slot_wait(lease),
                    strict=True,
                    lease_duration=SLOT_LEASE_S,
                )
            )
        except BaseException as exc:
            # A lease this incident held already may be a live run's: it keeps it.
            if not lease.resumed:
                lease_release(environment, incident_id)
            if not isinstance(exc, TimeoutError):
                raise
            holder_run = (
                "still held by another run of this incident: one still going, or a crashed "
                "one whose slot's lease was not freed in time; re-run the incident once it "
                "has ended"
                if lease.resumed
                else "held by another run"
            )
            raise LockHeld(
                f"region lock for {environment}: the Prefect concurrency limit "
                f"{limit_name(environment)} is {holder_run} ({exc})"
            ) from exc
        stack.callback(_release, environment, incident_id)  # before the slot: see above
        _label_the_slot_lease()
        if lease.resumed:
            # Taken now that the slot is ours; the run that held it may have released it.
            lease = lease_acquire(environment, incident_id, flow, holder, take_own=True)
        yield lease


def _label_the_slot_lease() -> None:
    """Name the slot's lease on the flow run, so that its exit hook can free the slot.

    A run killed mid-switch cannot release its slot, and Prefect lists no holders of a
    global limit, so its resume used to wait out the lease: 60-75 s of an incident's RTO.
    ``concurrency()`` does not return the lease; Prefect's concurrency context records
    it, to release it if the run is cancelled. Best effort: without the label, the slot
    frees itself when its lease expires, as before.
    """
    context = ConcurrencyContext.get()
    run = FlowRunContext.get()
    if context is None or not context.cleanup_lease_ids or run is None or run.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(
                run.flow_run.id, {SLOT_LEASE_LABEL: str(context.cleanup_lease_ids[-1])}
            )
    except Exception as exc:
        get_run_logger().warning("could not label the run with its slot's lease: %s", exc)


def hook_logger(flow_run: Any) -> Any:
    """The flow run's logger (its lines reach the server), else a plain one."""
    try:
        return get_run_logger()
    except Exception:  # hooks run outside the flow run's context
        pass
    try:
        return flow_run_logger(flow_run)
    except Exception:
        return get_logger("lifeboat.region_lock")


def free_slot_on_exit(flow: Any, flow_run: Any, state: Any) -> None:
    """The hook itself, for a flow that has nothing else to do when it ends early."""
    free_slot_of_ended_run(flow_run)


def free_slot_of_ended_run(flow_run: Any) -> bool:
    """Hook (cancelled, crashed): free the region-lock slot a run held when it ended.

    Only from the process worker's own process, which runs the hooks once the run's
    process has ended (killed included): so no part of the run still acts under the
    lock. Inside the run's own process the ``with`` that took the slot releases it. The
    incident's GCS lease stays, so a resume of the incident takes the lock at once, and
    another incident's switch is still refused. A lease already expired or released
    makes this a no-op. Returns whether a lease was released.
    """
    run_id = str(getattr(flow_run, "id", ""))
    if not run_id or os.environ.get("PREFECT__FLOW_RUN_ID") == run_id:
        return False
    logger = hook_logger(flow_run)
    try:
        with get_client(sync_client=True) as client:
            labels = client.read_flow_run(UUID(run_id)).labels or {}
            lease = labels.get(SLOT_LEASE_LABEL)
            if not lease:
                return False
            client.release_concurrency_slots_with_lease(UUID(str(lease)))
    except Exception as exc:
        logger.warning(
            "could not free the region-lock slot of run %s (it frees itself when its "
            "lease expires): %s",
            run_id,
            exc,
        )
        return False
    logger.info("freed the region-lock slot run %s held (lease %s)", run_id, lease)
    return True


def _release(environment: str, incident_id: str) -> None:
    if lease_release(environment, incident_id):
        get_run_logger().info("released the region lock of %s", environment)


def lock_step(held: ExitStack, record: RunRecord, *, once_per_incident: bool = True) -> Lease:
    """The ``region-lock`` step a switch takes before its first change: the lock is held
    on ``held`` for the rest of the run, and the step records who holds it.

    ``once_per_incident``: the incident's record is read again under the lock, and a run
    of an incident that completed meanwhile is refused. A duplicate launch passed the
    check at its start while the first run still went; the first run writes its record
    before it lets the lock go, so the second sees it here.
    """
    with record.step("region-lock") as step:
        lease = held.enter_context(
            region_lock(record.environment, record.incident_id, record.flow, record.operator)
        )
        step.detail = lease.describe()
    if once_per_incident:
        refuse_a_completed_incident(record, record.incident_id)
    return lease
