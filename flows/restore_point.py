"""Which base backup and which slices restore MongoDB to a moment, refused up front.

A base backup is consistent at its cut (`Manifest.consistent_at`); its chain of slices
reaches on from there (`lifeboat.slices`). A moment is restorable when it lies between a
verified base's cut and the end of that base's unbroken chain. Everything here reads;
a refusal names ``point_in_time`` and happens before anything is written.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger

from lifeboat.manifest import Manifest
from lifeboat.oplog import utc, utc_moment
from lifeboat.slices import SliceManifest, chain, covered_until, has_guard, slices_needed
from tasks.catalog import catalog_list
from tasks.errors import PermanentError
from tasks.mongo_capture import mongo_list_slices, mongo_verify_slices


def check_point(backup_id: str | None, point_in_time: datetime | None) -> datetime | None:
    """``point_in_time`` in UTC, or None; refused, naming it, when it has no UTC offset, is
    in the future, or comes with a ``backup_id``. Reads nothing: a restore calls it before
    its run record exists."""
    if point_in_time is None:
        return None
    if backup_id is not None:
        raise PermanentError("point_in_time: give a backup_id or a point_in_time, not both")
    try:
        point = utc_moment(point_in_time)
    except ValueError as exc:
        raise PermanentError(str(exc)) from None
    if point > datetime.now(UTC):
        raise PermanentError(f"point_in_time: {point.isoformat()} is in the future")
    return point


def plan_point(environment: str, point_in_time: datetime) -> tuple[Manifest, list[SliceManifest]]:
    """The base backup and the slices to replay for ``point_in_time``; refuses otherwise."""
    point = check_point(None, point_in_time)
    assert point is not None
    bases = [
        m
        for m in catalog_list(environment, "mongodb")
        if m.verified and m.consistent_at is not None
    ]
    reached: list[str] = []
    for base in sorted(bases, key=lambda m: m.backup_id, reverse=True):
        start = base.consistent_at
        assert start is not None
        if utc(start) > point:
            continue
        assert base.oplog is not None
        unbroken = chain(mongo_list_slices(environment, base.backup_id))
        # The base is exact from the second after its cut, its slices reach on from the cut.
        reach = covered_until(utc(base.oplog.until), unbroken)
        if point <= reach:
            needed = slices_needed(unbroken, point)
            if not has_guard(needed, point):
                get_run_logger().warning(
                    "point_in_time %s: no slice after it yet (the chain of backup %s reaches "
                    "%s); a write stamped before it but committed after that is not replayed; "
                    "restoring with what there is",
                    point.isoformat(),
                    base.backup_id,
                    reach.isoformat(),
                )
            return base, needed
        reached.append(f"backup {base.backup_id} covers {start.isoformat()} to {reach.isoformat()}")
    covered = "; ".join(reached[:3]) or "no verified backup with captured changes before it"
    raise PermanentError(
        f"point_in_time: {point.isoformat()} is not covered by a backup and its captured "
        f"changes ({covered}); nothing was written"
    )


def verify_slices(environment: str, slices: list[SliceManifest]) -> list[SliceManifest]:
    checked = mongo_verify_slices(environment, slices)
    bad = [f"{s.prefix}: {s.error}" for s in checked if s.status != "verified"]
    if bad:
        raise PermanentError(
            "point_in_time: slices failed verification ("
            + "; ".join(bad)
            + "); nothing was written"
        )
    return checked
