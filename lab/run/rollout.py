"""How a Service moves: a proposed spec becomes desired at once and live when reconciled.

These functions change one Service in place and take no lock; the backend calls them
while holding its own.
"""

from __future__ import annotations

import copy
import random
import string
from typing import Any

from lab.run.exceptions import AlreadyExists, InvalidRequest
from lab.run.resources import Revision, Service, new_etag, now
from lab.run.spec import (
    LATEST,
    REVISION,
    check_template,
    check_traffic,
    resolve_traffic,
    revision_config,
)


def propose(svc: Service, spec: dict[str, Any], revision_name: str | None = None) -> None:
    """Validate ``spec`` and make it the desired state; all checks run before any change.

    A new revision is created when the revision config changed, when the template names
    a revision that does not exist yet, or when ``revision_name`` forces one. It stays
    pending until the rollout is reconciled.
    """
    template = spec.get("template") or {}
    check_template(template)
    # Google fills these in when a client leaves them unset; replies always carry them.
    spec = {"ingress": "INGRESS_TRAFFIC_ALL", "launchStage": "GA", **spec}
    generation = svc.generation + 1
    custom = template.get("revision", "")
    current = svc.spec.get("template")
    if revision_name is None and (
        current is None
        or revision_config(template) != revision_config(current)
        or (custom and custom not in svc.revisions)
    ):
        if custom and not custom.startswith(f"{svc.name}-"):
            raise InvalidRequest(f"revision name {custom!r} must start with '{svc.name}-'")
        if custom in svc.revisions:
            raise AlreadyExists("Revision", f"{svc.full_name}/revisions/{custom}")
        revision_name = custom or new_revision_name(svc, generation)
    known = set(svc.revisions) | ({revision_name} if revision_name else set())
    traffic = check_traffic(spec.get("traffic", []), known)

    svc.spec = copy.deepcopy({**spec, "traffic": traffic})
    if revision_name is not None:
        svc.revisions[revision_name] = Revision(
            svc.project, svc.location, svc.name, revision_name, generation,
            copy.deepcopy(template), pending=True,
        )  # fmt: skip
        svc.latest_created = revision_name
    svc.generation = generation
    svc.etag = new_etag()
    svc.update_time = now()


def reconcile(svc: Service) -> str | None:
    """Make the desired spec live; the failure message if an unhealthy revision would serve."""
    for rev in svc.revisions.values():
        if rev.pending:
            rev.pending = False
            rev.touch()
    targets = resolve_traffic(svc.spec["traffic"], svc.latest_created)
    serving = {t["revision"] for t in targets if t.get("percent")}
    unhealthy = sorted(r for r in serving if not svc.revisions[r].healthy)
    svc.rollout = None
    svc.observed_generation = svc.generation
    svc.changed = now()
    svc.etag = new_etag()
    if unhealthy:
        svc.failure = f"revision {', '.join(unhealthy)} is not ready and cannot serve traffic"
        return svc.failure
    svc.failure = None
    svc.live = copy.deepcopy(svc.spec)
    svc.latest_ready = svc.latest_created
    return None


def new_revision_name(svc: Service, generation: int) -> str:
    """``{service}-{generation:05d}-{xyz}``, as Cloud Run names revisions."""
    alphabet = string.ascii_lowercase + string.digits
    while True:
        suffix = "".join(random.choices(alphabet, k=3))
        name = f"{svc.name}-{generation:05d}-{suffix}"
        if name not in svc.revisions:
            return name


def blue_green_traffic(
    svc: Service, revision: str, tag: str | None, move_traffic: bool
) -> list[dict[str, Any]]:
    """Traffic for deploying ``revision``: moved to it, or kept where it is and tagged."""
    if move_traffic:
        traffic: list[dict[str, Any]] = [{"type": LATEST, "percent": 100}]
    else:
        # LATEST would follow the new revision; pin it to the revision it serves now.
        serving = svc.latest_ready or svc.latest_created
        pinned = resolve_traffic(svc.spec.get("traffic", []), serving)
        traffic = [{**t, "type": REVISION} for t in pinned]
    if tag:
        # The tag moves to the new revision; a target that only carried the tag goes.
        traffic = [
            {k: v for k, v in t.items() if not (k == "tag" and v == tag)}
            for t in traffic
            if t.get("percent") or t.get("tag") != tag
        ]
        traffic.append({"type": REVISION, "revision": revision, "tag": tag})
    return traffic


def referenced(svc: Service) -> set[str]:
    """Revisions a delete must keep: named or reached by desired or live traffic, the latest."""
    names = {svc.latest_created, svc.latest_ready}
    for spec, latest in ((svc.spec, svc.latest_created), (svc.live, svc.latest_ready)):
        if spec is not None:
            names |= {t["revision"] for t in resolve_traffic(spec.get("traffic", []), latest)}
    return names - {""}
