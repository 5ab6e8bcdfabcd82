"""`lifeboat restore-sql` asks for exactly one of a moment, a backup run and a backup's
exports, and a target."""

from __future__ import annotations

import pytest

from commands.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["restore-sql", "--env", "lab", "--target", "x"],
        [
            "restore-sql",
            "--env",
            "lab",
            "--target",
            "x",
            "--backup-run",
            "1",
            "--point-in-time",
            "t",
        ],
        ["restore-sql", "--env", "lab", "--point-in-time", "2026-12-05T14:30:00Z"],
        ["restore-sql", "--env", "lab", "--target", "x", "--backup-id", "b", "--newest-export"],
    ],
    ids=["neither", "both", "no-target", "id-and-newest"],
)
def test_bad_arguments_are_refused_before_anything_runs(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(argv)

    assert refused.value.code == 2
    assert "restore-sql" in capsys.readouterr().err
