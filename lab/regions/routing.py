"""Which Cloud Run services serve a path of a region's app.

The region app stands for the services a load balancer's URL map sends each path to:
``/<name>/...`` goes to the one service behind ``name`` (seed 004's verification
endpoints), and every other path (``/health``, ``/version``, ``/widgets/*``, writes) is
the region's app as a whole, which needs all of its services.
"""

from __future__ import annotations

from lab.regions.health import RegionSpec

# Seed 004's verification endpoints and the service behind each.
STATUS_PATHS = {
    "auth": "auth-service",
    "ai": "ai-service",
    "recommendations": "recommendation-service",
    "face": "face-service",
}


def services_for_path(region: RegionSpec, path: str) -> tuple[str, ...]:
    first = path.strip("/").split("/", 1)[0]
    service = STATUS_PATHS.get(first)
    if service is not None and service in region.services:
        return (service,)
    return region.services
