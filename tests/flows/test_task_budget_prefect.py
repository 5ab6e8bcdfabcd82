"""A task's declared budget through the real Prefect engine (the lab's server).

The unit tier (tests/unit/test_task_budget.py) checks the budget on the callable Prefect
runs; this checks Prefect itself: the attempt runs on a worker thread (``.submit``), the
budget is set there, and Prefect's retry starts the next attempt with a fresh budget.
"""

from __future__ import annotations

import time

from lifeboat import budget
from tasks.errors import BudgetExhausted
from tasks.polling import wait_until
from tests.labharness import Lab

# Prefect is imported inside the tests: the lab must start first (tests/labharness.py).


def test_prefect_runs_each_attempt_inside_a_fresh_budget(lab: Lab) -> None:
    from prefect import flow

    from tasks.retrying import cloud_task

    attempts: list[tuple[str, float | None]] = []

    @cloud_task(timeout_seconds=0.5, retries=1)
    def slow_then_quick() -> float | None:
        """First attempt: a wait that would take 30 s. Second: reports its own budget."""
        left = budget.remaining()
        if not attempts:
            attempts.append(("waited", left))
            wait_until(lambda: None, timeout=30, interval=(0.01, 0.05), what="a stuck rollout")
        attempts.append(("returned", left))
        return left

    @flow(name="budget-check", persist_result=False)
    def budget_check() -> float | None:
        return slow_then_quick.submit().result()

    started = time.monotonic()
    left = budget_check()
    elapsed = time.monotonic() - started
    assert [what for what, _ in attempts] == ["waited", "returned"]
    first_left, second_left = attempts[0][1], attempts[1][1]
    assert first_left is not None and 0.3 < first_left <= 0.5
    assert second_left is not None and 0.3 < second_left <= 0.5, "the retry had no fresh budget"
    assert left == second_left
    assert elapsed < 28, f"the flow took {elapsed:.1f} s: the 30 s wait was not cut short"
    assert budget.current() is None  # the flow's own thread never had one


def test_prefect_reports_the_budget_it_ran_out_of(lab: Lab) -> None:
    from prefect import flow

    from tasks.retrying import cloud_task

    @cloud_task(timeout_seconds=0.3, retries=0)
    def stuck_step() -> None:
        wait_until(lambda: None, timeout=30, interval=(0.01, 0.05), what="a stuck rollout")

    @flow(name="budget-check-fail", persist_result=False)
    def fails() -> None:
        stuck_step.submit().result()

    started = time.monotonic()
    try:
        fails()
    except BudgetExhausted as exc:
        assert "step stuck_step's declared budget of 0.3 s ran out" in str(exc)
    else:
        raise AssertionError("the flow did not fail")
    assert time.monotonic() - started < 28  # the wait alone would take 30 s
