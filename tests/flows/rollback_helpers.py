"""Blue/green deploys and traffic reads for the rollback and watch tests, via the real client."""

from __future__ import annotations

from typing import Any

from reliability.releases import blue_green_release, release
from tests.flows.lab_checks import PRIMARY
from tests.labharness import Lab


def service_name(service: str, region: Any = PRIMARY) -> str:
    return f"projects/{region.project}/locations/{region.name}/services/{service}"


def serving(lab: Lab, service: str, region: Any = PRIMARY) -> dict[str, int]:
    got = lab.clients().run_services.get_service(name=service_name(service, region))
    return {t.revision.rsplit("/", 1)[-1]: t.percent for t in got.traffic_statuses if t.percent}


def revision_image(lab: Lab, service: str, revision: str, region: Any = PRIMARY) -> str:
    got = lab.clients().run_revisions.get_revision(
        name=f"{service_name(service, region)}/revisions/{revision}"
    )
    return str(got.containers[0].image)


def deploy_new_revision(
    lab: Lab, service: str, image_tag: str = "v2", region: Any = PRIMARY
) -> tuple[str, str]:
    """Deploy a new image and send it 100% (as a release does); returns (old, new) revisions."""
    (old,) = serving(lab, service, region)
    release(lab.clients().run_services, service_name(service, region), image_tag, timeout_s=60)
    (new,) = serving(lab, service, region)
    assert new != old
    return old, new


def set_revision_health(lab: Lab, revision: str, healthy: bool) -> None:
    lab.post(
        "revision-health",
        {
            "project": PRIMARY.project,
            "location": PRIMARY.name,
            "revision": revision,
            "healthy": healthy,
        },
    )


def run_patches(lab: Lab, since: int, service: str | None = None) -> list[str]:
    return [
        e["path"]
        for e in lab.requests(api="run", method="PATCH", since=since)
        if e["status"] < 400 and (service is None or e["path"].endswith(f"/services/{service}"))
    ]


def deploy_blue_green(
    lab: Lab, service: str, image_tag: str = "v2", region: Any = PRIMARY
) -> tuple[str, str]:
    """Seed 004's blue/green release (reliability/releases.py); returns (blue, green)."""
    blue, green = blue_green_release(
        lab.clients().run_services, service_name(service, region), image_tag, timeout_s=60
    )
    assert serving(lab, service, region) == {green: 100}
    return blue, green


def tags(lab: Lab, service: str, region: Any = PRIMARY) -> dict[str, str]:
    got = lab.clients().run_services.get_service(name=service_name(service, region))
    return {t.tag: t.revision.rsplit("/", 1)[-1] for t in got.traffic_statuses if t.tag}
