"""The Prefect half of the region lock: a global concurrency slot that a re-run of an
incident frees at once when the run holding it is known to be over.

Prefect's ``concurrency()`` keeps its lease's id to itself. A run killed with SIGKILL
(an OOM kill, a lost node) then keeps the slot until the lease expires: 60 s at least,
then the server's repossessor loop. The operator's re-run of the incident, at the worst
moment of their year, waited that out doing nothing: 60 to 105 s added to the RTO.

So the slot is held here with the pieces ``concurrency()`` is made of (acquire with a
lease, renew it from a thread, release it; prefect 3.8's own modules), and the run writes
the lease's id in a label on its own flow run, where the UI shows it too. A re-run finds
the run that holds the incident's lease (``Lease.flow_run_id``); if Prefect has it in a
final state, it releases that run's slot lease, then takes the slot. A run still going (a
duplicate launch), or one whose state Prefect has not settled yet, is waited for as
before. Prefect marks a run Crashed once its worker has seen the process end, so a
crashed run renews nothing: its slot only blocks.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import TERMINAL_STATES, ConcurrencyLeaseHolder, StateType
from prefect.concurrency._asyncio import _discard_cleanup_lease
from prefect.concurrency._events import (
    emit_concurrency_acquisition_events,
    emit_concurrency_release_events,
)
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import (
    acquire_concurrency_slots_with_lease,
    release_concurrency_slots_with_lease,
)

# The label on a flow run that holds the region's slot: the id of its slot's lease.
SLOT_LEASE_LABEL = "lifeboat.dev/region-slot-lease"
# While a re-run waits for the slot, how often it asks whether the run holding it has
# ended. The wait for the slot itself asks again when its 423 says (5 s: the lab's and
# production's server setting, deployments/prod/server.env.example).
HOLDER_CHECK_S = 2.0


def is_over(state_type: StateType | None) -> bool:
    """Whether a run in this state can hold nothing any more: a state it never leaves
    (Completed, Failed, Crashed, Cancelled), where nothing renews its lease."""
    return state_type in TERMINAL_STATES


def free_slot_of_ended_run(holder_run_id: str) -> tuple[str, str]:
    """Release the slot lease of ``holder_run_id`` if that run is over.

    Returns (what was done, for the region-lock step; why not, for the log): one of the
    two is "". Best effort: a failure to read or release only means the slot is waited
    for, as a run that cannot tell would do, so it is never raised.
    """
    try:
        with get_client(sync_client=True) as client:
            holder = client.read_flow_run(UUID(holder_run_id))
            state = holder.state.type.value if holder.state else "without a state"
            lease_id = holder.labels.get(SLOT_LEASE_LABEL)
            if not (holder.state and is_over(holder.state.type) and lease_id):
                why = "" if lease_id else " and names no slot lease"
                return "", f"the region slot's holder, flow run {holder_run_id}, is {state}{why}"
            client.release_concurrency_slots_with_lease(UUID(str(lease_id)))
    except Exception as exc:  # an optimisation must not fail the switch
        return "", f"could not free the region slot of flow run {holder_run_id}: {exc}"
    return f"flow run {holder_run_id} is {state}: its region slot lease {lease_id} is released", ""


class _HolderWatch:
    """Asks whether the run holding the slot has ended, and frees its slot if it has: once
    now, then every ``HOLDER_CHECK_S`` while this run waits for the slot. A re-run
    launched the moment its run was killed finds that run still Running, until the
    worker has seen its process end."""

    def __init__(self, holder_run_id: str) -> None:
        self.holder_run_id = holder_run_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.freed, why = free_slot_of_ended_run(holder_run_id)
        logger = get_run_logger()
        if self.freed:
            logger.info(self.freed)
            return
        logger.info("%s: its slot is waited for", why)
        # The run's logger needs the run's context, which a new thread does not inherit.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._watch,), name="region-slot-holder", daemon=True
        )
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(HOLDER_CHECK_S):
            freed, _ = free_slot_of_ended_run(self.holder_run_id)
            if freed:
                get_run_logger().info(freed)
                self.freed = freed
                return

    def stop(self) -> str:
        """What was freed; a check under way when the slot came is waited for."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self.freed


@contextmanager
def region_slot(
    limit: str,
    *,
    timeout_s: float,
    lease_s: float,
    own_run_id: str | None,
    holder_run_id: str = "",
) -> Iterator[str]:
    """Hold one slot of ``limit``: what ``concurrency(limit, strict=True)`` does, with the
    lease's id labelled on this flow run. ``holder_run_id``: the run this one resumes,
    whose slot is freed once it has ended. Yields what was freed to get the slot (mostly
    ""); TimeoutError when the slot is not free in time."""
    watch = _HolderWatch(holder_run_id) if holder_run_id and holder_run_id != own_run_id else None
    holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(own_run_id)) if own_run_id else None
    try:
        acquired = acquire_concurrency_slots_with_lease(
            [limit],
            1,
            timeout_seconds=timeout_s,
            strict=True,
            lease_duration=lease_s,
            holder=holder,
        )
    finally:
        freed = watch.stop() if watch else ""
    events = emit_concurrency_acquisition_events(acquired.limits, 1)
    try:
        if own_run_id:
            _label(own_run_id, acquired.lease_id)
        # A renewal that fails ends the run (strict): a run whose slot has lapsed must not
        # go on beside the one that took it.
        with maintain_concurrency_lease(
            acquired.lease_id, lease_s, raise_on_lease_renewal_failure=True
        ):
            yield freed
    finally:
        release_concurrency_slots_with_lease(acquired.lease_id)
        _discard_cleanup_lease(acquired.lease_id)
        emit_concurrency_release_events(acquired.limits, 1, events)


def _label(run_id: str, lease_id: UUID) -> None:
    """Without the label a re-run only waits longer, so a failure here is logged."""
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(UUID(run_id), {SLOT_LEASE_LABEL: str(lease_id)})
    except Exception as exc:  # the slot is held: only a re-run waits longer
        get_run_logger().warning("could not label the run with its slot lease: %s", exc)
