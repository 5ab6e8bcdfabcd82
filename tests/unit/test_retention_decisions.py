"""Which backups retention deletes: exactly the expired ones, never the newest verified,
nothing when the newest failed (lifeboat/retention.py, a pure decision)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lifeboat.retention import Candidate, Decision, decide

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def candidate(key: str, days: float, verified: bool = True) -> Candidate:
    return Candidate(
        key, NOW - timedelta(days=days), verified, "verified" if verified else "failed"
    )


def actions(decisions: list[Decision]) -> dict[str, str]:
    return {d.key: d.action for d in decisions}


def test_expired_backups_are_deleted_and_recent_ones_kept() -> None:
    history = [
        candidate("new", 0.1),
        candidate("recent", 10),
        candidate("old", 31),
        candidate("old-failed", 45, verified=False),
    ]
    assert actions(decide(history, 30, NOW)) == {
        "new": "keep",
        "recent": "keep",
        "old": "delete",
        "old-failed": "delete",
    }


def test_the_newest_verified_backup_is_kept_whatever_its_age() -> None:
    decisions = decide([candidate("only", 400)], 30, NOW)
    assert actions(decisions) == {"only": "keep"}
    assert decisions[0].reason == "newest verified backup"


def test_nothing_is_deleted_when_the_newest_backup_failed() -> None:
    history = [candidate("failed", 0.1, verified=False), candidate("old", 90), candidate("x", 60)]
    decisions = decide(history, 30, NOW)
    assert set(actions(decisions).values()) == {"keep"}
    assert all("is failed: no deletion" in d.reason for d in decisions)


def test_no_history_no_decision() -> None:
    assert decide([], 30, NOW) == []


def test_each_decision_says_why_with_the_age_and_the_limit() -> None:
    history = [
        candidate("20261122T020000Z", 0.5),
        candidate("20261101T020000Z", 21.25),
        candidate("20261001T020000Z", 52),
        candidate("20260901T020000Z", 82, verified=False),
    ]
    assert decide(history, 30, NOW) == [
        Decision("20261122T020000Z", "keep", "newest verified backup"),
        Decision("20261101T020000Z", "keep", "21.2 days old, within 30"),
        Decision("20261001T020000Z", "delete", "52.0 days old > 30 days (verified)"),
        Decision("20260901T020000Z", "delete", "82.0 days old > 30 days (failed)"),
    ]


def test_decisions_come_newest_first_whatever_order_the_listing_gave() -> None:
    history = [candidate("c", 50), candidate("a", 1), candidate("b", 20)]
    assert [d.key for d in decide(history, 30, NOW)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("days", "action"),
    [(29.99, "keep"), (30.01, "delete")],
    ids=["just-inside", "just-outside"],
)
def test_the_limit_is_the_retention_in_days(days: float, action: str) -> None:
    decisions = decide([candidate("new", 0), candidate("edge", days)], 30, NOW)
    assert decisions[1].action == action


def test_a_fractional_retention_is_honoured_and_printed_as_given() -> None:
    decisions = decide([candidate("new", 0), candidate("old", 1)], 0.5, NOW)
    assert decisions[1] == Decision("old", "delete", "1.0 days old > 0.5 days (verified)")


def test_the_reason_for_keeping_everything_names_the_failed_newest_backup() -> None:
    history = [candidate("b-new", 0.1, verified=False), candidate("b-old", 400)]
    assert decide(history, 30, NOW) == [
        Decision("b-new", "keep", "newest backup b-new is failed: no deletion"),
        Decision("b-old", "keep", "newest backup b-new is failed: no deletion"),
    ]
