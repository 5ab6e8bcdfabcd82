"""Cloud Run ingress as the public path meets it: which requests a service refuses.

The lab's front door is the external Application Load Balancer (with Cloud CDN) in front
of the regions. A service admits it with ingress ``INGRESS_TRAFFIC_ALL`` or
``INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER``; ``INGRESS_TRAFFIC_INTERNAL_ONLY`` and
``INGRESS_TRAFFIC_NONE`` refuse it (run/docs/securing/ingress). The region apps' own
addresses stand for callers inside the VPC, so ingress never refuses them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lab.core.context import LabContext
from lab.regions.health import RegionSpec
from lab.regions.routing import services_for_path

ADMITS_LOAD_BALANCER = frozenset({"INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"})


def load_balancer_refusal(
    ctx: LabContext, regions: Iterable[RegionSpec]
) -> Callable[[str, str], str | None]:
    """``refusal(region, path)``: the service whose ingress refuses the front door, or None."""
    by_name = {spec.name: spec for spec in regions}

    def refusal(region: str, path: str) -> str | None:
        spec = by_name.get(region)
        if spec is None:
            return None
        run = ctx.backends["run"]
        for service in services_for_path(spec, path):
            ingress = run.ingress(spec.project, spec.name, service)
            if ingress is not None and ingress not in ADMITS_LOAD_BALANCER:
                return service
        return None

    return refusal
