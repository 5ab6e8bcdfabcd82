"""What every region-switching flow shares: launch validation, the plan, publishing."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger
from prefect.runtime import deployment, flow_run
from pydantic import BaseModel, Field

from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.topology import ENVIRONMENT_NAME, RegionRole, Scaling, Topology, TopologyError
from tasks.cloud_run import ServiceState
from tasks.dns import RecordState
from tasks.errors import PermanentError

INCIDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,63}$"
ENVIRONMENT_FIELD = Field(
    description="Environment name (deployments/environments/<name>.yaml)",
    pattern=ENVIRONMENT_NAME.pattern,
)
REASON_FIELD = Field(
    min_length=1, max_length=500, description="Why; shown in the record and notifications"
)
INCIDENT_FIELD = Field(
    None, pattern=INCIDENT_PATTERN, description="Incident id; re-using one resumes that run"
)


class SwitchRequest(BaseModel):
    environment: str
    reason: str
    incident_id: str
    operator: str
    trigger: str
    flow_run_id: str | None

    @classmethod
    def validate_launch(
        cls,
        environment: str,
        reason: str,
        incident_id: str | None,
        operator: str,
        prefix: str = "dr",
    ) -> SwitchRequest:
        """Refuse bad input before any side effect, naming the parameter."""
        if not reason or not reason.strip():
            raise PermanentError("reason: must not be empty; say why this switch is happening")
        if incident_id is not None and not re.match(INCIDENT_PATTERN, incident_id):
            raise PermanentError(
                f"incident_id: {incident_id!r} is malformed (letters, digits, . _ : -; 3-64 chars)"
            )
        try:
            runtime.topology(environment)
        except TopologyError as exc:
            raise PermanentError(str(exc)) from None
        run_id = flow_run.get_id()
        return cls(
            environment=environment,
            reason=reason.strip(),
            incident_id=incident_id
            or f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}",
            operator=operator,
            trigger=_trigger(),
            flow_run_id=str(run_id) if run_id else None,
        )

    def record(self, flow: str, mode: str, dry_run: bool) -> RunRecord:
        """The run record every region switch starts with."""
        return RunRecord(
            flow=flow,
            environment=self.environment,
            incident_id=self.incident_id,
            reason=self.reason,
            trigger=self.trigger,
            operator=self.operator,
            mode=mode,
            dry_run=dry_run,
            flow_run_id=self.flow_run_id,
        )


def request_id(record: RunRecord, path: str) -> str:
    """A stable UUID per run kind, incident and path, so Compute dedupes a repeat."""
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"lifeboat/{record.flow}/{record.incident_id}/{path}")
    )


def _trigger() -> str:
    """How the run was started: a deployment (UI/API/automation) or a local call."""
    name = deployment.name if flow_run.get_id() else None
    return f"deployment {flow_run.get_flow_name()}/{name}" if name else "local (break-glass)"


def failover_plan(
    topo: Topology, record: RecordState | None, services: list[ServiceState], replica_type: str
) -> list[str]:
    """The exact changes a failover makes, one line each, from the state read now."""
    secondary = topo.regions.secondary
    app_secret = topo.cloud_sql.app_secret
    lines = [
        # First: the replica keeps its IP when promoted, so the URL is known now, and the
        # secondary's instances that start from zero must find the new version.
        f"add a version of secret {app_secret.resource} naming "
        f"{topo.cloud_sql.replica.instance} (before the scale-up: instances read it as they"
        " start; apps reading it from a volume at latest follow at once)"
    ]
    for svc, state in zip(topo.services, services, strict=True):
        lines.append(scale_line(secondary.name, svc.name, state, svc.active_scaling))
    replica = topo.cloud_sql.replica
    if replica_type == "READ_REPLICA_INSTANCE":
        lines.append(f"promote {replica.project}:{replica.instance} (read replica → primary)")
    else:
        lines.append(f"keep {replica.project}:{replica.instance} (already a primary)")
    for rec in topo.dns.records:
        new = ",".join(rec.rrdatas[RegionRole.secondary])
        if record is not None and record.name == rec.name:
            lines.append(
                f"DNS {rec.name} {rec.type}: {','.join(record.rrdatas)} (ttl {record.ttl})"
                f" → {new} (ttl {rec.failover_ttl})"
            )
        else:
            lines.append(f"DNS {rec.name} {rec.type}: → {new} (ttl {rec.failover_ttl})")
    for path in topo.cdn.paths:
        lines.append(f"invalidate {topo.cdn.url_map} {topo.cdn.host}{path}")
    lines.append(
        f"verify {len(topo.health.checks)} health check(s) via {topo.health.host}"
        f" reach {secondary.name}"
    )
    return lines


def scale_line(region: str, service: str, state: ServiceState | None, target: Scaling) -> str:
    """One plan line: the effective capacity now (both levels) → the service-level target."""
    capacity = state.capacity if state is not None else None
    current = capacity.describe() if capacity else "missing"
    keep = capacity is not None and (capacity.service.min, capacity.service.max) == (
        target.min,
        target.max,
    )
    return (
        f"{'keep' if keep else 'scale'} {region}/{service}: {current}"
        f" → service-level {target.min}..{target.max}"
    )


def run_markdown(record: RunRecord) -> str:
    lines = [
        f"# {record.flow} `{record.environment}`: {record.outcome}",
        f"Incident **{record.incident_id}**, by {record.operator} ({record.trigger}): "
        f"{record.reason}",
        "",
    ]
    if record.rto_seconds is not None:
        lines.append(f"**RTO measured: {record.rto_seconds:.1f} s**")
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
            if record.error:
                text += f"\nError: {record.error}"
            record.notifications = [
                d.model_dump() for d in notify_all(record.environment, title, text)
            ]
        write_record(record)
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

    ``notify_success=False`` notifies only when the run did not complete.
    """
    try:
        yield record
    except BaseException as exc:
        if record.outcome == "running":
            record.finish("failed", str(exc)[:1000])
        raise
    finally:
        publish_run(record, notify=notify_success or record.outcome != "completed")


def resumable(task: Any, record: RunRecord, step: str) -> Any:
    """The task, cached by flow, incident and arguments, so a re-run of the incident resumes.

    The key names the incident explicitly: tasks do not take it as a parameter, and a
    key without it would let one incident's results stand in for another's.
    """

    def key(context: Any, parameters: dict[str, Any]) -> str:
        args = "/".join(f"{k}={v}" for k, v in sorted(parameters.items()) if k != "environment")
        return f"{record.flow}/{record.incident_id}/{step}/{args}"

    return task.with_options(cache_key_fn=key, persist_result=True)
