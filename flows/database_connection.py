"""Pointing the apps at a database: a version of the secret they read naming it, then a new
revision of each service that reads it only at instance start.

Both switches do it while their promotion runs: the instance keeps its address when
promoted, so the URL is known before. The cost is a promotion that fails and leaves the
instance a replica (Cloud SQL shows it one, with no promotion running): the apps then name
a replica, and lifting a fence would send writes to it. ``point_back`` names the old
database again first. When Cloud SQL cannot say, nothing is pointed back: the instance
may have stopped replicating, and the fence stays (``flows/fence.py``).

The add is never answered from the incident's cache: the task reads the latest version
first, and after a point-back a re-run must add the promoted instance's URL again, not be
told the first add's version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger
from prefect.futures import PrefectFuture

from flows.secret_refresh import Refreshed, refresh_secret_readers
from lifeboat.record import RunRecord
from lifeboat.topology import Region, SqlInstanceRef, Topology
from tasks.cloud_sql_wal import promotion_started
from tasks.secret_manager import SecretUpdate, secret_manager_add_database_url


def point_apps_at(
    topo: Topology,
    record: RunRecord,
    instance: SqlInstanceRef,
    required: Sequence[Region],
    optional: Sequence[Region] = (),
) -> tuple[SecretUpdate, Refreshed]:
    """The secret names ``instance``; the readers of ``required`` are rolled (failures
    raise), those of ``optional`` tried once."""
    update = secret_manager_add_database_url(topo.environment, instance.project, instance.instance)
    refreshed = refresh_secret_readers(topo, record, update.version, required, optional)
    return update, refreshed


def connection_detail(update: SecretUpdate, refreshed: Refreshed) -> str:
    added = f"added {update.version}" if update.changed else f"already {update.version}"
    return f"{added}; {refreshed}"


def point_back(
    topo: Topology,
    record: RunRecord,
    promote: PrefectFuture[Any],
    replica: SqlInstanceRef,
    back_to: SqlInstanceRef,
    required: Sequence[Region],
    optional: Sequence[Region] = (),
) -> None:
    """After a failed run that pointed the apps at ``replica`` while promoting it: once the
    promotion has ended, if it left the instance a replica, point them at ``back_to`` again
    (step ``database-connection-back``). Never raises: the run's own failure is the one
    to report; this step's outcome is in the record and the log."""
    promote.wait()  # keeps the final state: ``state`` read from the API may lag
    if promote.state.is_completed() or promotion_began(topo.environment, replica):
        return
    try:
        with record.step("database-connection-back") as step:
            update, refreshed = point_apps_at(topo, record, back_to, required, optional)
            step.detail = (
                f"the promotion of {replica.instance} failed, a replica still: the apps name "
                f"{back_to.instance} again; {connection_detail(update, refreshed)}"
            )
    except Exception as exc:
        get_run_logger().error(
            "the apps still name %s, which is not promoted: %s; a re-run of the incident "
            "points them back first",
            replica.instance,
            exc,
        )


def promotion_began(environment: str, replica: SqlInstanceRef) -> bool:
    """Whether Cloud SQL shows the promotion begun; an unanswered question counts as yes,
    so that nothing is pointed back at a database that may have stopped being a primary."""
    try:
        return promotion_started(environment, replica.project, replica.instance)
    except Exception:
        return True
