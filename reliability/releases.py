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


def blue_green_release(
    client: run_v2.ServicesClient, name: str, tag: str, timeout_s: float = 120
) -> tuple[str, str]:
    """Seed 004's blue/green release of service ``name``; returns (blue, green) revisions.

    The revision serving now becomes ``blue``; the new image tag deploys as a ``green``
    revision at 0% (named by the template, so the same update can tag it); then green
    takes 100% and both tags stay, as the seed's deploy leaves them.
    """
    pinned = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
    current = client.get_service(name=name)
    serving = [s.revision.rsplit("/", 1)[-1] for s in current.traffic_statuses if s.percent]
    if len(serving) != 1:
        raise RuntimeError(f"{name} serves {serving}, not one revision")
    blue = serving[0]
    green = f"{name.rsplit('/', 1)[-1]}-green-{tag}"
    image = current.template.containers[0].image.rsplit(":", 1)[0]
    current.template.containers[0].image = f"{image}:{tag}"
    current.template.revision = green
    current.traffic = [
        run_v2.TrafficTarget(type_=pinned, revision=blue, percent=100, tag="blue"),
        run_v2.TrafficTarget(type_=pinned, revision=green, percent=0, tag="green"),
    ]
    client.update_service(service=current).result(timeout=timeout_s)  # type: ignore[no-untyped-call]
    current = client.get_service(name=name)
    current.traffic = [
        run_v2.TrafficTarget(type_=pinned, revision=green, percent=100, tag="green"),
        run_v2.TrafficTarget(type_=pinned, revision=blue, percent=0, tag="blue"),
    ]
    client.update_service(service=current).result(timeout=timeout_s)  # type: ignore[no-untyped-call]
    return blue, green
