"""The declared time budget of the step running now: a deadline per task attempt.

``tasks.retrying.cloud_task(timeout_seconds=N)`` runs each attempt of a task inside
``step_budget(name, N)``. Prefect's own task timeout cannot interrupt a blocking call on
a worker thread (reference/prefect.md), so the budget is enforced from inside: waits
(``tasks.polling``) and single API calls (``runtime.call_timeout``) ask ``remaining`` how
long they may take. Outside any step nothing is capped, so a flow, a CLI or a test that calls
these helpers directly behaves as before.

The deadline lives in a ``ContextVar``: set inside the attempt (so on the worker thread
that runs it), reset when the attempt ends, and never seen by another thread or run.
Pure: no Prefect, no clients.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# A single API call made when the budget is (nearly) spent still gets this long, so it can
# answer or fail cleanly; the wait that follows it then reports the budget.
MIN_CALL_S = 1.0


@dataclass(frozen=True)
class StepBudget:
    """One attempt's budget: the step that declared it, its size, and when it ends."""

    step: str
    seconds: float
    deadline: float  # time.monotonic() value

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def describe(self) -> str:
        return f"step {self.step}'s declared budget of {self.seconds:g} s ran out"


_current: ContextVar[StepBudget | None] = ContextVar("lifeboat_step_budget", default=None)


def current() -> StepBudget | None:
    """The budget of the step running in this context, if any."""
    return _current.get()


def remaining() -> float | None:
    """Seconds left of the running step's budget; None outside any step."""
    budget = _current.get()
    return None if budget is None else budget.remaining()


def call_timeout(configured: float) -> float:
    """A single call's timeout: ``configured``, capped by the budget but never below
    ``MIN_CALL_S``.

    The cap is rounded up to whole seconds: lifeboat/sqladmin keeps one HTTP transport per
    timeout value per thread, so a fresh fraction on every call would open a new one each.
    """
    left = remaining()
    return configured if left is None else min(configured, max(math.ceil(left), MIN_CALL_S))


@contextmanager
def step_budget(step: str, seconds: float) -> Iterator[StepBudget]:
    """Run the block with a deadline ``seconds`` from now, named after ``step``.

    A step called from inside another (``other_task.fn(...)``) cannot extend the outer
    deadline: the tighter of the two applies.
    """
    outer = _current.get()
    mine = StepBudget(step=step, seconds=seconds, deadline=time.monotonic() + seconds)
    budget = outer if outer is not None and outer.deadline <= mine.deadline else mine
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def within_budget(step: str, seconds: float) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate ``fn`` so that each call (each task attempt) runs inside its own budget."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def attempt(*args: P.args, **kwargs: P.kwargs) -> R:
            with step_budget(step, seconds):
                return fn(*args, **kwargs)

        attempt.budget_seconds = seconds  # type: ignore[attr-defined]
        return attempt

    return decorate
