"""How a backup flow (backup, config-backup) opens its run, and writes down a backup that
failed: the same for every kind, so that records and retention read them alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flows.launch import SwitchRequest
from lifeboat import runtime
from lifeboat.manifest import AnySource, Manifest, backup_id
from lifeboat.record import RunRecord
from lifeboat.topology import Topology
from tasks.backup_archive import tool_version
from tasks.catalog import catalog_write_quietly


@dataclass(frozen=True)
class BackupRun:
    """A backup run just opened: its start, its backup id, the topology and its record."""

    started: datetime
    backup_id: str
    topology: Topology
    record: RunRecord


def open_backup_run(
    environment: str, flow_name: str, what: str, prefix: str, operator: str
) -> BackupRun:
    """Check the launch (bad input refused before any call, naming the parameter) and
    start the run's record; its incident id is ``<prefix>-<backup id>``."""
    started = datetime.now(UTC)
    bid = backup_id(started)
    request = SwitchRequest.validate_launch(
        environment, what, f"{prefix}-{bid}", operator, prefix=prefix
    )
    topo = runtime.topology(request.environment)
    return BackupRun(started, bid, topo, request.record(flow_name, "scheduled", False))


def failed_backup(
    environment: str,
    record: RunRecord,
    source: AnySource,
    bid: str,
    started: datetime,
    error: Exception,
) -> Manifest:
    """A backup that failed before it had a manifest, written to the catalog as failed:
    retention must see that the newest backup failed. Never raises for the catalog."""
    failed = Manifest(
        source=source,
        backup_id=bid,
        environment=environment,
        started_at=started,
        ended_at=datetime.now(UTC),
        status="failed",
        error=str(error)[:500],
        tool=tool_version(),
        flow_run_id=record.flow_run_id,
    )
    catalog_write_quietly(environment, failed)
    return failed
