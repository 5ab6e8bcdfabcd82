"""Resuming an incident without repeating a side effect: cached steps, stable request ids."""

from __future__ import annotations

import uuid
from typing import Any

from prefect import get_run_logger
from prefect.cache_policies import CachePolicy

from lifeboat.record import RunRecord, completed_refusal
from tasks.errors import IncidentCompleted
from tasks.records import read_record


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

    # The key as a policy, not as ``cache_key_fn``: ``with_options`` keeps the task's own
    # policy (NO_CACHE, tasks.retrying.fresh_task) beside a new ``cache_key_fn`` and Prefect
    # warns that both are set; a policy replaces it. Prefect turns a ``cache_key_fn`` into
    # this very policy (prefect/tasks.py, Task.__init__), so the keys are the same.
    return task.with_options(cache_policy=CachePolicy.from_cache_key_fn(key), persist_result=True)


def refuse_a_completed_incident(record: RunRecord, given: str | None) -> None:
    """A re-run resumes an incident that stopped; one that completed is not run again.

    Its switch is done and the world has moved on: after a failback, a failover's steps
    run again would point the apps at what is now a replica, and a rollback's cached
    targets would roll back whatever was released since. Checked before any side
    effect and before the record is written, so the completed record stays as it was (a
    dry run of it is refused too: its plan would be of a switch that is over). ``given``
    is the incident id the caller passed: a generated one is new. When the record cannot
    be read, the run goes on, saying so: the evidence store must not stop a switch (nor
    can it wait long on it: one attempt, ``storage_read_json``'s short budget).
    """
    if given is None:
        return
    try:
        earlier = read_record(record)
    except Exception as exc:  # logged: the switch must not wait on its records
        get_run_logger().warning(
            "incident %s: its earlier record could not be read (%s); a completed %s of the "
            "same incident would not be noticed",
            record.incident_id,
            exc,
            record.flow,
        )
        return
    refusal = completed_refusal(record, earlier)
    if refusal is not None:
        raise IncidentCompleted(refusal)
    if earlier is not None and earlier.outcome == "completed":
        get_run_logger().info(
            "incident %s completed keeping a fence (%s): this run finishes lifting it",
            record.incident_id,
            ", ".join(earlier.fence["kept"] if earlier.fence else []),
        )
