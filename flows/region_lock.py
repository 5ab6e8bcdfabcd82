"""The fencing lock every region switch takes: a GCS lease plus a Prefect concurrency slot.

The lease refuses a second switch at once and names its holder; it also fences runs that
bypass the Prefect server (break-glass). The Prefect global concurrency limit shows the
lock in the UI and closes the gap between two runs reading the lease at the same moment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect import get_run_logger
from prefect.runtime import flow_run

from flows.region_slot import region_slot
from flows.resume import refuse_a_completed_incident
from lifeboat.record import RunRecord
from tasks.errors import LockHeld
from tasks.storage import Lease, lease_acquire, lease_release

# Prefect renews a held slot's lease while the run lives; a killed run's slot frees
# itself after this long (60 s is Prefect's minimum).
SLOT_LEASE_S = 60


def _slot_wait(lease: Lease) -> float:
    """How long to wait for the Prefect slot.

    Another incident's run holding it means a second switch: refuse soon. Our own
    incident's lease found in place means this run resumes one that crashed. Its slot was
    freed if Prefect has that run in a final state (flows.region_slot); otherwise it is
    still leased until it expires, so wait that out rather than refuse our own resume
    (or it duplicates a run still going, which then ends first: flows.region_lock.lock_step).
    Three leases, not one and a half: the server frees an expired lease from a loop of its
    own, which ran late on a loaded machine (the crash sweep's re-runs at two of 28 points
    were refused after 90 s, naming the run they resumed as "another run").
    """
    return SLOT_LEASE_S * 3 if lease.resumed else 15


def limit_name(environment: str) -> str:
    return f"dr-region-switch-{environment}"


@contextmanager
def region_lock(
    environment: str, incident_id: str, flow: str, holder: str
) -> Iterator[tuple[Lease, str]]:
    """The lease, then the slot, and what was freed to get it (mostly ""); on the way out
    the lease goes first, then the slot.

    The lease belongs to the incident, not to one run of it: a second run of the same
    incident (a duplicate launch, or a re-run while the first still goes) takes it as its
    own and waits for the slot. That order of release lets it find the lease gone once it
    has the slot, and take it anew, instead of having its lease deleted under it. A re-run
    after a crash frees the crashed run's slot instead of waiting for its lease to expire
    (flows.region_slot).
    """
    logger = get_run_logger()
    run_id = flow_run.get_id()
    lease = lease_acquire(environment, incident_id, flow, holder, flow_run_id=run_id or "")
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
            freed = stack.enter_context(
                region_slot(
                    limit_name(environment),
                    timeout_s=_slot_wait(lease),
                    lease_s=SLOT_LEASE_S,
                    own_run_id=run_id,
                    holder_run_id=lease.flow_run_id if lease.resumed else "",
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
        if lease.resumed:
            # Taken now that the slot is ours; the run that held it may have released it.
            lease = lease_acquire(
                environment, incident_id, flow, holder, take_own=True, flow_run_id=run_id or ""
            )
        yield lease, freed


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
        lease, freed = held.enter_context(
            region_lock(record.environment, record.incident_id, record.flow, record.operator)
        )
        step.detail = "; ".join(filter(None, [lease.describe(), freed]))
    if once_per_incident:
        refuse_a_completed_incident(record, record.incident_id)
    return lease
