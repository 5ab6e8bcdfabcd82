"""What re-applying an archived configuration item would change: pure, no network.

The config backup keeps each item as the API returned it (tasks/config_read.py): a Cloud
Run service as ``run_v2.Service.to_json`` gives it (camelCase), a record set as Cloud DNS
v1 gives it, a secret as its metadata and its latest value. ``lifeboat restore-config``
compares such a document with the live one and sends back only what differs; the
functions here decide what that is, and say it in plan lines a person reads.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

ItemKind = Literal["run-service", "dns-record-set", "secret", "url-map", "backend-service"]

# What restore-config re-applies. The load balancer's url-map and backend services are
# kept whole, to be put back by hand (``gcloud compute ... import``, see BY_HAND).
RESTORABLE: tuple[ItemKind, ...] = ("run-service", "dns-record-set", "secret")

# How a person puts back what restore-config does not: gcloud's import takes the kept JSON
# (YAML is a superset of it) as the resource's new state, fingerprint and all; backend
# services first, as the url-map names them and Compute refuses a link to a missing one.
BY_HAND: dict[str, str] = {
    "backend-service": "gcloud compute backend-services import {name} --global --source={file}",
    "url-map": "gcloud compute url-maps import {name} --global --source={file}",
}


def by_hand(kind: str, name: str, path: str, archive_uri: str) -> str:
    """What to tell a person asking restore-config for an item it does not re-apply."""
    short = name.rsplit("/", 1)[-1]
    command = BY_HAND.get(kind)
    if command is None:
        return f"restore-config re-applies {', '.join(RESTORABLE)}"
    steps = command.format(name=short, file=path.rsplit("/", 1)[-1])
    if kind == "url-map":
        steps = (
            f"{BY_HAND['backend-service'].format(name='NAME', file='NAME.json')} for each "
            f"compute/backendServices/NAME.json of the same backup first, then {steps}"
        )
    return (
        f"restore-config re-applies {', '.join(RESTORABLE)}, not a {kind}: the backup holds "
        f"it whole as {path} in {archive_uri} (encrypted with the backup key); put it back "
        f"by hand with {steps}"
    )


# A global backend service's link, as a url-map names it (Compute v1 ``UrlMap``).
BACKEND_SERVICE_LINK = re.compile(r"(?:^|/)projects/([^/]+)/global/backendServices/([^/]+)$")
# The url-map fields that name a backend service (a backend bucket is named by the same
# fields, with ``/backendBuckets/`` in its link: it is not a backend service).
SERVICE_FIELDS = ("defaultService", "service", "backendService")

# The Service fields a caller sets (run v2 ``Service``: the rest are output only, such as
# uid, generation, conditions, urls, etag). Compared and sent back one by one, so that an
# unchanged field is not in the update mask.
RUN_SETTABLE = (
    "description",
    "labels",
    "annotations",
    "client",
    "clientVersion",
    "ingress",
    "launchStage",
    "binaryAuthorization",
    "template",
    "traffic",
    "scaling",
    "invokerIamDisabled",
    "defaultUriDisabled",
    "customAudiences",
)

# What a failover or failback sets on a service: restored from an archive taken before a
# switch, they would undo it (scaling and ingress fence or open a region; traffic).
SWITCH_FIELDS = ("scaling", "ingress", "traffic")

# All traffic to the newest revision, as ``run_v2.Service.to_json`` writes it (enums as
# numbers, every field present), so that it compares equal with a service read back.
LATEST_TRAFFIC: dict[str, Any] = {"type": 1, "revision": "", "percent": 100, "tag": ""}

# A secret's fields a restore sends when it creates one (Secret Manager ``Secret``); the
# rest are output only or set by the API (name, createTime, etag).
SECRET_SETTABLE = ("replication", "labels", "annotations", "versionDestroyTtl")

# A record set's content (Cloud DNS v1 ``ResourceRecordSet``): name and type identify it.
RECORD_SET_CONTENT = ("ttl", "rrdatas", "routingPolicy", "signatureRrdatas")

# Names a restore may write to (Cloud Run service ids; Secret Manager secret ids).
RUN_SERVICE_ID = r"^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$"
SECRET_ID = r"^[A-Za-z0-9_-]{1,255}$"


def snake(field: str) -> str:
    """An update-mask path from a JSON field name (``launchStage`` → ``launch_stage``)."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", field).lower()


# INGRESS_TRAFFIC_INTERNAL_ONLY, as ``run_v2.Service.to_json`` writes enums (numbers).
INTERNAL_ONLY = 2


def as_copy(document: dict[str, Any]) -> dict[str, Any]:
    """An archived service as a copy under another name is made: internal-only. The copy
    runs production's image under production's service account; public ingress would
    serve it to anyone with its URL, which a restore for inspection never asked for."""
    return {**document, "ingress": INTERNAL_ONLY}


def runnable_spec(document: dict[str, Any]) -> dict[str, Any]:
    """The settable part of an archived or live service, comparable and sendable.

    ``template.revision`` is left out: a revision name is unique per service, and the
    archived one usually still exists, so sending it back would be refused (409). Cloud
    Run names the new revision itself.
    """
    spec = {k: document[k] for k in RUN_SETTABLE if document.get(k) not in (None, "", [], {})}
    template = dict(spec.get("template", {}))
    template.pop("revision", None)
    if template:
        spec["template"] = template
    return spec


def redacted(document: dict[str, Any]) -> dict[str, Any]:
    """A service as read, its containers' plain environment values withheld: the record
    keeps what a restore replaced, and an env value may be a credential set in the clear."""
    copy = json.loads(json.dumps(document))
    for container in copy.get("template", {}).get("containers", []):
        for env in container.get("env", []):
            if env.get("value"):
                env["value"] = f"(withheld, {len(env['value'])} chars)"
    result: dict[str, Any] = copy
    return result


def traffic_revisions(spec: dict[str, Any]) -> list[str]:
    """The revisions a service's traffic names explicitly (not "latest")."""
    return [t["revision"] for t in spec.get("traffic", []) if t.get("revision")]


def run_service_changes(archived: dict[str, Any], live: dict[str, Any] | None) -> list[str]:
    """The settable top-level fields (JSON names) in which the live service differs from
    the archived one; every settable field of the archive when there is no live service."""
    want = runnable_spec(archived)
    if live is None:
        return list(want)
    have = runnable_spec(live)
    return [k for k in RUN_SETTABLE if want.get(k) != have.get(k)]


def record_set_changes(archived: dict[str, Any], live: dict[str, Any] | None) -> list[str]:
    """The content fields in which the live record set differs from the archived one."""
    if live is None:
        return [k for k in RECORD_SET_CONTENT if archived.get(k) not in (None, [])]
    return [k for k in RECORD_SET_CONTENT if archived.get(k) != live.get(k)]


def record_set_as(archived: dict[str, Any], name: str) -> dict[str, Any]:
    """The archived record set's content under another name (a scratch copy)."""
    document = {k: archived[k] for k in RECORD_SET_CONTENT if archived.get(k) not in (None, [])}
    return {"kind": "dns#resourceRecordSet", "name": name, "type": archived["type"], **document}


def describe_value(document: dict[str, Any] | None, field: str) -> str:
    """One field for a plan line, short: a template or a policy is named, not printed."""
    if document is None or field not in document:
        return "(none)"
    value = document[field]
    if isinstance(value, dict | list) and len(str(value)) > 80:
        return f"({type(value).__name__}, {len(str(value))} chars)"
    return str(value)


def in_zone(name: str, zone_dns_name: str) -> bool:
    """Whether a fully qualified record name lies in the zone (or is its apex)."""
    name, zone = name.lower(), zone_dns_name.lower()
    return name.endswith(".") and (name == zone or name.endswith("." + zone))


def backend_service_links(url_map: dict[str, Any]) -> list[str]:
    """Every backend service link a url-map document names, once each, in the order met:
    its default service, path matchers, path and route rules and weighted backends."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if (
                    key in SERVICE_FIELDS
                    and isinstance(value, str)
                    and "/backendServices/" in value
                ):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(url_map)
    return list(dict.fromkeys(found))


def backend_service_ref(link: str) -> tuple[str, str] | None:
    """(project, name) of a global backend service link; None for any other link."""
    match = BACKEND_SERVICE_LINK.search(link)
    return (match.group(1), match.group(2)) if match else None
