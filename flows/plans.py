"""Dry-run plans: the exact changes a run will make, one line each, from the state read now."""

from __future__ import annotations

from collections.abc import Sequence

from lifeboat.topology import RegionRole, Scaling, Topology
from tasks.cloud_run import ServiceState
from tasks.dns import RecordState


def failover_plan(
    topo: Topology,
    record: RecordState | None,
    services: list[ServiceState],
    replica_type: str,
    refresh: Sequence[str] = (),
) -> list[str]:
    """The exact changes a failover makes, one line each, from the state read now.

    ``refresh``: per service, how its running instances will see the new secret version.
    """
    secondary = topo.regions.secondary
    app_secret = topo.cloud_sql.app_secret
    replica = topo.cloud_sql.replica
    lines = [
        # The promotion starts first, being the longest step, and runs beside the next
        # lines. The replica keeps its IP when promoted, so the URL is known now, and the
        # secondary's instances that start from zero must find the new version.
        f"promote {replica.project}:{replica.instance} (read replica → primary; started"
        " first, it runs while the secret, the refresh and the scale-up go on)"
        if replica_type == "READ_REPLICA_INSTANCE"
        else f"keep {replica.project}:{replica.instance} (already a primary)",
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
    return lines


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
