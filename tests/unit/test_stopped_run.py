"""What a crash or cancellation hook decides about the record of a run that stopped,
before it reads or writes anything, and whether it replaces the incident's record
(flows/stopped_run.py); and the label that says which
incident rebuilt an instance (flows/rebuilt_label.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

import flows.stopped_run as stopped_run
from flows.rebuilt_label import REBUILT_BY, rebuilt_by, rebuilt_label
from lifeboat.record import RunOutcome, RunRecord
from tests.unit.builders import run_record


class _Said:
    """The hook's logger: the lines it would send to the flow run's logs."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _say(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)

    info = warning = error = _say


@pytest.mark.parametrize(
    ("parameters", "said"),
    [
        ({"environment": "lab", "reason": "r", "dry_run": True}, "none for a dry run"),
        ({"environment": "lab", "reason": "r"}, "none: the run generated its incident id"),
        (
            {"environment": "lab", "reason": "r", "incident_id": "bad id/../x"},
            "none: the run generated its incident id",
        ),
    ],
)
def test_no_record_is_written_where_the_hook_cannot_know_the_object_or_need_not(
    monkeypatch: pytest.MonkeyPatch, parameters: dict[str, Any], said: str
) -> None:
    logger = _Said()
    monkeypatch.setattr(stopped_run, "hook_logger", lambda flow_run: logger)

    def no_io(record: RunRecord) -> None:
        raise AssertionError("read or wrote a record")

    monkeypatch.setattr(stopped_run, "read_record", no_io)
    monkeypatch.setattr(stopped_run, "write_record", no_io)
    flow_run = SimpleNamespace(id="run-1", parameters=parameters, start_time=None)
    stopped_run.record_stopped_run(flow_run, "failback", SimpleNamespace(), "planned")
    assert len(logger.lines) == 1, logger.lines
    assert logger.lines[0].startswith(f"{stopped_run.LOG_PREFIX} {said}"), logger.lines


def _ran(run_id: str, minute: int, outcome: RunOutcome) -> RunRecord:
    record = run_record("INC-7", "failback")
    record.flow_run_id = run_id
    record.started_at = datetime(2026, 12, 7, 17, minute, tzinfo=UTC)
    record.outcome = outcome
    return record


@pytest.mark.parametrize(
    ("earlier", "kept"),
    [
        (None, ""),
        (_ran("stopped", 10, "running"), "the run wrote its own"),
        (_ran("rerun", 12, "running"), "kept the incident's later record"),
        (_ran("first", 1, "completed"), "kept the incident's later record"),
        (_ran("first", 1, "failed"), ""),  # an earlier run's failure: the stopped run says more
    ],
)
def test_a_stopped_runs_record_replaces_only_an_earlier_unfinished_one(
    earlier: RunRecord | None, kept: str
) -> None:
    assert stopped_run.kept_because(earlier, _ran("stopped", 10, "running")) == kept


def test_the_rebuilt_label_names_the_incident_in_the_characters_labels_allow() -> None:
    label = rebuilt_label(run_record("INC-2041:eu.West", "failback"))
    assert label == {REBUILT_BY: "inc-2041-eu-west"}
    assert rebuilt_by(label, run_record("INC-2041:eu.West", "failback"))
    assert not rebuilt_by(label, run_record("INC-2042", "failback"))
    assert not rebuilt_by({}, run_record("INC-2041:eu.West", "failback"))
    assert len(rebuilt_label(run_record("A" * 64, "failback"))[REBUILT_BY]) == 63
