"""The failback's promotion, with the apps' database connection rolled while it runs.

The roll (``flows/database_connection.py``) took 4.85 s after an 18.5 s promotion in
``bench failback``, all of it inside the planned outage. Nothing it does needs the
promotion done, and every service that could take a write is fenced or not yet in DNS
while it runs. So it starts as soon as Cloud SQL shows the promotion begun (a request
refused at once touches no app), and the outage holds the longer of the two, not their
sum. A promotion that then fails, leaving the instance a replica, points the apps back at
the promoted secondary before the fence is lifted.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.futures import PrefectFuture

from flows.database_connection import connection_detail, point_apps_at, point_back
from flows.fence import Fence
from flows.resume import resumable
from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.topology import SqlInstanceRef, Topology
from tasks.cloud_sql import PromoteResult, sql_promote_replica
from tasks.cloud_sql_wal import ReceivedWal, promotion_started
from tasks.polling import wait_until


def promote_and_connect(
    topo: Topology,
    record: RunRecord,
    fence: Fence,
    old: SqlInstanceRef,
    promoted: SqlInstanceRef,
    received: ReceivedWal,
) -> PromoteResult:
    """Promote ``old`` and point the apps of both regions at it meanwhile (steps
    ``promote`` and, inside it, ``database-connection``); the fence learns what it
    decides on."""
    env = topo.environment
    regions = [topo.regions.primary, topo.regions.secondary]
    rolled = False
    roll_failure: Exception | None = None
    fence.promotion_started = True
    promote = resumable(sql_promote_replica, record, "promote").submit(
        env, old.project, old.instance
    )
    try:
        with record.step("promote") as step:
            if _accepted(env, old, promote):
                rolled = True
                try:
                    with record.step("database-connection") as connecting:
                        update, refreshed = point_apps_at(topo, record, old, required=regions)
                        connecting.detail = connection_detail(update, refreshed)
                except Exception as exc:  # raised once the promotion has ended
                    roll_failure = exc
            promote.wait()
            if roll_failure is not None and not promote.state.is_completed():
                get_run_logger().error("the roll beside the promotion failed too: %s", roll_failure)
            result: PromoteResult = promote.result()
            step.detail = f"{old.instance} is {result.after.instance_type}; {received.describe()}"
        if roll_failure is not None:
            raise roll_failure
        if not rolled:  # not seen begun, yet done: point the apps at it now, as before
            with record.step("database-connection") as connecting:
                update, refreshed = point_apps_at(topo, record, old, required=regions)
                connecting.detail = connection_detail(update, refreshed)
    except Exception:
        if rolled:
            point_back(topo, record, promote, old, promoted, required=regions)
        raise
    fence.repointed.update(s.name for s in topo.services)
    return result


def _accepted(env: str, replica: SqlInstanceRef, promote: PrefectFuture[Any]) -> bool:
    """Wait until Cloud SQL shows the promotion begun (True) or its request has ended; then
    True only if it succeeded (a refusal: nothing to roll)."""

    def seen() -> bool | None:
        if promote.wrapped_future.done():  # type: ignore[attr-defined]
            # wait() first: it keeps the final state; before it, ``state`` asks the API,
            # which records task states later (from events) and may still say Running.
            promote.wait()
            return bool(promote.state.is_completed())
        try:
            return True if promotion_started(env, replica.project, replica.instance) else None
        except Exception as exc:  # a read that failed: ask again; the request ends anyway
            get_run_logger().info("could not read whether the promotion began: %s", exc)
            return None

    # As long as the request itself may take (sql_promote_replica's limit).
    interval = runtime.clients(env).poll_interval
    return wait_until(seen, timeout=1800, interval=interval, what="the promotion to begin")
