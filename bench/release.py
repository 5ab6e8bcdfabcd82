"""A release as a deploy pipeline makes one: a new image, all traffic to the latest revision.

The rollback needs something to roll back from; the suite, the bench and the lock storm
make it the same way, through Google's own Run client.
"""

from __future__ import annotations

from typing import Any

from google.cloud import run_v2


def deploy_release(run_services: Any, name: str, image_tag: str, timeout: float = 120) -> None:
    """Deploy ``name``'s image at ``image_tag`` with 100% to the latest revision; waits."""
    current = run_services.get_service(name=name)
    image = current.template.containers[0].image.rsplit(":", 1)[0]
    current.template.containers[0].image = f"{image}:{image_tag}"
    current.traffic = [
        run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
            percent=100,
        )
    ]
    run_services.update_service(service=current).result(timeout=timeout)
