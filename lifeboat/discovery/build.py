"""The topology a snapshot makes: the same schema ``lifeboat validate`` reads.

What the cloud does not hold (tiers, objectives, health-check paths, MongoDB) gets
Lifeboat's defaults, each said as a guess. Pure: unit-tested without a lab.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lifeboat.discovery import DiscoveryError, guesses
from lifeboat.discovery.guesses import Guess
from lifeboat.discovery.snapshot import RunService, Snapshot, SqlInstance

# Cloud SQL for PostgreSQL's own databases, never the application's.
SYSTEM_DATABASES = frozenset({"postgres", "cloudsqladmin", "template0", "template1"})
# Seed 004's objectives, the lab's too: only a default until the owners set theirs.
DEFAULT_OBJECTIVES = {
    "critical": {"rto_minutes": 15, "rpo_minutes": 5},
    "important": {"rto_minutes": 30, "rpo_minutes": 15},
    "standard": {"rto_minutes": 120, "rpo_minutes": 60},
}


@dataclass
class Discovered:
    """A topology as a dict, in the file's order, and what was guessed to make it."""

    data: dict[str, Any]
    guesses: list[Guess] = field(default_factory=list)


def build(
    snapshot: Snapshot,
    environment: str,
    url_map: str | None = None,
    endpoints: dict[str, Any] | None = None,
) -> Discovered:
    """The topology of ``snapshot``; raises DiscoveryError naming what it lacks."""
    primary_sql, replica_sql, region_guess = guesses.sql_pair(
        snapshot.sql_instances, snapshot.primary_project
    )
    out = Discovered(data={"environment": environment}, guesses=[region_guess])
    primary_region, secondary_region = primary_sql.region, replica_sql.region
    out.data["regions"] = {
        "primary": {"name": primary_region, "project": snapshot.primary_project},
        "secondary": {"name": secondary_region, "project": snapshot.secondary_project},
        "backup": {"name": secondary_region, "project": snapshot.secondary_project},
    }
    out.guesses.append(Guess("regions", "backup: the secondary region (nothing names one)"))
    active = _services(snapshot, primary_region, secondary_region, out)

    cdn_map, map_guess = guesses.url_map(snapshot.url_maps, url_map, snapshot.zone)
    out.guesses += [map_guess] if map_guess else []
    record_names = {r.name.rstrip(".") for r in snapshot.zone.record_sets}
    host = next((h for h in cdn_map.hosts if h in record_names), None)
    host = host or (cdn_map.hosts[0] if cdn_map.hosts else snapshot.zone.dns_name.rstrip("."))
    records, record_guesses = guesses.region_records(
        snapshot.zone, primary_region, secondary_region, [host]
    )
    out.guesses += record_guesses
    if not records:
        raise DiscoveryError(
            f"DNS zone {snapshot.zone.name} ({snapshot.zone.project}) has no A/AAAA/CNAME "
            f"record with addresses for both {primary_region} and {secondary_region}"
        )
    out.data["dns"] = {
        "project": snapshot.zone.project,
        "zone": snapshot.zone.name,
        "dns_name": snapshot.zone.dns_name,
        "records": records,
    }
    out.data["cloud_sql"] = _cloud_sql(primary_sql, replica_sql, active, snapshot, out)
    out.data["cdn"] = {"project": cdn_map.project, "url_map": cdn_map.name, "host": host}
    out.data["health"] = {"host": host, "checks": [{"path": "/health"}]}
    out.guesses.append(Guess("health", "checks: /health only, over https; add your own paths"))
    stem = snapshot.zone.dns_name.split(".")[0]
    out.data["mongodb"] = {"databases": [stem]}
    out.guesses.append(
        Guess("mongodb", f"databases: [{stem}] from the zone's name; MongoDB is not read")
    )
    backup, records_bucket, bucket_guess = guesses.buckets(snapshot.buckets)
    out.data["backups"] = {"bucket": backup.name, "records_bucket": records_bucket.name}
    out.guesses.append(bucket_guess)
    out.data["objectives"] = DEFAULT_OBJECTIVES
    out.guesses.append(Guess("objectives", "seed 004's RTO/RPO per tier: set your own"))
    # The cloud cannot say where the Prefect worker runs; a failover's worker belongs in
    # the region it activates, and readiness refuses the primary region.
    out.data["workers"] = {"location": secondary_region}
    out.guesses.append(
        Guess(
            "workers",
            f"location: {secondary_region}, where a failover's worker should run (not read "
            "from the cloud): set where your Prefect work pool really runs",
        )
    )
    if endpoints is not None:
        out.data["endpoints"] = endpoints
    return out


def _services(
    snapshot: Snapshot, primary_region: str, secondary_region: str, out: Discovered
) -> list[RunService]:
    """The services that run in both regions, with each region's scaling; returns their
    primary-region deployments."""
    primary_at = f"{snapshot.primary_project}/{primary_region}"
    secondary_at = f"{snapshot.secondary_project}/{secondary_region}"
    active = {s.name: s for s in snapshot.services if f"{s.project}/{s.region}" == primary_at}
    standby = {s.name: s for s in snapshot.services if f"{s.project}/{s.region}" == secondary_at}
    both = sorted(active.keys() & standby.keys())
    if not both:
        raise DiscoveryError(
            f"no Cloud Run service runs in both {primary_at} ({', '.join(active) or 'none'}) "
            f"and {secondary_at} ({', '.join(standby) or 'none'})"
        )
    lone = sorted(active.keys() ^ standby.keys())
    if lone:
        out.guesses.append(Guess("services", f"left out, in one region only: {', '.join(lone)}"))
    services, tierless = [], []
    for name in both:
        tier, guessed = guesses.tier_of(active[name])
        if guessed:
            tierless.append(name)
        services.append(
            {
                "name": name,
                "tier": tier,
                "image": active[name].image,
                "active_scaling": _scaling(active[name]),
                "standby_scaling": _scaling(standby[name]),
                "checks": ["/health"],
            }
        )
    out.data["services"] = services
    out.guesses.append(
        Guess(
            "services",
            f"scaling: {primary_at} is active, {secondary_at} standby; checks: /health only",
        )
    )
    warm = (sum(active[n].min_instances for n in both), sum(standby[n].min_instances for n in both))
    if warm[1] > warm[0]:
        out.guesses.append(
            Guess(
                "services",
                f"{secondary_at} keeps more instances warm ({warm[1]}) than {primary_at} "
                f"({warm[0]}): is a failover in effect? The regions follow Cloud SQL",
            )
        )
    if tierless:
        out.guesses.append(
            Guess("services", f"tier {guesses.DEFAULT_TIER} (no tier label): {', '.join(tierless)}")
        )
    return [active[n] for n in both]


def _scaling(service: RunService) -> dict[str, int]:
    return {"min": service.min_instances, "max": service.max_instances}


def _cloud_sql(
    primary: SqlInstance,
    replica: SqlInstance,
    services: list[RunService],
    snapshot: Snapshot,
    out: Discovered,
) -> dict[str, Any]:
    databases = [d for d in primary.databases if d not in SYSTEM_DATABASES]
    if not databases:
        raise DiscoveryError(
            f"Cloud SQL primary {primary.project}/{primary.name} holds no database "
            f"besides {', '.join(sorted(SYSTEM_DATABASES))}"
        )
    secret_project, secret_name, secret_guess = guesses.app_secret(
        services, snapshot.secondary_project
    )
    out.guesses.append(secret_guess)
    return {
        "primary": {"project": primary.project, "instance": primary.name, "region": primary.region},
        "replica": {"project": replica.project, "instance": replica.name, "region": replica.region},
        "databases": databases,
        "app_secret": {"name": secret_name, "project": secret_project},
    }
