"""A run's evidence: its record in GCS, artifacts, event and notifications, published
however the run ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prefect import get_run_logger

from lifeboat import runtime
from lifeboat.record import RunRecord
from tasks.errors import IncidentCompleted


def run_markdown(record: RunRecord) -> str:
    lines = [
        f"# {record.flow} `{record.environment}`: {record.outcome}",
        f"Incident **{record.incident_id}**, by {record.operator} ({record.trigger}): "
        f"{record.reason}",
        "",
    ]
    if record.rto_seconds is not None:
        lines.append(f"**RTO measured: {record.rto_seconds:.1f} s**")
    if record.outage_seconds is not None:
        lines.append(f"**Planned outage: {record.outage_seconds:.1f} s** (fence held → verified)")
    if record.error:
        lines.append(f"**Error:** {record.error}")
    if record.lag:
        lines.append(
            f"Replica lag at preflight: {record.lag.get('seconds', 0):.1f} s, "
            f"{record.lag.get('bytes', 0)} bytes"
        )
    lines += [
        "",
        "## Plan" if record.dry_run else "## Changes",
        *[f"- {p}" for p in record.plan],
        "",
        "## Steps",
        "",
        "| step | outcome | seconds | detail |",
        "|---|---|---|---|",
    ]
    for step in record.steps:
        seconds = "" if step.seconds is None else f"{step.seconds:.2f}"
        lines.append(
            f"| {step.name} | {step.outcome} | {seconds} | {step.detail.replace('|', '/')} |"
        )
    if record.record_uri:
        lines += ["", f"Record: `{record.record_uri}`"]
    return "\n".join(lines)


def publish_run(record: RunRecord, notify: bool = True) -> None:
    """Record, artifacts, event and notifications; none of them may mask the run's outcome.

    ``notify=False`` keeps routine successes (a backup every 6 h) out of the channels.
    """
    from tasks.notify import notify_all
    from tasks.records import emit, publish_artifacts, record_object, write_record

    logger = get_run_logger()
    try:
        record.record_uri = f"gs://{runtime.topology(record.environment).backups.records_bucket}/{record_object(record)}"
        if notify and record.outcome != "planned":
            title = (
                f"Lifeboat {record.flow} {record.outcome}: "
                f"{record.environment} ({record.incident_id})"
            )
            rto = f"{record.rto_seconds:.1f} s" if record.rto_seconds else "n/a"
            text = f"{record.reason}\nRTO: {rto}\nRecord: {record.record_uri}"
            if record.outage_seconds is not None:
                text += f"\nPlanned outage: {record.outage_seconds:.1f} s"
            if record.error:
                text += f"\nError: {record.error}"
            record.notifications = [
                d.model_dump() for d in notify_all(record.environment, title, text)
            ]
        if write_record(record) is None:
            logger.warning(
                "kept the record of incident %s: another run completed its %s; this run "
                "(%s) is told by its own state, logs and artifacts",
                record.incident_id,
                record.flow,
                record.outcome,
            )
    except Exception as exc:
        logger.error("could not write the run record: %s", exc)
        record.record_uri = None
    publishers: list[Callable[[], object]] = [
        lambda: publish_artifacts(record, run_markdown(record)),
        lambda: emit(record),
    ]
    for publish in publishers:
        try:
            publish()
        except Exception as exc:
            logger.error("could not publish run evidence: %s", exc)


@contextmanager
def published(record: RunRecord, notify_success: bool = True) -> Iterator[RunRecord]:
    """Publish the run's evidence however the block ends; what escapes it fails the record.

    ``notify_success=False`` notifies only when the run did not complete. A run refused
    because its incident completed before publishes nothing: the record it would write is
    the completed one's, which must stay as it was.
    """
    publish = True
    try:
        yield record
    except IncidentCompleted:
        publish = False
        raise
    except BaseException as exc:
        if record.outcome == "running":
            record.finish("failed", str(exc)[:1000])
        raise
    finally:
        if publish:
            publish_run(record, notify=notify_success or record.outcome != "completed")
