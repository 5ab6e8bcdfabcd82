"""Retention in the backups bucket, one source at a time: expired backups, then the
folders a crashed run left without a manifest. Shared by the data and config backups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifeboat.manifest import AnySource
from lifeboat.retention import Candidate, decide
from lifeboat.topology import Topology
from tasks.catalog import ORPHAN_GRACE, catalog_delete, catalog_list, catalog_orphans


def source_retention(topo: Topology, source: AnySource, now: datetime) -> list[dict[str, Any]]:
    """Delete the source's backups past its retention (``Retention.days``), never the
    newest verified one and nothing at all when the newest failed (lifeboat/retention);
    one report row per backup considered."""
    env = topo.environment
    history = catalog_list(env, source)
    by_id = {m.backup_id: m for m in history}
    candidates = [Candidate(m.backup_id, m.started_at, m.verified, m.status) for m in history]
    report = []
    for d in decide(candidates, topo.backups.retention.days(source), now):
        objects = catalog_delete(env, by_id[d.key]) if d.action == "delete" else []
        report.append(
            {
                "what": f"{source} {d.key}",
                "action": d.action,
                "reason": d.reason,
                "objects": len(objects),
            }
        )
    return report + orphan_retention(env, source, now)


def orphan_retention(env: str, source: AnySource, now: datetime) -> list[dict[str, Any]]:
    """Folders a crashed run left without a manifest: deleted once past the grace period."""
    report = []
    grace_days = ORPHAN_GRACE.total_seconds() / 86400
    for orphan in catalog_orphans(env, source):
        age_days = (now - orphan.started_at).total_seconds() / 86400
        if age_days > grace_days:
            objects = catalog_delete(env, orphan)
            action = "delete"
            reason = (
                f"no manifest (an interrupted backup), {age_days:.1f} days old, "
                f"past the {grace_days:g}-day grace"
            )
        else:
            objects, action = [], "keep"
            reason = f"no manifest yet, {age_days:.1f} days old: it may still be writing"
        report.append(
            {
                "what": f"{source} {orphan.backup_id}",
                "action": action,
                "reason": reason,
                "objects": len(objects),
            }
        )
    return report
