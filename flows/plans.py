"""Dry-run plans: the exact changes a run will make, one line each, from the state read now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flows.fence import fence_line, lift_line
from lifeboat.topology import RegionRole, Scaling, SqlInstanceRef, Topology
from tasks.cloud_run import ServiceState
from tasks.dns import RecordState

# How long a graceful failover waits, fence set, for the replica to receive the primary's
# WAL. With replication working that takes well under a second; a minute more means the
# link is broken, and the operator approved the lag that was estimated before.
RECEIVE_WAIT_S = 60


@dataclass(frozen=True)
class PrimaryFence:
    """A graceful failover's fence on the primary: the services as read now, and whether
    the fence is required (the primary looks healthy) or best effort (it looks down)."""

    states: Sequence[ServiceState]
    required: bool


def failover_plan(
    topo: Topology,
    record: RecordState | None,
    services: list[ServiceState],
    replica_type: str,
    refresh: Sequence[str] = (),
    fence: PrimaryFence | None = None,
) -> list[str]:
    """The exact changes a failover makes, one line each, from the state read now.

    ``refresh``: per service, how its running instances will see the new secret version.
    ``fence``: the graceful failover's fence on the primary (None: ungraceful, none).
    """
    primary, secondary = topo.regions.primary, topo.regions.secondary
    app_secret = topo.cloud_sql.app_secret
    replica = topo.cloud_sql.replica
    lines = []
    if fence is not None:
        effort = "" if fence.required else " (best effort: the primary looks down)"
        lines += [fence_line(primary.name, st) + effort for st in fence.states]
        if fence.required:
            lines.append(database_fence_line(topo, topo.cloud_sql.primary))
        lines.append(
            f"wait for {replica.instance} to receive all the WAL {topo.cloud_sql.primary.instance}"
            f" has written (up to {RECEIVE_WAIT_S} s; what it still lacks then is recorded)"
        )
    lines += [
        # The promotion is the longest step, and runs beside the next lines. The replica
        # keeps its IP when promoted, so the URL is known now, and the secondary's
        # instances that start from zero must find the new version.
        f"promote {replica.project}:{replica.instance} (read replica → primary; "
        + ("after the fence and the wait, " if fence is not None else "started first, ")
        + "it runs while the secret, the refresh and the scale-up go on)"
        if replica_type == "READ_REPLICA_INSTANCE"
        else f"keep {replica.project}:{replica.instance} (already a primary)",
        *([database_open_line(topo, replica)] if fence is not None and fence.required else []),
        f"add a version of secret {app_secret.resource} naming "
        f"{topo.cloud_sql.replica.instance} (before the scale-up: instances read it as they"
        " start; apps reading it from a volume at latest follow at once)",
        *refresh,
    ]
    for svc, state in zip(topo.services, services, strict=True):
        lines.append(scale_line(secondary.name, svc.name, state, svc.active_scaling))
    for rec in topo.dns.records:
        new = ",".join(rec.rrdatas[RegionRole.secondary])
        if record is not None and record.name == rec.name:
            lines.append(
                f"DNS {rec.name} {rec.type}: {','.join(record.rrdatas)} (ttl {record.ttl})"
                f" → {new} (ttl {rec.failover_ttl})"
            )
        else:
            lines.append(f"DNS {rec.name} {rec.type}: → {new} (ttl {rec.failover_ttl})")
    for path in topo.cdn.paths:
        lines.append(f"invalidate {topo.cdn.url_map} {topo.cdn.host}{path}")
    lines.append(
        f"verify {len(topo.health.checks)} health check(s) via {topo.health.host}"
        f" reach {secondary.name}"
    )
    if fence is not None:
        lines += [
            lift_line(primary.name, st) + " (once it names the promoted database; else kept)"
            for st in fence.states
        ]
    lines.append(backups_line(topo, replica.instance, topo.cloud_sql.primary.instance))
    return lines


def database_fence_line(topo: Topology, fenced: SqlInstanceRef) -> str:
    """The plan's line for the database fence (flows/database_fence.py)."""
    role = topo.cloud_sql.app_user
    return (
        f"fence {role} on {fenced.project}:{fenced.instance}: NOLOGIN, its sessions ended "
        "(a request admitted before the ingress fence commits now, or fails unacknowledged)"
    )


def database_open_line(topo: Topology, promoted: SqlInstanceRef) -> str:
    return (
        f"let {topo.cloud_sql.app_user} log in to {promoted.instance} once promoted (the "
        "fence replicated to it; the old primary stays fenced)"
    )


def backups_line(topo: Topology, instance: str, like: str) -> str:
    """The plan's line for the backups a promoted replica needs (it has none). Turning
    PITR on restarts the instance (sql/docs/postgres/backup-recovery/configure-pitr): a
    short outage of the new primary, so the plan says it, and it comes after the
    verification."""
    return (
        f"turn on backups and point-in-time recovery on {instance}, as {like} had them, "
        f"with at least {topo.backups.pitr_log_days} days of logs, unless on already "
        "(Cloud SQL restarts it to turn PITR on: its connections drop for a moment)"
    )


def scale_line(region: str, service: str, state: ServiceState | None, target: Scaling) -> str:
    """One plan line: the effective capacity now (both levels) → the service-level target."""
    capacity = state.capacity if state is not None else None
    current = capacity.describe() if capacity else "missing"
    keep = capacity is not None and (capacity.service.min, capacity.service.max) == (
        target.min,
        target.max,
    )
    return (
        f"{'keep' if keep else 'scale'} {region}/{service}: {current}"
        f" → service-level {target.min}..{target.max}"
    )
