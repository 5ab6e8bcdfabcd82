"""Resuming an incident without repeating a side effect: cached steps, stable request ids."""

from __future__ import annotations

import uuid
from typing import Any

from lifeboat.record import RunRecord


def request_id(record: RunRecord, path: str) -> str:
    """A stable UUID per run kind, incident and path, so Compute dedupes a repeat."""
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"lifeboat/{record.flow}/{record.incident_id}/{path}")
    )


def resumable(task: Any, record: RunRecord, step: str) -> Any:
    """The task, cached by flow, incident and arguments, so a re-run of the incident resumes.

    The key names the incident explicitly: tasks do not take it as a parameter, and a
    key without it would let one incident's results stand in for another's.
    """

    def key(context: Any, parameters: dict[str, Any]) -> str:
        args = "/".join(f"{k}={v}" for k, v in sorted(parameters.items()) if k != "environment")
        return f"{record.flow}/{record.incident_id}/{step}/{args}"

    return task.with_options(cache_key_fn=key, persist_result=True)
