"""The tests' one way to wait for the lab: poll until a check holds, or fail saying what.

A wait that runs out must fail the test where it waited, naming what never happened and
what was last seen; a loop that carries on after its deadline lets the next assertion
fail for a reason that is not the real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    Raises:
        AssertionError: ``timeout`` seconds passed; the message names ``what`` and the
            last value ``check`` returned.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not seen within {timeout:g} s (last: {value!r})")
        time.sleep(interval)
