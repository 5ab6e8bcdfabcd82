"""A restore's ``point_in_time`` is refused, naming the field, before anything runs: without
a UTC offset (read as UTC, a local time would be hours off), in the future, or beside a
backup_id; and the CLI's ``--point-in-time`` the same way, as a usage error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from commands.cli import main
from flows.restore_point import check_point
from tasks.errors import PermanentError


@pytest.mark.parametrize(
    ("backup_id", "point", "why"),
    [
        (None, datetime(2026, 12, 5, 14, 30), "has no UTC offset"),
        (None, datetime.now(UTC) + timedelta(hours=1), "is in the future"),
        ("20261205T030000Z", datetime(2026, 12, 5, 14, 30, tzinfo=UTC), "not both"),
    ],
    ids=["naive", "future", "both"],
)
def test_a_bad_point_in_time_is_refused_naming_the_field(
    backup_id: str | None, point: datetime, why: str
) -> None:
    with pytest.raises(PermanentError, match="point_in_time") as refused:
        check_point(backup_id, point)
    assert why in str(refused.value)


def test_a_point_in_time_with_an_offset_is_taken_in_utc() -> None:
    paris = datetime(2026, 12, 5, 15, 30, tzinfo=timezone(timedelta(hours=1)))
    assert check_point(None, paris) == datetime(2026, 12, 5, 14, 30, tzinfo=UTC)
    assert check_point(None, None) is None


@pytest.mark.parametrize("text", ["2026-12-05T14:30:00", "yesterday"], ids=["naive", "garbage"])
def test_the_cli_refuses_a_point_in_time_it_cannot_place(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["restore", "--env", "lab", "--point-in-time", text])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "--point-in-time" in err and "point_in_time:" in err, err
