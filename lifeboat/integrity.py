"""A restored database's integrity counts against the ones its backup recorded.

A backup counts just before its backup run, and again after its last SQL export: a
restore of either holds the data of a moment between the two, so each count must lie
between its two values. A backup that has only the first count (taken before the second
was recorded) is held to it exactly, as is a restore to the counts' own moment (PITR).
"""

from __future__ import annotations


def differences(
    counts: dict[str, int], before: dict[str, int], after: dict[str, int] | None = None
) -> list[str]:
    """Each query whose restored count is not what the backup allows, said as
    ``name got ∉ [low, high]`` (or ``≠ expected``); empty when all hold. A backup that
    recorded no counts proves nothing, and says so."""
    if not before:
        return ["the backup recorded no counts to compare with"]
    found = []
    for name, first in before.items():
        got = counts.get(name)
        last = (after or {}).get(name, first)
        low, high = min(first, last), max(first, last)
        if got is None or not low <= got <= high:
            allowed = f"≠ {first}" if low == high else f"∉ [{low}, {high}]"
            found.append(f"{name} {got} {allowed}")
    return found
