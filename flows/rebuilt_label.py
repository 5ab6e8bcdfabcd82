"""The label a failback sets on the primary-region instance it rebuilds.

It says which incident rebuilt it: a resumed run must not mistake its own rebuilt
instance for the stale old primary (and delete it), and a re-run's gate points the apps
at an instance only if this incident rebuilt it (flows/failback_gate.py), never at a
stale primary that happens to be one.
"""

from __future__ import annotations

from collections.abc import Mapping

from lifeboat.record import RunRecord

REBUILT_BY = "lifeboat-rebuilt-by"


def rebuilt_label(record: RunRecord) -> dict[str, str]:
    """The label to set. Label values allow lowercase letters, digits, - and _ only."""
    value = "".join(c if c.isalnum() or c in "-_" else "-" for c in record.incident_id.lower())
    return {REBUILT_BY: value[:63]}


def rebuilt_by(labels: Mapping[str, str], record: RunRecord) -> bool:
    """Whether an instance with ``labels`` was rebuilt by ``record``'s incident."""
    return labels.get(REBUILT_BY) == rebuilt_label(record)[REBUILT_BY]
