"""A region switch's launch checks (bad input refused before any side effect, naming the
parameter) and its run record: step timing, outcomes, and the record as a page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

import pytest
from pydantic import TypeAdapter, ValidationError

from flows.evidence import run_markdown
from flows.launch import ENVIRONMENT_FIELD, INCIDENT_FIELD, REASON_FIELD, SwitchRequest
from lifeboat.record import RunRecord, StepRecord
from tasks.errors import PermanentError
from tasks.records import record_object


@pytest.mark.parametrize(
    ("reason", "incident_id", "environment", "message"),
    [
        ("", None, "lab", "reason: must not be empty; say why this switch is happening"),
        ("  \n ", None, "lab", "reason: must not be empty; say why this switch is happening"),
        (
            "primary down",
            "ab",
            "lab",
            "incident_id: 'ab' is malformed (letters, digits, . _ : -; 3-64 chars)",
        ),
        (
            "primary down",
            "INC 2041",
            "lab",
            "incident_id: 'INC 2041' is malformed (letters, digits, . _ : -; 3-64 chars)",
        ),
        (
            "primary down",
            "-INC-2041",
            "lab",
            "incident_id: '-INC-2041' is malformed (letters, digits, . _ : -; 3-64 chars)",
        ),
        (
            "primary down",
            "x" * 65,
            "lab",
            f"incident_id: {'x' * 65!r} is malformed (letters, digits, . _ : -; 3-64 chars)",
        ),
        (
            "primary down",
            None,
            "prod",
            "environment: unknown environment 'prod'; known: ['lab']",
        ),
        (
            "primary down",
            None,
            "../lab",
            "environment: '../lab' is not a valid name (lowercase letters, digits, dashes)",
        ),
    ],
    ids=[
        "empty-reason",
        "blank-reason",
        "short-incident",
        "incident-with-space",
        "incident-leading-dash",
        "incident-too-long",
        "unknown-environment",
        "path-as-environment",
    ],
)
def test_bad_launch_input_is_refused_naming_the_parameter(
    reason: str, incident_id: str | None, environment: str, message: str
) -> None:
    with pytest.raises(PermanentError) as refused:
        SwitchRequest.validate_launch(environment, reason, incident_id, "oncall")
    assert str(refused.value) == message


def test_a_good_launch_outside_a_deployment_is_a_local_break_glass_run() -> None:
    request = SwitchRequest.validate_launch("lab", "  us-central1 down  ", "INC-2041:a.b_c", "me")
    assert request == SwitchRequest(
        environment="lab",
        reason="us-central1 down",
        incident_id="INC-2041:a.b_c",
        operator="me",
        trigger="local (break-glass)",
        flow_run_id=None,
    )


def test_an_absent_incident_id_is_generated_with_the_flows_prefix() -> None:
    before = datetime.now(UTC)
    request = SwitchRequest.validate_launch("lab", "drill", None, "me", prefix="fb")
    match = re.fullmatch(r"fb-(\d{8}-\d{6})-[0-9a-f]{4}", request.incident_id)
    assert match is not None, request.incident_id
    stamp = datetime.strptime(match[1], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    assert before.replace(microsecond=0) <= stamp <= datetime.now(UTC)
    other = SwitchRequest.validate_launch("lab", "drill", None, "me", prefix="fb")
    assert other.incident_id != request.incident_id


@pytest.mark.parametrize(
    ("flow", "folder"),
    [("failover", "failover"), ("failback", "failback"), ("rollback", "rollbacks")],
)
def test_a_plan_is_written_beside_the_incident_record_not_over_it(flow: str, folder: str) -> None:
    # Planning the re-run of a stopped incident must keep the stopped run's evidence.
    request = SwitchRequest.validate_launch("lab", "plan the re-run", "INC-2041", "oncall")
    assert record_object(request.record(flow, "ungraceful", dry_run=False)) == (
        f"{folder}/INC-2041.json"
    )
    assert record_object(request.record(flow, "ungraceful", dry_run=True)) == (
        f"{folder}/INC-2041.plan.json"
    )


def test_the_record_a_switch_starts_with_carries_the_request() -> None:
    request = SwitchRequest.validate_launch("lab", "us-central1 down", "INC-2041", "oncall")
    record = request.record("failover", "ungraceful", dry_run=True)
    assert record.model_dump(
        include={"flow", "environment", "incident_id", "reason", "trigger", "operator"}
    ) == {
        "flow": "failover",
        "environment": "lab",
        "incident_id": "INC-2041",
        "reason": "us-central1 down",
        "trigger": "local (break-glass)",
        "operator": "oncall",
    }
    assert (record.mode, record.dry_run, record.outcome, record.steps) == (
        "ungraceful",
        True,
        "running",
        [],
    )


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        (INCIDENT_FIELD, "INC-2041", True),
        (INCIDENT_FIELD, None, True),
        (INCIDENT_FIELD, "a b", False),
        (REASON_FIELD, "", False),
        (REASON_FIELD, "x" * 501, False),
        (REASON_FIELD, "x" * 500, True),
        (ENVIRONMENT_FIELD, "lab", True),
        (ENVIRONMENT_FIELD, "Lab", False),
    ],
)
def test_the_parameter_forms_refuse_what_the_launch_check_refuses(
    field: object, value: str | None, valid: bool
) -> None:
    """The same rules in the UI's form (the flows' parameter schema) as in the checks."""
    adapter: TypeAdapter[str | None] = TypeAdapter(Annotated[str | None, field])
    if valid:
        assert adapter.validate_python(value) == value
    else:
        with pytest.raises(ValidationError):
            adapter.validate_python(value)


def _record() -> RunRecord:
    return RunRecord(
        flow="failover",
        environment="lab",
        incident_id="INC-2041",
        reason="us-central1 down",
        trigger="deployment failover/lab",
        operator="oncall",
    )


def test_a_step_is_timed_and_done_when_its_block_ends() -> None:
    record = _record()
    with record.step("preflight") as step:
        step.detail = "primary: 5 failed check(s)"
    (done,) = record.steps
    assert (done.name, done.outcome, done.detail) == (
        "preflight",
        "done",
        "primary: 5 failed check(s)",
    )
    assert done.ended_at is not None and done.ended_at >= done.started_at
    assert done.seconds is not None and 0 <= done.seconds < 5


def test_a_step_that_raises_is_failed_with_the_error_and_the_error_still_raises() -> None:
    record = _record()
    with pytest.raises(PermanentError), record.step("promote"):
        raise PermanentError("promote-replica failed on p:db: " + "x" * 600)
    (failed,) = record.steps
    assert failed.outcome == "failed"
    assert failed.detail == ("promote-replica failed on p:db: " + "x" * 600)[:500]
    assert failed.seconds is not None


def test_a_failed_step_keeps_the_detail_it_had_written() -> None:
    record = _record()
    with pytest.raises(KeyboardInterrupt), record.step("dns") as step:
        step.detail = "change 42 pending"
        raise KeyboardInterrupt
    assert (record.steps[0].outcome, record.steps[0].detail) == ("failed", "change 42 pending")


def test_finish_and_the_event_payload() -> None:
    record = _record()
    record.rto_seconds = 312.5
    record.finish("failed", "dns-switch failed on varai-ai-zone: 503 unavailable")
    assert record.ended_at is not None
    assert record.event_payload() == {
        "incident_id": "INC-2041",
        "outcome": "failed",
        "rto_seconds": 312.5,
        "outage_seconds": None,
        "record_uri": None,
        "error": "dns-switch failed on varai-ai-zone: 503 unavailable",
    }


def test_a_step_table_row_rounds_seconds_and_shows_a_step_still_running() -> None:
    started = datetime(2026, 12, 4, tzinfo=UTC)
    row = StepRecord(name="scale", started_at=started, seconds=1.23456, detail="4 services")
    assert row.table_row() == {
        "step": "scale",
        "outcome": "done",
        "seconds": 1.23,
        "detail": "4 services",
    }
    assert StepRecord(name="verify", started_at=started).table_row()["seconds"] is None


def test_the_record_as_a_page() -> None:
    started = datetime(2026, 12, 4, tzinfo=UTC)
    record = _record()
    record.rto_seconds = 312.54
    record.lag = {"seconds": 1.25, "bytes": 2048}
    record.plan = ["promote ml-datadriven-recos:varai-db-secondary (read replica → primary)"]
    record.steps = [
        StepRecord(name="preflight", started_at=started, seconds=2.5, detail="a | b"),
        StepRecord(name="verify", started_at=started, outcome="failed", detail="503"),
    ]
    record.record_uri = "gs://varai-dr-records/lab/INC-2041.json"
    record.finish("failed", "verify failed")
    assert run_markdown(record) == "\n".join(
        [
            "# failover `lab`: failed",
            "Incident **INC-2041**, by oncall (deployment failover/lab): us-central1 down",
            "",
            "**RTO measured: 312.5 s**",
            "**Error:** verify failed",
            "Replica lag at preflight: 1.2 s, 2048 bytes",
            "",
            "## Changes",
            "- promote ml-datadriven-recos:varai-db-secondary (read replica → primary)",
            "",
            "## Steps",
            "",
            "| step | outcome | seconds | detail |",
            "|---|---|---|---|",
            "| preflight | done | 2.50 | a / b |",
            "| verify | failed |  | 503 |",
            "",
            "Record: `gs://varai-dr-records/lab/INC-2041.json`",
        ]
    )


def test_a_failback_page_states_its_planned_outage() -> None:
    record = _record()
    record.rto_seconds = 131.04
    record.outage_seconds = 21.96
    record.finish("completed")
    page = run_markdown(record).splitlines()
    assert page[3:5] == [
        "**RTO measured: 131.0 s**",
        "**Planned outage: 22.0 s** (fence held → verified)",
    ]
    assert record.event_payload()["outage_seconds"] == 21.96


def test_a_dry_run_page_shows_the_plan_and_nothing_measured() -> None:
    record = _record()
    record.dry_run = True
    record.plan = ["keep ml-datadriven-recos:varai-db-secondary (already a primary)"]
    record.finish("planned")
    assert run_markdown(record) == "\n".join(
        [
            "# failover `lab`: planned",
            "Incident **INC-2041**, by oncall (deployment failover/lab): us-central1 down",
            "",
            "",
            "## Plan",
            "- keep ml-datadriven-recos:varai-db-secondary (already a primary)",
            "",
            "## Steps",
            "",
            "| step | outcome | seconds | detail |",
            "|---|---|---|---|",
        ]
    )
