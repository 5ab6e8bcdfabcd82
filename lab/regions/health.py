"""What makes a region's app healthy: no outage, instances running, a writable database."""

from __future__ import annotations

from dataclasses import dataclass

from lab.core.context import LabContext


@dataclass(frozen=True)
class RegionSpec:
    name: str
    project: str
    services: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str


def service_verdict(ctx: LabContext, region: RegionSpec, service: str) -> Verdict:
    if ctx.is_down(region.name):
        return Verdict(False, f"region {region.name} is in an outage")
    count = ctx.backends["run"].instance_count(region.project, region.name, service)
    if count <= 0:
        return Verdict(False, f"{service} has no instances in {region.name}")
    return Verdict(True, f"{service}: {count} instance(s)")


def database_verdict(ctx: LabContext, region: RegionSpec) -> Verdict:
    """Healthy if some primary (non-replica) instance in the region takes a write."""
    sql = ctx.backends["sql"]
    for project, name in sql.primaries_in_region(region.name):
        if sql.accepts_writes(project, name):
            return Verdict(True, f"database {name} accepts writes")
    return Verdict(False, f"no database in {region.name} accepts writes")


def region_verdict(ctx: LabContext, region: RegionSpec) -> Verdict:
    for service in region.services:
        verdict = service_verdict(ctx, region, service)
        if not verdict.healthy:
            return verdict
    return database_verdict(ctx, region)
