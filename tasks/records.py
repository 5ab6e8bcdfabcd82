"""Evidence of every run: the JSON record in GCS, Prefect artifacts and Prefect events."""

from __future__ import annotations

import re
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event

from lifeboat import runtime
from lifeboat.record import ONCE_PER_INCIDENT, RunRecord, completed_refusal
from tasks.retrying import fresh_task
from tasks.storage import storage_read_json, storage_write_json

_KEY_SAFE = re.compile(r"[^a-z0-9-]+")


def artifact_key(*parts: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return _KEY_SAFE.sub("-", "-".join(parts).lower()).strip("-")[:120]


# Folders in the records bucket where the issues name one other than the flow's name.
RECORD_FOLDERS = {"rollback": "rollbacks", "recovery-drill": "drills"}


def record_object(record: RunRecord) -> str:
    """Where the record of ``record``'s run goes. A dry run's plan has an object of its
    own: an operator who plans the re-run of a stopped incident must not write over the
    evidence of the run that stopped (the re-run itself does, with its own)."""
    plan = ".plan" if record.dry_run else ""
    return f"{_incident_object(record)}{plan}.json"


def _incident_object(record: RunRecord) -> str:
    return f"{RECORD_FOLDERS.get(record.flow, record.flow)}/{record.incident_id}"


def write_record(record: RunRecord) -> str | None:
    """Write the run record to the records bucket; returns its gs:// URI, or None when it
    kept the record another run of the incident completed.

    A completed failover, failback or rollback is final (``ONCE_PER_INCIDENT``): a
    duplicate launch of it that ended otherwise (rejected at its approval, refused by
    the lock) must not write over it, or the incident would be run again later. A record
    that cannot be read is written over, as before: the run's own evidence matters more.
    """
    bucket = runtime.topology(record.environment).backups.records_bucket
    # A dry run's plan writes over nothing but an earlier plan.
    protect = record.flow in ONCE_PER_INCIDENT and not record.dry_run
    if protect and record.outcome != "completed":
        try:
            earlier = read_record(record)
        except Exception:  # written over: see above
            earlier = None
        if (
            earlier is not None
            and earlier.flow_run_id != record.flow_run_id
            and completed_refusal(record, earlier) is not None
        ):
            return None
    return storage_write_json(
        record.environment, bucket, record_object(record), record.model_dump(mode="json")
    )


def read_record(record: RunRecord) -> RunRecord | None:
    """The record an earlier run (not a dry run) of the same flow and incident left, if
    any."""
    bucket = runtime.topology(record.environment).backups.records_bucket
    body = storage_read_json(record.environment, bucket, f"{_incident_object(record)}.json")
    return None if body is None else RunRecord.model_validate(body)


@fresh_task(task_run_name="publish-{record.flow}-artifacts")
def publish_artifacts(record: RunRecord, markdown: str) -> None:
    """Markdown and table artifacts on the run page.

    Idempotent: artifacts are keyed by incident, so a re-run adds a new version of each.
    """
    key = artifact_key(record.flow, record.incident_id)
    create_markdown_artifact(
        markdown=markdown, key=key, description=f"{record.flow} {record.outcome}"
    )
    create_table_artifact(
        table=[step.table_row() for step in record.steps],
        key=f"{key}-steps",
        description=f"{record.flow} steps for {record.incident_id}",
    )


def emit(record: RunRecord, payload: dict[str, Any] | None = None) -> None:
    """Emit `lifeboat.<flow>.<outcome>` for automations and incident tooling."""
    emit_event(
        event=f"lifeboat.{record.flow}.{record.outcome}",
        resource={
            "prefect.resource.id": f"lifeboat.environment.{record.environment}",
            "lifeboat.incident-id": record.incident_id,
        },
        payload=payload or record.event_payload(),
    )
