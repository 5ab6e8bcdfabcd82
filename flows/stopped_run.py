"""The record of a run that could not write its own.

A run writes its record as it ends (flows/evidence.py, ``published``). A run whose process
is killed, or lost with its node, never gets there: Prefect keeps its logs, but the
records bucket, the evidence an SRE reads after the incident, would hold nothing of it.
The crash and cancellation hooks (run by the worker once the run's process is gone)
write what is known instead: who, why, when it started, how Prefect saw it end, and the
flow run whose logs hold its steps.
"""

from __future__ import annotations

import re
from typing import Any

from flows.fence import hook_logger
from flows.launch import INCIDENT_PATTERN
from lifeboat.record import RunRecord, now
from tasks.records import read_record, write_record

# Every outcome of the hook logs a line starting so (tests wait for it: the hook's end).
LOG_PREFIX = "stopped-run record:"


def record_stopped_run(flow_run: Any, flow: str, state: Any, default_mode: str) -> None:
    """Flow hook (crashed, cancelled): write the run's record unless it wrote its own (a
    cancelled run's exit may have). Never raises: the hook's other work matters more.
    ``default_mode``: the flow's mode when the launch did not name one.

    Not written for a dry run (it changes nothing; its logs are its plan), nor when the
    incident id was generated inside the run: the hook cannot know it.
    """
    logger = hook_logger(flow_run)
    params = dict(getattr(flow_run, "parameters", None) or {})
    incident, run_id = params.get("incident_id"), str(getattr(flow_run, "id", ""))
    if params.get("dry_run"):
        logger.info("%s none for a dry run", LOG_PREFIX)
        return
    if not incident or not re.match(INCIDENT_PATTERN, str(incident)):
        logger.warning("%s none: the run generated its incident id and did not end", LOG_PREFIX)
        return
    try:
        record = RunRecord(
            flow=flow,
            environment=str(params["environment"]),
            incident_id=str(incident),
            reason=str(params.get("reason") or "").strip() or "not given (the flow's default)",
            trigger="deployment" if getattr(flow_run, "deployment_id", None) else "unknown",
            operator=str(params.get("operator") or "unknown"),
            mode=str(params.get("mode") or default_mode),
            flow_run_id=run_id,
            started_at=getattr(flow_run, "start_time", None) or now(),
        )
        kept = kept_because(read_record(record), record)
        if kept:
            logger.info("%s %s", LOG_PREFIX, kept)
            return
        name = getattr(state, "name", None) or "stopped"
        # The first line only: a crash's message can be a whole traceback.
        message = (getattr(state, "message", None) or "no message").splitlines()[0][:300]
        record.finish(
            "failed",
            f"the run stopped before its end ({name}: {message}); its steps are in the "
            f"logs of flow run {run_id}, and a re-run of the incident resumes it",
        )
        record.ended_at = getattr(state, "timestamp", None) or record.ended_at
        uri = write_record(record)
        logger.warning("%s %s", LOG_PREFIX, uri or "kept the incident's completed record")
    except Exception as exc:  # reported; the hook goes on
        logger.error("%s could not be written: %s", LOG_PREFIX, exc)


def kept_because(earlier: RunRecord | None, stopped: RunRecord) -> str:
    """Why the incident's record in the bucket (``earlier``) stays as it is, "" when the
    stopped run's record replaces it."""
    if earlier is None:
        return ""
    if earlier.flow_run_id == stopped.flow_run_id:
        return "the run wrote its own"
    if earlier.outcome == "completed" or earlier.started_at > stopped.started_at:
        # A later run of the incident wrote it (a re-run may start while this hook still
        # decides on fences), or the incident completed: both say more.
        return "kept the incident's later record"
    return ""
