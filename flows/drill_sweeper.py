"""drill-sweeper: delete drill scratch resources past their expiry; report what it found.

The drill cleans up after itself, including on cancellation; this daily sweep is for what
nothing can clean from inside, such as a ``kill -9`` of the drill's process. It deletes
only what carries a drill label (instances) or marker (databases) with an expiry in the
past, or a record set whose scratch name says when it was made (tasks/dns_scratch.py);
a scratch-looking resource without one is reported and left alone, for a person.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import Field

from flows.evidence import published
from flows.launch import ENVIRONMENT_FIELD, SwitchRequest
from lifeboat import runtime
from lifeboat.record import RunRecord
from tasks.cloud_sql import sql_delete_instance
from tasks.cloud_sql_scratch import DRILL_LABEL, expiry, sql_list_scratch_instances
from tasks.dns_scratch import dns_delete_scratch, dns_list_scratch
from tasks.errors import PermanentError
from tasks.mongo import mongo_drop_database
from tasks.mongo_scratch import mongo_list_scratch
from tasks.records import artifact_key


def _verdict(labelled: bool, expires: datetime | None, now: datetime) -> str:
    if not labelled or expires is None:
        return "unlabelled: left alone"
    return "expired: delete" if expires <= now else "not expired: kept"


@flow(name="drill-sweeper")
def drill_sweeper(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    dry_run: Annotated[
        bool, Field(description="Report what would be deleted, delete nothing")
    ] = False,
) -> list[dict[str, Any]]:
    request = SwitchRequest.validate_launch(
        environment, "drill sweep", None, "schedule", prefix="sweep"
    )
    record = request.record("drill-sweeper", "scheduled", dry_run)
    with published(record, notify_success=False):
        rows = _sweep(record, dry_run)
    return rows


def _sweep(record: RunRecord, dry_run: bool) -> list[dict[str, Any]]:
    topo = runtime.topology(record.environment)
    env, now = topo.environment, datetime.now(UTC)
    projects = [topo.cloud_sql.primary.project, topo.regions.secondary.project]
    rows: list[dict[str, Any]] = []
    for inst in sql_list_scratch_instances(env, projects):
        expires = expiry(inst)
        rows.append(
            {
                "kind": "cloudsql instance",
                "name": f"{inst.project}:{inst.name}",
                "drill": inst.labels.get(DRILL_LABEL),
                "expires": expires.isoformat() if expires else None,
                "verdict": _verdict(DRILL_LABEL in inst.labels, expires, now),
                "done": "",
            }
        )
    for db in mongo_list_scratch(env):
        rows.append(
            {
                "kind": "mongodb database",
                "name": db.name,
                "drill": db.drill_id,
                "expires": db.expires_at.isoformat() if db.expires_at else None,
                "verdict": _verdict(db.drill_id is not None, db.expires_at, now),
                "done": "",
            }
        )
    scratch_records = {f"{r.name} {r.type}": r for r in dns_list_scratch(env)}
    for rec in scratch_records.values():
        expires = rec.expires(topo.drills.scratch_ttl_hours)
        rows.append(
            {
                "kind": "dns record set",
                "name": f"{rec.name} {rec.type}",
                "drill": f"drill-{rec.suffix}",
                "expires": expires.isoformat(),
                "verdict": _verdict(True, expires, now),
                "done": "",
            }
        )
    failures = []
    for row in rows:
        if row["verdict"] != "expired: delete":
            continue
        if dry_run:
            row["done"] = "would delete"
            continue
        try:
            if row["kind"] == "mongodb database":
                mongo_drop_database(env, row["name"])
            elif row["kind"] == "dns record set":
                dns_delete_scratch(env, scratch_records[row["name"]])
            else:
                project, _, name = str(row["name"]).partition(":")
                sql_delete_instance(env, project, name)
            row["done"] = "deleted"
        except Exception as exc:
            row["done"] = f"failed: {str(exc)[:200]}"
            failures.append(row["name"])
    get_run_logger().info(
        "sweep of %s: %d found, %d deleted",
        env,
        len(rows),
        sum(r["done"] == "deleted" for r in rows),
    )
    create_table_artifact(
        table=rows or [{"kind": "-", "name": "no drill scratch resource found"}],
        key=artifact_key("drill-sweeper", env),
        description=f"drill sweep of {env} at {now:%Y-%m-%d %H:%M} UTC",
    )
    record.after = {"resources": rows}
    if failures:
        raise PermanentError(f"drill-sweeper could not delete: {', '.join(map(str, failures))}")
    record.finish("planned" if dry_run else "completed")
    return rows
