"""backup-staleness: alert when the newest verified backup of a source is too old.

Seed 003: RPO 12 h, alert (`AisleMartsBackupStale`) after 36 h. Every run reports the
age of every source; once MongoDB's changes are captured (mongo-capture), also the age of
the newest slice, against seed 004's 5-minute RPO (alert past three missed slices).
Past the RPO it warns, past the alert threshold it emits an event
and fails the run, so the alert is visible in the Prefect UI too; the failed run's record
is what notifies (flows/evidence.py ``published``).

Each region's copy (``backups.copies``) is judged by the same thresholds: a source's row
reports the newest verified copy in every copy bucket, and takes the worst level.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event
from pydantic import Field

from flows.evidence import published
from flows.launch import ENVIRONMENT_FIELD, SwitchRequest
from lifeboat import runtime
from lifeboat.manifest import Source
from lifeboat.record import RunRecord
from lifeboat.slices import RPO_MINUTES
from lifeboat.topology import Topology
from tasks.catalog import catalog_newest
from tasks.errors import PermanentError
from tasks.mongo_capture import mongo_capture_state_read
from tasks.records import artifact_key

SOURCES: list[Source] = ["mongodb", "cloudsql"]


@flow(name="backup-staleness")
def backup_staleness(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    rpo_hours: Annotated[
        float | None, Field(gt=0, description="Warn past this age; default the topology's")
    ] = None,
    alert_hours: Annotated[
        float | None, Field(gt=0, description="Alert past this age; default the topology's")
    ] = None,
    sources: Annotated[list[Source], Field(min_length=1)] = SOURCES,
) -> list[dict[str, Any]]:
    request = SwitchRequest.validate_launch(
        environment, "staleness check", None, "schedule", prefix="stale"
    )
    topo = runtime.topology(request.environment)
    rpo = rpo_hours or topo.backups.staleness.rpo_hours
    alert = alert_hours or topo.backups.staleness.alert_hours
    if rpo > alert:
        raise PermanentError(f"rpo_hours: {rpo} is above alert_hours {alert}")
    record = request.record("backup-staleness", "scheduled", False)
    with published(record, notify_success=False):
        rows = _ages(topo, record, sources, rpo, alert)
    return rows


def _ages(
    topo: Topology, record: RunRecord, sources: list[Source], rpo: float, alert: float
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for source in sources:
        newest = catalog_newest(topo.environment, source, verified_only=True)
        age = newest.age_hours(now) if newest else None
        # Each region's newest verified copy is judged by the same thresholds.
        copies = {
            c.location: catalog_newest(topo.environment, source, True, c.bucket)
            for c in topo.backups.copies
        }
        copy_ages = {loc: m.age_hours(now) if m else None for loc, m in copies.items()}
        levels = [_level(a, rpo, alert) for a in (age, *copy_ages.values())]
        level = "alert" if "alert" in levels else "warning" if "warning" in levels else "ok"
        rows.append(
            {
                "source": source,
                "newest_verified": newest.backup_id if newest else None,
                "age_hours": None if age is None else round(age, 2),
                "copies": {
                    loc: {
                        "newest_verified": m.backup_id if m else None,
                        "age_hours": None if a is None else round(a, 2),
                        "level": _level(a, rpo, alert),
                    }
                    for loc, m in copies.items()
                    for a in [copy_ages[loc]]
                },
                "rpo_hours": rpo,
                "alert_hours": alert,
                "level": level,
            }
        )
    if "mongodb" in sources:
        rows.extend(_slice_age(topo.environment, now))
    record.after = {"sources": rows}
    create_table_artifact(
        table=rows,
        key=artifact_key("backup-staleness", topo.environment),
        description="age of the newest verified backup of each source, and of its "
        "newest verified copy in each region",
    )
    logger = get_run_logger()
    for row in rows:
        logger.info(
            "%s: newest verified %s, %s h old (%s)",
            *[row[k] for k in ("source", "newest_verified", "age_hours", "level")],
        )
        if row["level"] != "ok":
            emit_event(
                event=f"lifeboat.backup-staleness.{row['level']}",
                resource={
                    "prefect.resource.id": f"lifeboat.environment.{topo.environment}",
                    "lifeboat.source": str(row["source"]),
                },
                payload=row,
            )
    stale = [r for r in rows if r["level"] == "alert"]
    if stale:
        text = "; ".join(_stale_text(r) for r in stale)
        raise PermanentError(f"backups stale — {text}")
    record.finish("completed")
    return rows


def _slice_age(environment: str, now: datetime) -> list[dict[str, Any]]:
    """The newest change slice's age against the 5-minute RPO; nothing while no capture
    has run (the continuous capture is not set up); an alert when the capture state cannot
    be read (corrupt, refused)."""
    rpo, alert = RPO_MINUTES, 3 * RPO_MINUTES
    try:
        state, _ = mongo_capture_state_read(environment)
    except Exception as exc:
        return [
            {
                "source": "mongodb-changes",
                "newest_verified": None,
                "age_hours": None,
                "rpo_hours": round(rpo / 60, 4),
                "alert_hours": round(alert / 60, 4),
                "level": "alert",
                "copies": {},
                "error": f"capture state unreadable: {exc}"[:300],
            }
        ]
    if state is None:
        return []
    minutes = (now - state.until).total_seconds() / 60
    level = "alert" if minutes > alert else "warning" if minutes > rpo else "ok"
    return [
        {
            "source": "mongodb-changes",
            "newest_verified": f"slice {state.seq} after backup {state.base_backup_id}",
            "age_hours": round(minutes / 60, 4),
            "rpo_hours": round(rpo / 60, 4),
            "alert_hours": round(alert / 60, 4),
            "level": level,
            "copies": {},  # slices stay in the backups bucket: no cross-region copies
        }
    ]


def _level(age: float | None, rpo: float, alert: float) -> str:
    return "alert" if age is None or age > alert else "warning" if age > rpo else "ok"


def _stale_text(row: dict[str, Any]) -> str:
    """``mongodb: 40.0 h old (alert after 36 h)``, and each region's copy that is stale."""
    alert = row["alert_hours"]
    parts = []
    # Rounded ages sit on the threshold at worst: a row that alerted names its age anyway.
    if _level(row["age_hours"], 0, alert) == "alert" or not any(
        c["level"] == "alert" for c in row["copies"].values()
    ):
        age = row["age_hours"]
        parts.append(row.get("error") or ("no verified backup" if age is None else f"{age} h old"))
    for location, copy in row["copies"].items():
        if copy["level"] == "alert":
            age = copy["age_hours"]
            parts.append(
                f"copy in {location} "
                + ("missing: no verified copy" if age is None else f"{age} h old")
            )
    return f"{row['source']}: " + ", ".join(parts) + f" (alert after {alert:g} h)"
