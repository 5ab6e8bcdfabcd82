"""restore-sql: the live Cloud SQL primary, as it was at a moment or in a backup run, or a
backup's SQL exports from any region's copy, into a new instance.

The runbook: check the parameters (exactly one of ``point_in_time``, ``backup_run`` and
``backup_id``/``source_bucket``; the point within the source's PITR window; the backup
verified where it is read) and the target (absent, or made by an earlier run of this
restore; a live or foreign instance only with ``force``, which deletes it first) before any
change → clone to the point (``instances.clone`` with ``pointInTime``), or create an
instance like the source and restore the backup run into it, or import the exports into
it (flows/sql_exports.py) → run the topology's integrity queries on the new instance →
record.

A re-run for the same target (after a crash) finds the clone, restore or import the first
run started and waits for it, and repeats no import that finished.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows.evidence import published
from flows.launch import ENVIRONMENT_FIELD, SwitchRequest
from flows.restore import BACKUP_ID, SOURCE_BUCKET
from flows.sql_exports import ExportSource, export_source, import_exports
from lifeboat import runtime
from lifeboat.record import RunRecord
from tasks.cloud_sql import (
    InstanceState,
    sql_delete_instance,
    sql_describe_instance,
    sql_live_primary,
)
from tasks.cloud_sql_backups import sql_integrity_counts
from tasks.cloud_sql_pitr import (
    IMPORT,
    RESTORE,
    RestoreTarget,
    TargetKind,
    parse_point,
    rfc3339,
    sql_backup_run_status,
    sql_clone_to_point,
    sql_create_restore_target,
    sql_pitr_window,
    sql_restore_target,
)
from tasks.cloud_sql_scratch import sql_restore_backup_run
from tasks.errors import PermanentError

# Cloud SQL's instance-name rule: lowercase letters, digits and hyphens, from a letter.
INSTANCE_NAME = r"^[a-z]([a-z0-9-]{0,96}[a-z0-9])?$"


class RestorePlan(BaseModel):
    """What the checks settled, before any change."""

    project: str
    source: str
    region: str
    target: RestoreTarget
    point_in_time: str | None = None  # RFC 3339, UTC
    backup_run: int | None = None
    exports: ExportSource | None = None  # the backup whose SQL exports are imported
    delete_first: bool = False  # force: a target no restore made is deleted first
    in_place: bool = False  # force: the backup run is restored over the live source


def plan_restore(
    environment: str,
    point_in_time: str | None,
    backup_run: int | None,
    target_instance: str,
    force: bool,
    backup_id: str | None = None,
    source_bucket: str | None = None,
    region: str | None = None,
) -> RestorePlan:
    """Refuse bad parameters (naming the field) and settle the restore; changes nothing."""
    from_exports = backup_id is not None or source_bucket is not None
    if [point_in_time is not None, backup_run is not None, from_exports].count(True) != 1:
        raise PermanentError(
            "point_in_time, backup_run, backup_id: give exactly one of them "
            "(source_bucket reads a backup_id, default the newest, from a copy)"
        )
    if region is not None and not from_exports:
        raise PermanentError(
            "region: only an import of exports chooses its region; a clone or a backup "
            "run's restore goes where its source is"
        )
    if from_exports:
        return plan_import(environment, backup_id, source_bucket, target_instance, force, region)
    point = parse_point(point_in_time) if point_in_time is not None else None
    if point is not None and point > datetime.now(UTC):
        raise PermanentError(f"point_in_time: {rfc3339(point)} is in the future")
    source = sql_live_primary(environment)
    plan = RestorePlan(
        project=source.project,
        source=source.name,
        region=source.region,
        target=sql_restore_target(environment, source.project, target_instance),
        point_in_time=rfc3339(point) if point is not None else None,
        backup_run=backup_run,
    )
    if point is not None:
        window = sql_pitr_window(environment, source.project, source.name)
        refusal = window.refusal(point, datetime.now(UTC))
        if refusal:
            raise PermanentError(refusal)
    if backup_run is not None:
        status = sql_backup_run_status(environment, source.project, source.name, backup_run)
        if status != "SUCCESSFUL":
            raise PermanentError(f"backup_run: {backup_run} is {status}, not SUCCESSFUL")
    _settle_target(environment, plan, force)
    return plan


def plan_import(
    environment: str,
    backup_id: str | None,
    source_bucket: str | None,
    target_instance: str,
    force: bool,
    region: str | None,
) -> RestorePlan:
    """An import of a backup's exports: nothing of the source instance or its region is
    read (it may be gone); the new instance goes into ``region``, by default the
    secondary region, which a disaster in the primary's leaves standing."""
    exports = export_source(environment, backup_id, source_bucket)
    topo = runtime.topology(environment)
    plan = RestorePlan(
        project=exports.project,
        source=exports.instance,
        region=region or topo.regions.secondary.name,
        target=sql_restore_target(environment, exports.project, target_instance),
        exports=exports,
    )
    target = plan.target
    live = {topo.cloud_sql.primary.instance, topo.cloud_sql.replica.instance, exports.instance}
    if target.name in live:
        raise PermanentError(
            f"target_instance: {target.name} is a live instance; an import of exports "
            "always goes into a new instance"
        )
    resumable_here = target.kind == TargetKind.ours and target.how == "export"
    if target.kind == TargetKind.absent or (resumable_here and not force):
        if target.finished.get(IMPORT) is False:
            raise PermanentError(
                f"target_instance: an import into {target.name} failed; its databases may "
                "be half made: restore into a new target, or replace this one with force"
            )
        return plan
    if not force:
        raise PermanentError(
            f"target_instance: {target.name} exists and no import of exports made it; "
            "restore over it only with force (it is deleted first)"
        )
    plan.delete_first = True
    return plan


def _settle_target(environment: str, plan: RestorePlan, force: bool) -> None:
    """Refuse a target that is live or that no restore made, unless ``force``; then say
    how it is replaced. Only a backup run can go over the source itself: a point-in-time
    recovery always creates a new instance."""
    target = plan.target
    if target.name == plan.source:
        if plan.backup_run is None:
            raise PermanentError(
                f"target_instance: {target.name} is the source; a point-in-time recovery "
                "always goes into a new instance"
            )
        if not force:
            raise PermanentError(
                f"target_instance: {target.name} is the live primary; "
                "restore over it only with force"
            )
        plan.in_place = True
        return
    sql = runtime.topology(environment).cloud_sql
    live = {sql.primary.instance, sql.replica.instance}
    if target.kind == TargetKind.absent or (
        target.kind == TargetKind.ours and target.name not in live
    ):
        return
    if not force:
        raise PermanentError(
            f"target_instance: {target.name} exists and no restore made it; "
            "restore over it only with force (it is deleted first)"
        )
    plan.delete_first = True


def restore_into_new_instance(environment: str, plan: RestorePlan) -> tuple[InstanceState, str]:
    """The one change: clone to the point, or a new instance and the backup run or the
    exports; the instance, and what was done."""
    target = plan.target.name
    if plan.delete_first:
        sql_delete_instance(environment, plan.project, target)
    if plan.point_in_time is not None:
        state = sql_clone_to_point(
            environment, plan.project, plan.source, target, plan.point_in_time
        )
        return state, f"cloned {plan.source} at {plan.point_in_time}"
    if plan.exports is not None:
        # The spec the backup recorded: the source may be gone with its region.
        like = plan.exports.spec or f"{plan.project}:{plan.source}"
        sql_create_restore_target(environment, plan.project, target, plan.region, like, "export")
        done = import_exports(environment, plan.project, target, plan.exports)
        return sql_describe_instance(environment, plan.project, target), done
    if not plan.in_place:
        sql_create_restore_target(
            environment, plan.project, target, plan.region, f"{plan.project}:{plan.source}"
        )
    assert plan.backup_run is not None
    # A restore an earlier run finished is not repeated: it would write the same data again.
    if plan.delete_first or plan.in_place or not plan.target.finished.get(RESTORE):
        sql_restore_backup_run(
            environment, plan.project, target, plan.project, plan.source, plan.backup_run
        )
    done = f"restored backup run {plan.backup_run}"
    return sql_describe_instance(environment, plan.project, target), done


@flow(name="restore-sql", persist_result=True)
def restore_sql(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    target_instance: Annotated[
        str,
        Field(pattern=INSTANCE_NAME, description="New Cloud SQL instance to restore into"),
    ],
    point_in_time: Annotated[
        str | None,
        Field(description="RFC 3339 moment to restore to, e.g. 2026-12-05T14:30:00Z"),
    ] = None,
    backup_run: Annotated[
        int | None, Field(ge=1, description="Backup run id to restore (instead of a moment)")
    ] = None,
    backup_id: Annotated[
        str | None,
        Field(pattern=BACKUP_ID, description="Lifeboat backup whose SQL exports to import"),
    ] = None,
    source_bucket: Annotated[
        str | None,
        Field(
            pattern=SOURCE_BUCKET,
            description="Read the exports from this cross-region copy (bucket or location); "
            "without backup_id, its newest verified backup",
        ),
    ] = None,
    region: Annotated[
        str | None,
        Field(
            pattern=r"^[a-z]+-[a-z]+[0-9]+$",
            description="Region of an import's new instance (default: the secondary region)",
        ),
    ] = None,
    force: Annotated[
        bool, Field(description="Allow a target that exists and no restore made (deleted first)")
    ] = False,
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "restore Cloud SQL",
    operator: Annotated[str, Field(max_length=100, description="Who launched it")] = "unknown",
) -> dict[str, Any]:
    request = SwitchRequest.validate_launch(environment, reason, None, operator, prefix="rsql")
    started = time.perf_counter()
    mode = "point-in-time" if point_in_time else "backup-run" if backup_run else "export"
    record: RunRecord = request.record("restore-sql", mode, False)
    with published(record, notify_success=False):
        with record.step("check") as step:
            plan = plan_restore(
                request.environment,
                point_in_time,
                backup_run,
                target_instance,
                force,
                backup_id,
                source_bucket,
                region,
            )
            step.detail = _describe(plan)
        record.before = plan.model_dump(mode="json")
        with record.step("restore") as step:
            state, done = restore_into_new_instance(request.environment, plan)
            step.detail = f"{done}: {state.name} is {state.state}"
        with record.step("verify") as step:
            database = runtime.topology(request.environment).cloud_sql.databases[0]
            counts = sql_integrity_counts(request.environment, plan.project, state.name, database)
            step.detail = ", ".join(f"{k}={v}" for k, v in counts.items()) or "no queries"
            record.after = {"instance": state.name, "state": state.state, "integrity": counts}
            outside = plan.exports.judged(counts) if plan.exports is not None else []
            if plan.exports is not None:
                step.detail += "; " + (
                    f"outside the backup's counts: {', '.join(outside)}"
                    if outside
                    else "within the backup's counts"
                )
            if state.state != "RUNNABLE":
                raise PermanentError(f"restore-sql: {state.name} is {state.state}, not RUNNABLE")
            if outside:
                raise PermanentError(
                    f"restore-sql: {state.name} does not hold the backup: {', '.join(outside)}"
                )
        record.rto_seconds = time.perf_counter() - started
        record.finish("completed")
        get_run_logger().info("restored %s into %s: %s", plan.source, state.name, counts)
    return record.model_dump(mode="json")


def _describe(plan: RestorePlan) -> str:
    if plan.exports is not None:
        what = plan.exports.describe()
    elif plan.point_in_time:
        what = f"at {plan.point_in_time}"
    else:
        what = f"backup run {plan.backup_run}"
    if plan.in_place:
        how = "over the live source (force)"
    elif plan.delete_first:
        how = "deleting the instance there first (force)"
    elif plan.target.kind == TargetKind.ours:
        how = "resuming the restore that made it"
    else:
        how = "a new instance"
    return f"{plan.source} {what} → {plan.target.name} ({how})"
