"""A completed switch is not run again; one that stopped, or kept a fence, is resumed."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.logging import disable_run_logger

from flows import evidence, resume
from lifeboat.record import RunRecord
from tasks import records
from tasks.errors import IncidentCompleted, PermanentError


def record(outcome: str = "running", **extra: Any) -> RunRecord:
    made = RunRecord(
        flow="failover",
        environment="lab",
        incident_id="INC-42",
        reason="r",
        trigger="api",
        operator="ops",
        flow_run_id="run-1",
        **extra,
    )
    made.outcome = outcome  # type: ignore[assignment]
    if outcome != "running":
        made.ended_at = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    return made


def test_a_completed_incident_is_refused_naming_the_field_and_when() -> None:
    refusal = resume.completed_refusal(record(), record("completed"))
    assert refusal is not None
    assert refusal.startswith("incident_id: INC-42 completed its failover at 2026-12-01 10:00:00")
    assert "(run run-1)" in refusal and "a new failover needs a new incident id" in refusal


@pytest.mark.parametrize("outcome", ["failed", "refused", "cancelled", "planned", "running"])
def test_an_incident_that_did_not_complete_is_resumed(outcome: str) -> None:
    assert resume.completed_refusal(record(), record(outcome)) is None


def test_no_earlier_record_is_a_new_incident() -> None:
    assert resume.completed_refusal(record(), None) is None


def test_a_completed_run_that_kept_a_fence_may_be_re_run_to_lift_it() -> None:
    kept = record("completed", fence={"set": [], "lifted": [], "kept": ["auth-service"]})
    assert resume.completed_refusal(record(), kept) is None
    lifted = record("completed", fence={"set": [], "lifted": ["auth-service"], "kept": []})
    assert resume.completed_refusal(record(), lifted) is not None


def test_a_generated_incident_id_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[RunRecord] = []
    monkeypatch.setattr(resume, "read_record", lambda r: read.append(r))
    resume.refuse_a_completed_incident(record(), None)
    assert read == []


def test_a_record_that_cannot_be_read_lets_the_switch_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreadable(_: RunRecord) -> None:
        raise RuntimeError("503 from storage")

    monkeypatch.setattr(resume, "read_record", unreadable)
    with disable_run_logger():
        resume.refuse_a_completed_incident(record(), "INC-42")  # no exception: it goes on


def test_a_completed_record_read_refuses_before_anything_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resume, "read_record", lambda _: record("completed"))
    with pytest.raises(PermanentError, match="incident_id: INC-42 completed its failover"):
        resume.refuse_a_completed_incident(record(), "INC-42")


def test_a_run_refused_for_a_completed_incident_publishes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Refused under the lock, inside ``published``: its record would overwrite the
    # completed one, so nothing is published. Any other failure is published as failed.
    published: list[RunRecord] = []
    monkeypatch.setattr(evidence, "publish_run", lambda r, notify=True: published.append(r))
    with pytest.raises(IncidentCompleted), evidence.published(record()):
        raise IncidentCompleted("incident_id: INC-42 completed its failover")
    assert published == []

    failing = record()
    with pytest.raises(PermanentError), evidence.published(failing):
        raise PermanentError("a region is down")
    assert published == [failing] and failing.outcome == "failed"


def test_a_completed_record_is_not_written_over_by_another_run_that_did_not_complete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A duplicate launch rejected at its approval, or refused by the lock, ends after
    # the first run completed: its record must not replace the completed one.
    written: list[str] = []
    monkeypatch.setattr(records, "storage_write_json", lambda *a: written.append(a[2]) or "uri")
    topology = SimpleNamespace(backups=SimpleNamespace(records_bucket="records"))
    monkeypatch.setattr(records.runtime, "topology", lambda env: topology)
    completed = record("completed")
    monkeypatch.setattr(records, "read_record", lambda _: completed)

    duplicate = record("rejected")
    duplicate.flow_run_id = "run-2"
    assert records.write_record(duplicate) is None and written == []
    same_run = record("failed")  # the completed run itself, failing later: its own record
    assert records.write_record(same_run) == "uri"
    kept = record("completed", fence={"set": [], "lifted": [], "kept": ["auth-service"]})
    monkeypatch.setattr(records, "read_record", lambda _: kept)
    assert records.write_record(duplicate) == "uri"  # a kept fence: re-runs go on
    backup = record("failed")
    backup.flow = "backup"  # not once per incident: never read
    monkeypatch.setattr(records, "read_record", lambda _: pytest.fail("read"))
    assert records.write_record(backup) == "uri"
    assert written == ["failover/INC-42.json", "failover/INC-42.json", "backup/INC-42.json"]
