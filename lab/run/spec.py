"""Reading a Service off the wire: canonical JSON, output-only fields dropped, traffic checked.

The REST client sends enums as integers and int64 values as strings
(``$alt=json;enum-encoding=int``) and PATCHes the whole Service, output-only fields
included. Parsing the body into the client library's own protobuf message and printing it
back gives the canonical proto3 JSON Google replies with: enum names, camelCase keys,
default values left out, and a 400 for a field of the wrong type.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from google.cloud import run_v2
from google.protobuf import json_format

from lab.run.exceptions import InvalidRequest, InvalidTraffic

LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"

# Service fields the server owns; a client's copy of them is stale by definition.
OUTPUT_ONLY = frozenset(
    {
        "name",
        "uid",
        "generation",
        "createTime",
        "updateTime",
        "deleteTime",
        "expireTime",
        "creator",
        "lastModifier",
        "observedGeneration",
        "terminalCondition",
        "conditions",
        "latestReadyRevision",
        "latestCreatedRevision",
        "trafficStatuses",
        "uri",
        "urls",
        "reconciling",
        "satisfiesPzs",
        "threatDetectionEnabled",
        "etag",
    }
)

# The one template field that does not describe the revision: its name. Every other
# template change, ``scaling`` included, deploys a new revision, as Cloud Run does
# ("any configuration change ... creates a new revision", run/docs/managing/revisions).
# Service-level fields (``scaling``, ``ingress``, ``traffic``, labels, annotations) sit
# outside the template and never create one.
NOT_REVISION_CONFIG = frozenset({"revision"})

SERVICE_ID = re.compile(r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
TAG = re.compile(r"^[a-z]([-a-z0-9]{0,45}[a-z0-9])?$")


def canonical_service(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body as Google's canonical JSON; unknown fields are ignored, bad types are 400."""
    message = run_v2.Service.pb()()
    try:
        json_format.ParseDict(dict(body), message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise InvalidRequest(f"invalid Service: {exc}") from exc
    result: dict[str, Any] = json_format.MessageToDict(message)
    return result


def user_spec(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Service body that a client may set, in canonical form."""
    spec = {k: v for k, v in canonical_service(body).items() if k not in OUTPUT_ONLY}
    for container in spec.get("template", {}).get("containers", []):
        container.pop("buildInfo", None)  # output-only inside the template
    return spec


def check_template(template: Mapping[str, Any]) -> None:
    containers = template.get("containers") or []
    if not containers:
        raise InvalidRequest("template.containers must name at least one container")
    for index, container in enumerate(containers):
        if not container.get("image"):
            raise InvalidRequest(f"template.containers[{index}].image is required")


def revision_config(template: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two templates the same revision: everything but the revision's name."""
    return {k: v for k, v in template.items() if k not in NOT_REVISION_CONFIG}


def apply_update_mask(
    current: Mapping[str, Any], incoming: Mapping[str, Any], paths: list[str]
) -> dict[str, Any]:
    """``current`` with only the masked fields taken from ``incoming``.

    Paths may be snake_case (as the client's FieldMask prints them) or camelCase, and
    dotted into nested messages (``template.scaling.min_instance_count``).
    """
    result = copy.deepcopy(dict(current))
    for path in paths:
        keys = [_camel(part) for part in path.split(".") if part]
        if not keys or keys[0] in OUTPUT_ONLY:
            continue
        source: Any = incoming
        target = result
        for key in keys[:-1]:
            source = source.get(key, {}) if isinstance(source, Mapping) else {}
            target = target.setdefault(key, {})
        leaf = keys[-1]
        if isinstance(source, Mapping) and leaf in source:
            target[leaf] = copy.deepcopy(source[leaf])
        else:
            target.pop(leaf, None)  # a masked field absent from the body is cleared
    return result


def check_traffic(
    traffic: list[Mapping[str, Any]], known_revisions: set[str]
) -> list[dict[str, Any]]:
    """Validated traffic targets with their type made explicit; empty means 100% latest."""
    if not traffic:
        return [{"type": LATEST, "percent": 100}]
    targets: list[dict[str, Any]] = []
    tags: set[str] = set()
    for target in traffic:
        kind = target.get("type")
        revision = target.get("revision", "")
        percent = int(target.get("percent", 0))
        tag = target.get("tag", "")
        if kind in (None, "TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED"):
            if not revision:
                raise InvalidTraffic("a traffic target needs a type or a revision")
            kind = REVISION
        if kind == LATEST and revision:
            raise InvalidTraffic(f"a LATEST traffic target cannot name revision {revision}")
        if kind == REVISION and not revision:
            raise InvalidTraffic("a REVISION traffic target must name a revision")
        if revision and revision not in known_revisions:
            raise InvalidTraffic(f"traffic names revision {revision}, which does not exist")
        if not 0 <= percent <= 100:
            raise InvalidTraffic(f"traffic percent {percent} is outside 0..100")
        if tag:
            if not TAG.match(tag):
                raise InvalidTraffic(f"traffic tag {tag!r} is not a valid tag")
            if tag in tags:
                raise InvalidTraffic(f"traffic tag {tag!r} is used twice")
            tags.add(tag)
        entry: dict[str, Any] = {"type": kind}
        if revision:
            entry["revision"] = revision
        if percent:
            entry["percent"] = percent
        if tag:
            entry["tag"] = tag
        targets.append(entry)
    total = sum(t.get("percent", 0) for t in targets)
    if total != 100:
        raise InvalidTraffic(f"traffic percents must add up to 100, not {total}")
    return targets


def resolve_traffic(traffic: list[Mapping[str, Any]], latest: str) -> list[dict[str, Any]]:
    """Each target with the revision it reaches; LATEST resolves to ``latest``."""
    resolved = []
    for target in traffic:
        entry = dict(target)
        if entry["type"] == LATEST:
            entry["revision"] = latest
        resolved.append(entry)
    return resolved


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
