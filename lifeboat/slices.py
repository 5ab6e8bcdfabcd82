"""Continuous capture of MongoDB changes: slices of oplog entries after a base backup.

Layout in the backups bucket, one chain of slices per base backup:

    mongodb-oplog/<base backup id>/<seq:06d>/oplog.tar.gz.enc   encrypted, one oplog.bson
    mongodb-oplog/<base backup id>/<seq:06d>/manifest.json      written last
    mongodb-oplog/state.json                                    where the next slice resumes

Slice 1 resumes from the base backup's own resume tokens, slice n+1 from slice n's, so a
chain has no hole: a base restored, then its slices replayed in order up to a moment
(`mongorestore --oplogLimit`), is the data as it was at that moment. A token the server
no longer holds is a gap: the chain ends there and a new base backup starts a new one.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from lifeboat.manifest import OplogCoverage, Status, StoredObject

SLICES = "mongodb-oplog/"
CAPTURE_STATE = SLICES + "state.json"
SLICE_OBJECT = "oplog.tar.gz.enc"
SLICE_MANIFEST = "manifest.json"
RPO_MINUTES = 5.0  # seed 004: user data, "continuous" backups with a 5-minute RPO


def slice_prefix(base_backup_id: str, seq: int) -> str:
    return f"{SLICES}{base_backup_id}/{seq:06d}/"


class SliceManifest(BaseModel):
    format: int = 1
    environment: str
    base_backup_id: str
    seq: int = Field(ge=1)
    since: datetime = Field(description="the previous slice's (or the base's) cut")
    from_tokens: dict[str, str]
    oplog: OplogCoverage
    key_id: str
    object: StoredObject
    sha256: str = Field(description="sha256 of the oplog.bson inside")
    status: Status = "unverified"
    error: str | None = None
    tool: str
    flow_run_id: str | None = None
    capped: bool = Field(
        False, description="cut short by the size cap: the changes after it are in the next"
    )

    @property
    def prefix(self) -> str:
        return slice_prefix(self.base_backup_id, self.seq)

    @property
    def until(self) -> datetime:
        return self.oplog.until


class CaptureState(BaseModel):
    """Where the next slice resumes: the chain's base, its last slice, their tokens."""

    base_backup_id: str
    seq: int = Field(0, description="the last slice written; 0 right after the base")
    until: datetime
    tokens: dict[str, str]


def chain(slices: list[SliceManifest]) -> list[SliceManifest]:
    """The verified slices 1, 2, … up to the first hole, in order."""
    out: list[SliceManifest] = []
    for expected, item in enumerate(sorted(slices, key=lambda s: s.seq), start=1):
        if item.seq != expected or item.status != "verified":
            break
        out.append(item)
    return out


def covered_until(base_until: datetime, slices: list[SliceManifest]) -> datetime:
    """How far a chain reaches: its base's cut, or the end of its last unbroken slice."""
    unbroken = chain(slices)
    return unbroken[-1].until if unbroken else base_until


def closing_gap(last: SliceManifest, new_base_until: datetime) -> str | None:
    """Why the old chain's closing slice does not reach the new base, or None when it does.

    Only a verified slice counts: an unverified one cannot be replayed (`chain` stops
    before it), so the moments from its ``since`` to the new base are in neither chain.
    """
    head = f"closing the chain of base {last.base_backup_id}"
    if last.status != "verified":
        return (
            f"{head}: its last slice {last.seq} is {last.status} ({last.error}); "
            f"changes from {last.since.isoformat()} to {new_base_until.isoformat()} "
            "are in no verified slice"
        )
    if last.until < new_base_until:
        return (
            f"{head}: its last slice {last.seq} ends at {last.until.isoformat()}, "
            f"before the new base's end {new_base_until.isoformat()}"
        )
    return None


def slices_needed(unbroken: list[SliceManifest], point: datetime) -> list[SliceManifest]:
    """The slices a restore to ``point`` replays: up to the first that reaches past it,
    and the one after as a guard.

    A write stamped before slice n's cut but visible only after it lands in slice n+1;
    the replay keeps only entries before the point (`before`), so reading n+1 too is
    safe. The guard is the first slice that starts at or after the point; when it does
    not exist yet, `has_guard` says so.
    """
    needed = []
    for item in unbroken:
        needed.append(item)
        if item.since >= point:
            break
    return needed


def has_guard(needed: list[SliceManifest], point: datetime) -> bool:
    """Whether ``slices_needed`` found a slice after the point (see there)."""
    return bool(needed) and needed[-1].since >= point
