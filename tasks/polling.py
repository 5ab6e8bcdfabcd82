"""Wait for a slow cloud state with google-api-core's Retry, not a hand-made sleep loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type

from tasks.errors import TransientError

T = TypeVar("T")


class _NotYet(Exception):
    pass


def wait_until(
    check: Callable[[], T | None], *, timeout: float, interval: tuple[float, float], what: str
) -> T:
    """Call ``check`` until it returns something other than None; backoff between calls."""

    def attempt() -> T:
        value = check()
        if value is None:
            raise _NotYet(what)
        return value

    retry = Retry(
        predicate=if_exception_type(_NotYet),
        initial=interval[0],
        maximum=interval[1],
        multiplier=1.5,
        timeout=timeout,
    )
    try:
        return retry(attempt)()
    except gexc.RetryError as exc:
        raise TransientError(f"timed out after {timeout:.0f} s waiting for {what}") from exc
