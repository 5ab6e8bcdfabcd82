"""A release as a deploy makes one: a new image for a Cloud Run service, with all traffic.

Imports nothing that imports Prefect: the suite's rollback helpers use it, and Prefect must
not be imported before the session lab sets its settings (tests/labharness.py).
"""

from __future__ import annotations

from google.cloud import run_v2


def release(client: run_v2.ServicesClient, name: str, tag: str, timeout_s: float = 120) -> None:
    """Service ``name`` gets a new image tag with all traffic, as a release does."""
    current = client.get_service(name=name)
    image = current.template.containers[0].image.rsplit(":", 1)[0]
    current.template.containers[0].image = f"{image}:{tag}"
    current.traffic = [
        run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
            percent=100,
        )
    ]
    client.update_service(service=current).result(timeout=timeout_s)  # type: ignore[no-untyped-call]
