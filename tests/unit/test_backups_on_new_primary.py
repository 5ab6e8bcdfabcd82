"""What a promoted replica is given so that it can be restored to any moment again."""

from __future__ import annotations

import pytest

from tasks.cloud_sql_backup_config import BackupsKept, has_backups, wanted_backups

pytestmark = pytest.mark.unit

OLD_PRIMARY = {
    "kind": "sql#backupConfiguration",  # Google's output: never sent back
    "enabled": True,
    "startTime": "03:00",
    "location": "us",
    "pointInTimeRecoveryEnabled": True,
    "transactionLogRetentionDays": 7,
    "backupRetentionSettings": {"retentionUnit": "COUNT", "retainedBackups": 30},
    "backupTier": "STANDARD",
}


def test_the_new_primary_gets_the_old_ones_writable_settings_but_not_its_location() -> None:
    # A location pinned to the old primary's region would keep the backups where it failed.
    assert wanted_backups(OLD_PRIMARY, 7) == {
        "enabled": True,
        "startTime": "03:00",
        "pointInTimeRecoveryEnabled": True,
        "transactionLogRetentionDays": 7,
        "backupRetentionSettings": {"retentionUnit": "COUNT", "retainedBackups": 30},
    }


def test_backups_and_pitr_are_on_with_the_topologys_days_whatever_the_old_one_had() -> None:
    off = {"enabled": False, "pointInTimeRecoveryEnabled": False, "transactionLogRetentionDays": 2}
    assert wanted_backups(off, 7) == {
        "enabled": True,
        "pointInTimeRecoveryEnabled": True,
        "transactionLogRetentionDays": 7,
    }
    # The old primary unreadable (gone): the topology's policy alone.
    assert wanted_backups(None, 5) == {
        "enabled": True,
        "pointInTimeRecoveryEnabled": True,
        "transactionLogRetentionDays": 5,
    }


def test_a_longer_retention_the_old_primary_kept_is_kept() -> None:
    assert (
        wanted_backups({**OLD_PRIMARY, "transactionLogRetentionDays": 14}, 7)[
            "transactionLogRetentionDays"
        ]
        == 14
    )


@pytest.mark.parametrize(
    ("current", "protected"),
    [
        (None, False),  # a promoted replica: no backup configuration at all
        ({}, False),
        ({"enabled": True}, False),
        ({"enabled": True, "pointInTimeRecoveryEnabled": True}, False),
        (
            {"enabled": True, "pointInTimeRecoveryEnabled": True, "transactionLogRetentionDays": 6},
            False,
        ),
        (
            {
                "enabled": False,
                "pointInTimeRecoveryEnabled": True,
                "transactionLogRetentionDays": 7,
            },
            False,
        ),
        (
            {"enabled": True, "pointInTimeRecoveryEnabled": True, "transactionLogRetentionDays": 7},
            True,
        ),
        # An operator's own window or longer retention set since is not overwritten.
        ({**OLD_PRIMARY, "startTime": "22:00", "transactionLogRetentionDays": 7}, True),
    ],
)
def test_an_instance_is_left_alone_only_when_it_already_protects_as_asked(
    current: dict[str, object] | None, protected: bool
) -> None:
    assert has_backups(current, wanted_backups(OLD_PRIMARY, 7)) is protected


def test_the_step_says_where_the_settings_came_from() -> None:
    config = wanted_backups(None, 7)
    copied = BackupsKept(instance="b", changed=True, like="a", configuration=config)
    assert copied.describe() == "backups and PITR on b, 7 days of logs (as a had)"
    alone = BackupsKept(instance="b", changed=True, like=None, configuration=config)
    assert alone.describe() == "backups and PITR on b, 7 days of logs (as the topology asks)"
    already = BackupsKept(instance="b", changed=False, like="a", configuration=config)
    assert already.describe() == "backups and PITR on b, 7 days of logs already"
