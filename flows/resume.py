"""Resuming an incident without repeating a side effect: cached steps, stable request ids."""

from __future__ import annotations

import uuid
from typing import Any

from prefect.cache_policies import CachePolicy

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

    # The key as a policy, not as ``cache_key_fn``: ``with_options`` keeps the task's own
    # policy (NO_CACHE, tasks.retrying.fresh_task) beside a new ``cache_key_fn`` and Prefect
    # warns that both are set; a policy replaces it. Prefect turns a ``cache_key_fn`` into
    # this very policy (prefect/tasks.py, Task.__init__), so the keys are the same.
    return task.with_options(cache_policy=CachePolicy.from_cache_key_fn(key), persist_result=True)
