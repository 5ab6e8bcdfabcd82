"""Wait for a slow cloud state with google-api-core's Retry, not a hand-made sleep loop.

Every wait here is capped by the running step's declared budget (``lifeboat.budget``):
inside a task it ends at ``min(timeout, what is left of the budget)``, and when the
budget is what cut it short it raises ``BudgetExhausted`` naming the step. Outside a task
``timeout`` alone applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type

from lifeboat import budget
from tasks.errors import BudgetExhausted, TransientError

T = TypeVar("T")


class _NotYet(Exception):
    pass


def _limit(timeout: float) -> tuple[float, budget.StepBudget | None]:
    """The wait's real limit, and the step budget when it is that budget which binds."""
    step = budget.current()
    if step is None:
        return timeout, None
    left = step.remaining()
    return (left, step) if left < timeout else (timeout, None)


def _exhausted(step: budget.StepBudget, what: str) -> BudgetExhausted:
    return BudgetExhausted(f"gave up waiting for {what}: {step.describe()}")


def wait_until(
    check: Callable[[], T | None], *, timeout: float, interval: tuple[float, float], what: str
) -> T:
    """Call ``check`` until it returns something other than None; backoff between calls."""

    def attempt() -> T:
        value = check()
        if value is None:
            raise _NotYet(what)
        return value

    limit, binding = _limit(timeout)
    retry = Retry(
        predicate=if_exception_type(_NotYet),
        initial=interval[0],
        maximum=interval[1],
        multiplier=1.5,
        timeout=limit,
    )
    try:
        return retry(attempt)()
    except gexc.RetryError as exc:
        if binding is not None:
            raise _exhausted(binding, what) from exc
        raise TransientError(f"timed out after {timeout:.0f} s waiting for {what}") from exc


def operation_result(operation: Any, *, timeout: float, polling: Any, what: str) -> Any:
    """``operation.result`` of a google-api-core long-running operation, within the budget."""
    limit, binding = _limit(timeout)
    try:
        return operation.result(timeout=limit, polling=polling)
    except (TimeoutError, gexc.RetryError) as exc:
        if binding is not None:
            raise _exhausted(binding, what) from exc
        raise
