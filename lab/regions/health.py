"""What makes a region's app healthy: no outage, its services deployed, a writable database.

A service scaled to zero still serves, as on Cloud Run: the request waits for one cold
start (``wait_for_instances``) and is answered. Scaling is never a reason to refuse.
"""

from __future__ import annotations

import time
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
    run = ctx.backends["run"]
    if run.ingress(region.project, region.name, service) is None:
        return Verdict(False, f"{service} is not deployed in {region.name}")
    count = run.instance_count(region.project, region.name, service)
    if count <= 0:
        return Verdict(True, f"{service}: scales from zero (min 0)")
    return Verdict(True, f"{service}: {count} warm instance(s)")


def wait_for_instances(ctx: LabContext, region: RegionSpec, services: tuple[str, ...]) -> float:
    """Hold the request while cold services start an instance; returns the seconds waited.

    Services start in parallel, so the wait is the longest single cold start.
    """
    if ctx.is_down(region.name):
        return 0.0
    run = ctx.backends["run"]
    delay = max(
        (run.cold_start_delay(region.project, region.name, s) for s in services), default=0.0
    )
    if delay > 0:
        time.sleep(delay)
    return delay


def database_verdict(ctx: LabContext, region: RegionSpec, service: str | None = None) -> Verdict:
    """Healthy if the database URL the service's instances hold takes a write.

    The URL is the one they read from Secret Manager (lab/regions/instances.py), so an
    app whose secret names the wrong instance is unhealthy. No service: every service.
    """
    from lab.regions.database import where
    from lab.regions.instances import AppUnavailable
    from lab.sql.postgres import accepts_writes

    apps = ctx.backends["app_instances"]
    checked: dict[str, bool] = {}
    for name in [service] if service else region.services:
        try:
            url = apps.database_url(region.project, region.name, name)
        except AppUnavailable as exc:
            return Verdict(False, str(exc))
        if url not in checked:
            checked[url] = accepts_writes(url)
        if not checked[url]:
            return Verdict(False, f"{name}: database {where(url)} does not accept writes")
    return Verdict(True, ", ".join(f"database {where(u)} accepts writes" for u in checked))


def region_verdict(ctx: LabContext, region: RegionSpec) -> Verdict:
    for service in region.services:
        verdict = service_verdict(ctx, region, service)
        if not verdict.healthy:
            return verdict
    return database_verdict(ctx, region)
