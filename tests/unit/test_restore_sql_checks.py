"""restore-sql's checks that need no cloud: the point's format and the PITR window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tasks.cloud_sql_pitr import PitrWindow, parse_point, rfc3339
from tasks.errors import PermanentError

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def test_a_point_with_a_zone_is_read_in_utc_and_written_back_with_a_z() -> None:
    point = parse_point("2026-12-05T13:30:00.250+01:00")

    assert point == datetime(2026, 12, 5, 12, 30, 0, 250000, tzinfo=UTC)
    assert rfc3339(point) == "2026-12-05T12:30:00.250000Z"


@pytest.mark.parametrize("raw", ["yesterday", "2026-12-05T12:00:00", "2026-13-01T00:00:00Z"])
def test_a_point_that_is_not_rfc_3339_with_a_zone_names_the_parameter(raw: str) -> None:
    with pytest.raises(PermanentError, match="point_in_time"):
        parse_point(raw)


@pytest.mark.parametrize(
    ("window", "point", "words"),
    [
        (PitrWindow(instance="db", enabled=False, retention_days=7), NOW, "pointInTimeRecovery"),
        (PitrWindow(instance="db", enabled=True, retention_days=7), NOW + timedelta(1), "future"),
        (PitrWindow(instance="db", enabled=True, retention_days=7), NOW - timedelta(8), "7-day"),
    ],
)
def test_the_window_refuses_what_cloud_sql_cannot_restore(
    window: PitrWindow, point: datetime, words: str
) -> None:
    refusal = window.refusal(point, NOW)

    assert refusal is not None and refusal.startswith("point_in_time:") and words in refusal


def test_a_point_inside_the_window_is_allowed() -> None:
    window = PitrWindow(instance="db", enabled=True, retention_days=7)

    assert window.refusal(NOW - timedelta(days=6, hours=23), NOW) is None
