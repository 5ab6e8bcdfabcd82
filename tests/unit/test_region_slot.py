"""Which runs a re-run may take the region's Prefect slot from (flows/region_slot.py)."""

from __future__ import annotations

import pytest
from prefect.client.schemas.objects import StateType

from flows.region_slot import is_over

# A run in one of these states has a process that may still renew its slot's lease: a
# re-run waits for it (a duplicate launch still going, a paused approval, a cancellation
# under way, a run whose kill the worker has not seen yet).
LIVE = {
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.CANCELLING,
}


@pytest.mark.parametrize("state", list(StateType))
def test_only_a_run_in_a_state_it_never_leaves_has_its_slot_taken(state: StateType) -> None:
    assert is_over(state) is (state not in LIVE)


def test_a_run_with_no_state_yet_keeps_its_slot() -> None:
    assert not is_over(None)
