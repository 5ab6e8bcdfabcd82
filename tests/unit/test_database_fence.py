"""Where a planned switch's database fence is lifted (flows/database_fence.py): the same
decision for a run's own exit, its crash hook, and a re-run's preflight."""

from __future__ import annotations

import pytest

from flows.database_fence import lift_on


@pytest.mark.parametrize(
    ("started", "promoted_is_primary", "where"),
    [
        # No promotion: the fenced instance is still the primary; the apps need it back.
        (False, False, "fenced"),
        # Promoted: the fence reached the new primary through replication; the old one
        # keeps it, since a write there would be lost.
        (True, True, "promoted"),
        # Promoting: neither yet. The old primary's writes would be lost, and the new one
        # cannot be changed until it is a primary.
        (True, False, ""),
    ],
)
def test_the_fence_is_lifted_where_the_apps_write_next(
    started: bool, promoted_is_primary: bool, where: str
) -> None:
    assert lift_on(started, promoted_is_primary) == where
