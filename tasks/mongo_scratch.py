"""Scratch MongoDB databases for recovery drills, marked so a sweeper finds any leak.

MongoDB has no labels, so a drill writes one marker document (drill id, expiry) into a
``_lifeboat_drill`` collection of its scratch database before restoring into it. The
restore drops and refills only the backup's collections, so the marker stays.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bson.raw_bson import RawBSONDocument
from pydantic import BaseModel

from tasks.mongo import client
from tasks.retrying import calling, cloud_task

MARKER = "_lifeboat_drill"
SCRATCH_PREFIX = "drill_"


class ScratchDatabase(BaseModel):
    name: str
    drill_id: str | None
    expires_at: datetime | None


@cloud_task(timeout_seconds=60, task_run_name="mongo-mark-{database}")
def mongo_mark_scratch(
    environment: str, database: str, drill_id: str, expires_at: datetime
) -> None:
    """Write the drill's marker into ``database`` (creating it).

    Idempotent: an upsert keyed by the drill id.
    """
    with calling("mongo-mark", f"mongodb/{database}"), client(environment) as mongo:
        mongo[database][MARKER].replace_one(
            {"_id": drill_id},
            {"_id": drill_id, "expires_at": expires_at},
            upsert=True,
        )


def _marker(doc: RawBSONDocument | None) -> tuple[str | None, datetime | None]:
    if doc is None:
        return None, None
    expires = doc.get("expires_at")
    if isinstance(expires, datetime) and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)  # BSON dates are UTC
    return str(doc["_id"]), expires if isinstance(expires, datetime) else None


@cloud_task(timeout_seconds=120, task_run_name="mongo-list-scratch")
def mongo_list_scratch(environment: str) -> list[ScratchDatabase]:
    """Databases named like a drill's scratch database, with their marker if any.

    Idempotent: a read.
    """
    found = []
    with calling("mongo-list-scratch", "mongodb"), client(environment) as mongo:
        for name in mongo.list_database_names():
            if not name.startswith(SCRATCH_PREFIX):
                continue
            drill_id, expires = _marker(mongo[name][MARKER].find_one())
            found.append(ScratchDatabase(name=name, drill_id=drill_id, expires_at=expires))
    return found
