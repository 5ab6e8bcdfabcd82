"""Launching a flow: its shared parameters, and the checks that refuse bad input before
any side effect, naming the parameter."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from prefect.runtime import deployment, flow_run
from pydantic import BaseModel, Field

from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.topology import ENVIRONMENT_NAME, TopologyError
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
    None,
    pattern=INCIDENT_PATTERN,
    description="Incident id; re-using one resumes a run that stopped (a completed "
    "switch is refused)",
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


def _trigger() -> str:
    """How the run was started: a deployment (UI/API/automation) or a local call."""
    name = deployment.name if flow_run.get_id() else None
    return f"deployment {flow_run.get_flow_name()}/{name}" if name else "local (break-glass)"
