"""The exit hook frees a run's region-lock slot only from outside the run's own process."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from flows import region_lock
from flows.region_lock import free_slot_of_ended_run

RUN_ID = "0b6a3f0e-1c1d-4a4e-9d51-0f3c2a9b7e11"


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Each Prefect client the hook asks for; none is made (no server in this tier)."""
    made: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        made.append((args, kwargs))
        raise RuntimeError("no Prefect server in the unit tier")

    monkeypatch.setattr(region_lock, "get_client", refuse)
    return made


def test_inside_the_runs_own_process_the_hook_leaves_the_slot_to_its_with(
    monkeypatch: pytest.MonkeyPatch, clients: list[Any]
) -> None:
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", RUN_ID)
    assert free_slot_of_ended_run(SimpleNamespace(id=RUN_ID)) is False
    assert clients == []  # the run's own `with concurrency(...)` releases it there


def test_from_the_workers_process_the_hook_looks_the_lease_up(
    monkeypatch: pytest.MonkeyPatch, clients: list[Any]
) -> None:
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    # The lookup fails here: the hook says so and lets the lease expire, as before.
    assert free_slot_of_ended_run(SimpleNamespace(id=RUN_ID)) is False
    assert len(clients) == 1


def test_a_run_with_no_id_is_left_alone(clients: list[Any]) -> None:
    assert free_slot_of_ended_run(SimpleNamespace(id="")) is False
    assert clients == []
