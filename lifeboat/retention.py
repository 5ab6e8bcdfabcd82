"""Which backups retention deletes, and why: a pure decision, tested on synthetic histories.

Rules (seeds 000/001 used `find -mtime +30 -delete`, which can delete the only good copy):
- a backup older than the source's retention is deleted;
- the newest backup that passed verification is never deleted, whatever its age;
- when the newest backup did not pass verification, nothing is deleted: the older ones
  may be all that is left, and a person should look first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal


@dataclass(frozen=True)
class Candidate:
    key: str  # backup id, or a backup run id
    taken_at: datetime
    verified: bool
    status: str


@dataclass(frozen=True)
class Decision:
    key: str
    action: Literal["delete", "keep"]
    reason: str


def decide(candidates: list[Candidate], keep_days: float, now: datetime) -> list[Decision]:
    """A decision for every candidate, newest first."""
    ordered = sorted(candidates, key=lambda c: c.taken_at, reverse=True)
    if not ordered:
        return []
    cutoff = now - timedelta(days=keep_days)
    newest = ordered[0]
    if not newest.verified:
        return [
            Decision(c.key, "keep", f"newest backup {newest.key} is {newest.status}: no deletion")
            for c in ordered
        ]
    decisions = []
    for c in ordered:
        age_days = (now - c.taken_at).total_seconds() / 86400
        if c is newest:
            decisions.append(Decision(c.key, "keep", "newest verified backup"))
        elif c.taken_at < cutoff:
            decisions.append(
                Decision(
                    c.key, "delete", f"{age_days:.1f} days old > {keep_days:g} days ({c.status})"
                )
            )
        else:
            decisions.append(
                Decision(c.key, "keep", f"{age_days:.1f} days old, within {keep_days:g}")
            )
    return decisions
