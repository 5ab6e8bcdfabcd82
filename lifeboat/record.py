"""The run record: what a flow did, step by step, with timings and outcome."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

StepOutcome = Literal["done", "skipped", "failed", "unchanged", "planned"]
RunOutcome = Literal["completed", "failed", "planned", "rejected", "refused", "running"]


def now() -> datetime:
    return datetime.now(UTC)


class StepRecord(BaseModel):
    name: str
    started_at: datetime
    ended_at: datetime | None = None
    seconds: float | None = None
    outcome: StepOutcome = "done"
    detail: str = ""

    def table_row(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "outcome": self.outcome,
            "seconds": None if self.seconds is None else round(self.seconds, 2),
            "detail": self.detail,
        }


class RunRecord(BaseModel):
    flow: str
    environment: str
    incident_id: str
    reason: str
    trigger: str
    operator: str
    mode: str = "graceful"
    dry_run: bool = False
    flow_run_id: str | None = None
    started_at: datetime = Field(default_factory=now)
    ended_at: datetime | None = None
    outcome: RunOutcome = "running"
    error: str | None = None
    rto_seconds: float | None = None
    # A planned switch's outage (failback, graceful failover): from the moment its fence
    # holds until verification passes through the public path (or, if the run fails
    # inside, until the fence is lifted). Public traffic gets nothing in between.
    outage_seconds: float | None = None
    approval: dict[str, Any] | None = None
    lag: dict[str, Any] | None = None
    # A fence a run holds on live traffic (failback, graceful failover): what was set,
    # what was lifted, and what was kept (and why).
    fence: dict[str, Any] | None = None
    # A rollback: the watch's trigger that started it (its figure against the threshold),
    # the switch's measured time against its strategy's budget, and the validation period.
    cause: str | None = None
    execution: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    plan: list[str] = Field(default_factory=list)
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    steps: list[StepRecord] = Field(default_factory=list)
    notifications: list[dict[str, Any]] = Field(default_factory=list)
    record_uri: str | None = None

    def finish(self, outcome: RunOutcome, error: str | None = None) -> None:
        self.ended_at = now()
        self.outcome = outcome
        self.error = error

    def event_payload(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "outcome": self.outcome,
            "rto_seconds": self.rto_seconds,
            "outage_seconds": self.outage_seconds,
            "record_uri": self.record_uri,
            "error": self.error,
        }

    @contextmanager
    def step(self, name: str) -> Iterator[StepRecord]:
        """Time a step; the step's outcome is `failed` if the block raises."""
        record = StepRecord(name=name, started_at=now())
        self.steps.append(record)
        started = time.perf_counter()
        try:
            yield record
        except BaseException as exc:
            record.outcome = "failed"
            record.detail = record.detail or str(exc)[:500]
            raise
        finally:
            record.ended_at = now()
            record.seconds = time.perf_counter() - started


# The flows whose incident is done once it completed: a re-run is refused
# (flows.resume.refuse_a_completed_incident), and their completed record is final.
ONCE_PER_INCIDENT = frozenset({"failover", "failback", "rollback"})


def completed_refusal(record: RunRecord, earlier: RunRecord | None) -> str | None:
    """Why ``record``'s run must not go on, given the record an earlier run of the same
    flow and incident left; None when it may (none, or it stopped before completing).

    A run that completed keeping a fence (its services may still name the old database)
    said that a re-run of the incident lifts it: that re-run goes on.
    """
    if earlier is None or earlier.outcome != "completed":
        return None
    if earlier.fence and earlier.fence.get("kept"):
        return None
    ended = f"{earlier.ended_at:%Y-%m-%d %H:%M:%S} UTC" if earlier.ended_at else "earlier"
    return (
        f"incident_id: {record.incident_id} completed its {record.flow} at {ended} "
        f"(run {earlier.flow_run_id}); a completed incident is not run again, and a new "
        f"{record.flow} needs a new incident id"
    )
