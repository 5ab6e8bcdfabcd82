"""Restored counts against a backup's: exact, or within the window its exports span."""

from __future__ import annotations

from lifeboat.integrity import differences


def test_counts_equal_to_the_backups_hold() -> None:
    assert differences({"users": 5, "orders": 9}, {"users": 5, "orders": 9}) == []


def test_a_count_missing_or_off_is_named_with_what_was_expected() -> None:
    assert differences({"users": 4}, {"users": 5, "orders": 9}) == [
        "users 4 ≠ 5",
        "orders None ≠ 9",
    ]


def test_a_count_between_before_the_run_and_after_the_exports_holds() -> None:
    before, after = {"orders": 100, "refunds": 7}, {"orders": 112, "refunds": 5}

    assert differences({"orders": 105, "refunds": 6}, before, after) == []
    assert differences({"orders": 113, "refunds": 4}, before, after) == [
        "orders 113 ∉ [100, 112]",
        "refunds 4 ∉ [5, 7]",
    ]


def test_a_query_the_second_count_lacks_is_held_to_the_first() -> None:
    assert differences({"users": 6}, {"users": 5}, {}) == ["users 6 ≠ 5"]


def test_a_backup_without_counts_is_no_proof() -> None:
    assert differences({"users": 6}, {}) == ["the backup recorded no counts to compare with"]
