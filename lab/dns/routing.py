"""Routing policies of Cloud DNS record sets (``RRSetRoutingPolicy`` of dns v1).

A record set carries either ``rrdatas`` or a ``routingPolicy``, never both. A policy is
exactly one of:

- ``geo``: ``items`` of ``{location, rrdatas | healthCheckedTargets}``, one per location,
  and ``enableFencing``;
- ``wrr``: ``items`` of ``{weight, rrdatas | healthCheckedTargets}``;
- ``primaryBackup``: ``primaryTargets`` (health-checked targets), ``backupGeoTargets``
  (a geo policy) and ``trickleTraffic`` (0 to 1).

``normalize`` checks a policy the way Cloud DNS refuses a bad one (400 invalid) and
returns it as Cloud DNS serves it: with the ``kind`` of every object filled in.
"""

from __future__ import annotations

from typing import Any

from lab.dns.exceptions import InvalidChange

POLICY_KINDS = ("geo", "wrr", "primaryBackup")
_KIND = "dns#rRSetRoutingPolicy"


def normalize(raw: object, entity: str) -> dict[str, Any]:
    """The policy as Cloud DNS stores and returns it; InvalidChange (400) when malformed."""
    policy = _object(raw, entity)
    present = [k for k in POLICY_KINDS if policy.get(k) is not None]
    if len(present) != 1:
        raise InvalidChange(
            f"Invalid value for '{entity}': set exactly one of geo, wrr or primaryBackup"
        )
    kind = present[0]
    out: dict[str, Any] = {"kind": _KIND}
    if isinstance(policy.get("healthCheck"), str):
        out["healthCheck"] = policy["healthCheck"]
    if kind == "geo":
        out["geo"] = _geo(policy["geo"], f"{entity}.geo")
    elif kind == "wrr":
        out["wrr"] = _wrr(policy["wrr"], f"{entity}.wrr")
    else:
        out["primaryBackup"] = _primary_backup(policy["primaryBackup"], f"{entity}.primaryBackup")
    return out


def _object(raw: object, entity: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidChange(f"Invalid value for '{entity}': expected an object")
    return raw


def _items(raw: object, entity: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidChange(f"Invalid value for '{entity}': at least one item is required")
    return [_object(item, f"{entity}[{i}]") for i, item in enumerate(raw)]


def _strings(raw: object, entity: str) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(r, str) and r for r in raw):
        raise InvalidChange(f"Invalid value for '{entity}': {raw!r}")
    return list(raw)


def _answer(item: dict[str, Any], entity: str) -> dict[str, Any]:
    """An item answers with rrdatas or with health-checked targets: one of them, not both."""
    has_rrdatas = item.get("rrdatas") not in (None, [])
    has_targets = item.get("healthCheckedTargets") is not None
    if has_rrdatas == has_targets:
        raise InvalidChange(
            f"Invalid value for '{entity}': set either rrdatas or healthCheckedTargets"
        )
    out: dict[str, Any] = {}
    if has_rrdatas:
        out["rrdatas"] = _strings(item["rrdatas"], f"{entity}.rrdatas")
    else:
        out["healthCheckedTargets"] = _targets(
            item["healthCheckedTargets"], f"{entity}.healthCheckedTargets"
        )
    if item.get("signatureRrdatas"):
        out["signatureRrdatas"] = _strings(item["signatureRrdatas"], f"{entity}.signatureRrdatas")
    return out


def _targets(raw: object, entity: str) -> dict[str, Any]:
    targets = _object(raw, entity)
    endpoints, balancers = targets.get("externalEndpoints"), targets.get("internalLoadBalancers")
    if bool(endpoints) == bool(balancers):
        raise InvalidChange(
            f"Invalid value for '{entity}': set either externalEndpoints or internalLoadBalancers"
        )
    if endpoints:
        return {"externalEndpoints": _strings(endpoints, f"{entity}.externalEndpoints")}
    return {
        "internalLoadBalancers": [
            {"kind": "dns#rRSetRoutingPolicyLoadBalancerTarget", **b}
            for b in _items(balancers, f"{entity}.internalLoadBalancers")
        ]
    }


def _geo(raw: object, entity: str) -> dict[str, Any]:
    geo = _object(raw, entity)
    items = []
    locations: set[str] = set()
    for i, item in enumerate(_items(geo.get("items"), f"{entity}.items")):
        location = item.get("location")
        if not isinstance(location, str) or not location:
            raise InvalidChange(f"Invalid value for '{entity}.items[{i}].location': {location!r}")
        if location in locations:
            raise InvalidChange(f"Invalid value for '{entity}.items': {location} appears twice")
        locations.add(location)
        items.append(
            {
                "kind": "dns#rRSetRoutingPolicyGeoPolicyGeoPolicyItem",
                "location": location,
                **_answer(item, f"{entity}.items[{i}]"),
            }
        )
    out: dict[str, Any] = {"kind": "dns#rRSetRoutingPolicyGeoPolicy", "items": items}
    if "enableFencing" in geo:
        if not isinstance(geo["enableFencing"], bool):
            raise InvalidChange(f"Invalid value for '{entity}.enableFencing'")
        out["enableFencing"] = geo["enableFencing"]
    return out


def _wrr(raw: object, entity: str) -> dict[str, Any]:
    wrr = _object(raw, entity)
    items = []
    for i, item in enumerate(_items(wrr.get("items"), f"{entity}.items")):
        weight = item.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise InvalidChange(f"Invalid value for '{entity}.items[{i}].weight': {weight!r}")
        items.append(
            {
                "kind": "dns#rRSetRoutingPolicyWrrPolicyWrrPolicyItem",
                "weight": weight,
                **_answer(item, f"{entity}.items[{i}]"),
            }
        )
    return {"kind": "dns#rRSetRoutingPolicyWrrPolicy", "items": items}


def _primary_backup(raw: object, entity: str) -> dict[str, Any]:
    policy = _object(raw, entity)
    if policy.get("primaryTargets") is None or policy.get("backupGeoTargets") is None:
        raise InvalidChange(
            f"Invalid value for '{entity}': primaryTargets and backupGeoTargets are required"
        )
    out: dict[str, Any] = {
        "kind": "dns#rRSetRoutingPolicyPrimaryBackupPolicy",
        "primaryTargets": _targets(policy["primaryTargets"], f"{entity}.primaryTargets"),
        "backupGeoTargets": _geo(policy["backupGeoTargets"], f"{entity}.backupGeoTargets"),
    }
    if "trickleTraffic" in policy:
        trickle = policy["trickleTraffic"]
        if (
            isinstance(trickle, bool)
            or not isinstance(trickle, int | float)
            or not 0 <= trickle <= 1
        ):
            raise InvalidChange(f"Invalid value for '{entity}.trickleTraffic': {trickle!r}")
        out["trickleTraffic"] = trickle
    return out
