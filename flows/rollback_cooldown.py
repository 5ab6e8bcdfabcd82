"""The minimum delay between automatic rollbacks, read from the Prefect server's own runs.

The automation's ``within`` already fires at most once per period; this guard holds even
when two automations (or a retried one) start runs at the same moment: among automatic
rollback runs of one environment inside the period, the earliest created wins and every
later one ends in the ``Cooldown`` state, changing nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
)
from prefect.runtime import flow_run

COOLDOWN_STATE = "Cooldown"


def _is_automatic(run: Any, environment: str) -> bool:
    params = run.parameters or {}
    return bool(params.get("automatic")) and params.get("environment") == environment


def recent_automatic_run(environment: str, min_interval_s: float) -> str | None:
    """Why this automatic run must stand down, or None when it may go ahead."""
    me = flow_run.get_id()
    if me is None or min_interval_s <= 0:
        return None
    now = datetime.now(UTC)
    horizon = now - timedelta(seconds=min_interval_s)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_run.get_flow_name()])),
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(after_=horizon)
            ),
            limit=200,
        )
    mine = next((r for r in runs if str(r.id) == str(me)), None)
    my_key = (mine.created, str(me)) if mine and mine.created else (now, str(me))
    for run in runs:
        if str(run.id) == str(me) or not _is_automatic(run, environment):
            continue
        if run.state is not None and run.state.name == COOLDOWN_STATE:
            continue
        if run.created is not None and (run.created, str(run.id)) < my_key:
            return (
                f"automatic rollback {run.name} ({run.id}) started at {run.created:%H:%M:%S} "
                f"UTC, within the minimum delay of {min_interval_s:.0f} s between automatic "
                "rollbacks"
            )
    return None
