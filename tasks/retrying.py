"""The retry policy every outside-world task shares: backoff with jitter, transient only."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from lifeboat.budget import within_budget
from tasks.errors import LifeboatError, PermanentError, classify, is_transient

P = ParamSpec("P")
R = TypeVar("R")

# Seconds for the first retry (then 2x, 4x, ...). The lab's tests shrink it with the clock.
BACKOFF_S = float(os.environ.get("LIFEBOAT_RETRY_BACKOFF_S", "1.0"))


def retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn: retry transient failures, never permanent ones."""
    try:
        state.result()
    except PermanentError:
        return False
    except Exception as exc:
        return isinstance(exc, TimeoutError) or is_transient(exc)
    return False


def fresh_task(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``@task`` whose every call runs: no cache unless the caller passes a policy or key.

    Prefect's default cache policy (inputs + task source + flow run id) is live in every
    flow with ``persist_result=True``: a second call with the same inputs in one run gets
    the first call's result back, so a re-read after a change reads the state before it
    (restore-config's verify once said "still differs" after a good restore). A step that
    must not repeat when an incident is re-run says so, keyed on the incident:
    ``flows.resume.resumable``.
    """
    if "cache_policy" not in options and "cache_key_fn" not in options:
        options["cache_policy"] = NO_CACHE
    return task(**options)


def cloud_task(
    *, timeout_seconds: float, retries: int = 4, **options: Any
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``@task`` with Lifeboat's retry policy; ``options`` pass through to Prefect.

    ``timeout_seconds`` is the step's budget, per attempt. It is not handed to Prefect:
    flows run steps on worker threads, where Prefect's timeout cannot interrupt a
    blocking call (reference/prefect.md) and only logs a warning. Each attempt runs
    inside ``lifeboat.budget.step_budget`` instead: every wait (``wait_until``,
    ``operation_result``) and every Google call's timeout (``runtime.call_timeout``) is
    capped by what is left of it, and a wait the budget cuts short raises a
    ``TransientError`` naming the step, so a retry starts with a fresh budget.

    Like ``fresh_task``, every call runs (no cache).
    """

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return fresh_task(
            retries=retries,
            retry_delay_seconds=exponential_backoff(backoff_factor=BACKOFF_S),
            retry_jitter_factor=0.5,
            retry_condition_fn=retry_unless_permanent,
            **options,
        )(within_budget(fn.__name__, timeout_seconds)(fn))

    return decorate


@contextmanager
def calling(step: str, resource: str) -> Iterator[None]:
    """Turn any failure inside into a Transient/PermanentError naming step and resource."""
    try:
        yield
    except LifeboatError:
        raise
    except Exception as exc:
        raise classify(exc, step, resource) from exc
