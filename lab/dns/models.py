"""Cloud DNS state: managed zones, their record sets and their change sets.

A change is checked and accepted at once but served later, as in Cloud DNS:

- ``create_change`` checks deletions (412) and additions (409) against the zone's
  *intended* record sets (what is served plus every pending change), so two quick changes
  in a row behave as they would in Cloud DNS, where a change is ordered after the ones
  before it.
- The change stays ``pending`` for ``latency.seconds("dns.change")``. Only when it turns
  ``done`` does it reach the *served* record sets, which ``get_rrset``, ``find_rrset``
  (the front door's resolver), ``rrsets.list`` and ``rrsets.get`` read. Until then,
  clients see the old records, like resolvers asking Cloud DNS's name servers.
- Changes finish in id order: finishing change N finishes any earlier pending change.
- ``rrsets.create``, ``patch`` and ``delete`` are changes too (one set each), checked
  against the intended sets like any change.
- A record set holds ``rrdatas`` or a ``routingPolicy`` (lab/dns/routing.py).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from lab.core.context import LabContext
from lab.dns import routing
from lab.dns.exceptions import AlreadyExists, ConditionNotMet, InvalidChange, UnknownResource

MAX_RECORDS_PER_CHANGE = 1000
DEFAULT_PAGE_SIZE = 100
NAME_SERVERS = [f"ns-cloud-a{i}.googledomains.com." for i in range(1, 5)]

RRKey = tuple[str, str]  # (lower-case fully qualified name, record type)
T = TypeVar("T")


def rfc3339_now() -> str:
    # google-cloud-dns parses timestamps with "%Y-%m-%dT%H:%M:%S.%fZ", so keep the fraction.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def fqdn(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


@dataclass(frozen=True)
class RecordSet:
    """One record set: ``rrdatas`` or a ``routing_policy`` (geo, wrr, primaryBackup)."""

    name: str
    type: str
    ttl: int
    rrdatas: tuple[str, ...] = ()
    routing_policy: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def key(self) -> RRKey:
        return (self.name, self.type)

    def matches(self, other: RecordSet) -> bool:
        """Equal as Cloud DNS compares a deletion: rrdatas are a set, not a list."""
        return (
            self.key == other.key
            and self.ttl == other.ttl
            and (sorted(self.rrdatas) == sorted(other.rrdatas))
            and self.routing_policy == other.routing_policy
        )

    def to_json(self) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "kind": "dns#resourceRecordSet",
            "name": self.name,
            "type": self.type,
            "ttl": self.ttl,
        }
        if self.routing_policy is not None:
            reply["routingPolicy"] = self.routing_policy
        else:
            reply["rrdatas"] = list(self.rrdatas)
        return reply

    @classmethod
    def from_json(cls, body: object, entity: str, dns_name: str) -> RecordSet:
        """Parse one record set of a change or an rrsets call; ``ttl`` may be a string."""
        if not isinstance(body, dict):
            raise InvalidChange(f"Invalid value for '{entity}': expected an object")
        name, rtype, ttl, rrdatas = (body.get(k) for k in ("name", "type", "ttl", "rrdatas"))
        if not isinstance(name, str) or not name.endswith("."):
            raise InvalidChange(f"Invalid value for '{entity}.name': {name!r} (needs a final dot)")
        name = name.lower()
        if name != dns_name and not name.endswith("." + dns_name):
            raise InvalidChange(f"Invalid value for '{entity}.name': {name} is not in {dns_name}")
        if not isinstance(rtype, str) or not rtype.strip():
            raise InvalidChange(f"Invalid value for '{entity}.type': {rtype!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, int | str) or not str(ttl).isdigit():
            raise InvalidChange(f"Invalid value for '{entity}.ttl': {ttl!r}")
        ttl_value = int(ttl)
        policy = body.get("routingPolicy")
        if policy is not None:
            if rrdatas:
                raise InvalidChange(
                    f"Invalid value for '{entity}': set either rrdatas or routingPolicy, not both"
                )
            normalized = routing.normalize(policy, f"{entity}.routingPolicy")
            return cls(name, rtype.strip().upper(), ttl_value, (), normalized)
        if (
            not isinstance(rrdatas, list)
            or not rrdatas
            or not all(isinstance(r, str) and r for r in rrdatas)
        ):
            raise InvalidChange(f"Invalid value for '{entity}.rrdatas': {rrdatas!r}")
        return cls(name, rtype.strip().upper(), ttl_value, tuple(rrdatas))


@dataclass
class Change:
    id: str
    additions: list[RecordSet]
    deletions: list[RecordSet]
    start_time: str = field(default_factory=rfc3339_now)
    status: str = "pending"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "dns#change",
            "id": self.id,
            "startTime": self.start_time,
            "status": self.status,
            "additions": [r.to_json() for r in self.additions],
            "deletions": [r.to_json() for r in self.deletions],
        }

    def apply_to(self, rrsets: dict[RRKey, RecordSet]) -> None:
        for record in self.deletions:
            rrsets.pop(record.key, None)
        for record in self.additions:
            rrsets[record.key] = record


@dataclass
class ManagedZone:
    project: str
    name: str
    dns_name: str
    description: str
    id: str
    creation_time: str = field(default_factory=rfc3339_now)
    served: dict[RRKey, RecordSet] = field(default_factory=dict)
    intended: dict[RRKey, RecordSet] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "dns#managedZone",
            "name": self.name,
            "dnsName": self.dns_name,
            "description": self.description,
            "id": self.id,
            "creationTime": self.creation_time,
            "nameServers": list(NAME_SERVERS),
            "visibility": "public",
        }

    def change(self, change_id: str) -> Change:
        for change in self.changes:
            if change.id == change_id:
                return change
        raise UnknownResource("parameters.changeId", change_id)


def paginate(
    items: Sequence[T], max_results: int | None, page_token: str | None, cap: int
) -> tuple[list[T], str | None]:
    """One page, of at most ``cap`` items, and the token of the next (an opaque offset)."""
    start = 0
    if page_token:
        if not page_token.isdigit():
            raise InvalidChange(f"Invalid value for 'pageToken': {page_token!r}")
        start = int(page_token)
    size = DEFAULT_PAGE_SIZE if max_results is None else max_results
    if size <= 0:
        raise InvalidChange(f"Invalid value for 'maxResults': {max_results}")
    end = start + min(size, cap)
    return list(items[start:end]), (str(end) if end < len(items) else None)


class DnsBackend:
    """Every zone of every project; handlers and the scheduler thread share it."""

    def __init__(self, ctx: LabContext) -> None:
        self._ctx = ctx
        self._page_cap = ctx.settings.page_cap
        self._lock = threading.Lock()
        self._zones: dict[tuple[str, str], ManagedZone] = {}
        self._zone_ids = itertools.count(4_000_000_000_000_000_001)
        # A transition scheduled before reset() must not touch the zones made after it.
        self._generation = 0

    def reset(self) -> None:
        with self._lock:
            self._zones.clear()
            self._generation += 1

    # managedZones -----------------------------------------------------------------------

    def create_zone(
        self, project: str, name: str, dns_name: str, description: str = ""
    ) -> dict[str, Any]:
        """Create a zone with its SOA and NS records, as Cloud DNS does (change "0")."""
        if not name or not dns_name.endswith("."):
            raise InvalidChange(f"Invalid zone {name!r} / dnsName {dns_name!r} (needs a final dot)")
        dns_name = dns_name.lower()
        with self._lock:
            if (project, name) in self._zones:
                raise AlreadyExists("entity.managedZone", name)
            zone = ManagedZone(project, name, dns_name, description, str(next(self._zone_ids)))
            soa = f"{NAME_SERVERS[0]} cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"
            apex = [
                RecordSet(dns_name, "SOA", 21600, (soa,)),
                RecordSet(dns_name, "NS", 21600, tuple(NAME_SERVERS)),
            ]
            created = Change("0", apex, [], status="done")
            created.apply_to(zone.served)
            created.apply_to(zone.intended)
            zone.changes.append(created)
            self._zones[(project, name)] = zone
            return zone.to_json()

    def get_zone(self, project: str, zone: str) -> dict[str, Any]:
        with self._lock:
            return self._zone(project, zone).to_json()

    def list_zones(
        self, project: str, dns_name: str | None, max_results: int | None, page_token: str | None
    ) -> dict[str, Any]:
        with self._lock:
            zones = [
                z
                for (p, _), z in sorted(self._zones.items())
                if p == project and (dns_name is None or z.dns_name == fqdn(dns_name))
            ]
            page, token = paginate(zones, max_results, page_token, self._page_cap)
            return _listing("dns#managedZonesListResponse", "managedZones", page, token)

    # resourceRecordSets -------------------------------------------------------------------

    def list_rrsets(
        self,
        project: str,
        zone: str,
        name: str | None,
        rtype: str | None,
        max_results: int | None,
        page_token: str | None,
    ) -> dict[str, Any]:
        if rtype and not name:
            raise InvalidChange("Invalid value for 'type': it requires 'name'")
        with self._lock:
            rrsets = [
                r
                for _, r in sorted(self._zone(project, zone).served.items())
                if (name is None or r.name == fqdn(name))
                and (rtype is None or r.type == rtype.upper())
            ]
            page, token = paginate(rrsets, max_results, page_token, self._page_cap)
            return _listing("dns#resourceRecordSetsListResponse", "rrsets", page, token)

    def set_rrset(
        self, project: str, zone: str, name: str, rtype: str, ttl: int, rrdatas: list[str]
    ) -> None:
        """Seeding only: replace a record set at once, with no change and no delay."""
        with self._lock:
            found = self._zone(project, zone)
            record = RecordSet(fqdn(name), rtype.upper(), ttl, tuple(rrdatas))
            found.served[record.key] = record
            found.intended[record.key] = record

    def seed_rrset(self, project: str, zone: str, body: dict[str, Any]) -> None:
        """Seeding only: put any record set (a routing policy too) at once, no change."""
        with self._lock:
            found = self._zone(project, zone)
            record = RecordSet.from_json(body, "seed", found.dns_name)
            found.served[record.key] = record
            found.intended[record.key] = record

    def get_rrset(self, project: str, zone: str, name: str, rtype: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._zone(project, zone).served.get((fqdn(name), rtype.upper()))
            return record.to_json() if record else None

    def read_rrset(self, project: str, zone: str, name: str, rtype: str) -> dict[str, Any]:
        """``resourceRecordSets.get``: the served set, or 404 naming the missing one."""
        with self._lock:
            record = self._zone(project, zone).served.get((fqdn(name), rtype.upper()))
            if record is None:
                raise UnknownResource("parameters.name", f"{fqdn(name)} ({rtype.upper()})")
            return record.to_json()

    def create_rrset(self, project: str, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        """``resourceRecordSets.create``: a change that adds one set (409 if it exists)."""
        with self._lock:
            found = self._zone(project, zone)
            record = RecordSet.from_json(body, "entity.rrset", found.dns_name)
            if record.key in found.intended:
                raise AlreadyExists("entity.rrset", f"{record.name} ({record.type})")
            self._submit(project, found, [record], [])
            return record.to_json()

    def patch_rrset(
        self, project: str, zone: str, name: str, rtype: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """``resourceRecordSets.patch``: replace the fields given, as one change.

        ``rrdatas`` and ``routingPolicy`` exclude each other, so giving one drops the
        other; the name and type come from the path and may not be changed.
        """
        with self._lock:
            found = self._zone(project, zone)
            current = found.intended.get((fqdn(name), rtype.upper()))
            if current is None:
                raise UnknownResource("parameters.name", f"{fqdn(name)} ({rtype.upper()})")
            for field_name, value in (("name", current.name), ("type", current.type)):
                given = body.get(field_name)
                if given is not None and str(given).lower() != value.lower():
                    raise InvalidChange(
                        f"Invalid value for 'entity.rrset.{field_name}': {given!r} "
                        f"(the path names {value})"
                    )
            if body.get("rrdatas") and body.get("routingPolicy") is not None:
                raise InvalidChange(
                    "Invalid value for 'entity.rrset': set either rrdatas or routingPolicy, "
                    "not both"
                )
            merged = current.to_json()
            if body.get("ttl") is not None:
                merged["ttl"] = body["ttl"]
            if body.get("rrdatas"):
                merged.pop("routingPolicy", None)
                merged["rrdatas"] = body["rrdatas"]
            elif body.get("routingPolicy") is not None:
                merged.pop("rrdatas", None)
                merged["routingPolicy"] = body["routingPolicy"]
            record = RecordSet.from_json(merged, "entity.rrset", found.dns_name)
            self._submit(project, found, [record], [current])
            return record.to_json()

    def delete_rrset(self, project: str, zone: str, name: str, rtype: str) -> dict[str, Any]:
        """``resourceRecordSets.delete``: a change that deletes the set (404 if missing)."""
        with self._lock:
            found = self._zone(project, zone)
            current = found.intended.get((fqdn(name), rtype.upper()))
            if current is None:
                raise UnknownResource("parameters.name", f"{fqdn(name)} ({rtype.upper()})")
            self._submit(project, found, [], [current])
            return {}

    def find_rrset(self, name: str, rtype: str) -> dict[str, Any] | None:
        """Resolve across every zone; the most specific zone wins, as delegation would."""
        key = (fqdn(name), rtype.upper())
        with self._lock:
            holders = [z for z in self._zones.values() if key in z.served]
            if not holders:
                return None
            best = max(holders, key=lambda z: (len(z.dns_name), z.project, z.name))
            return best.served[key].to_json()

    # changes ------------------------------------------------------------------------------

    def create_change(self, project: str, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        """Accept an atomic change (all or nothing) and schedule when it is served."""
        with self._lock:
            found = self._zone(project, zone)
            additions = _parse_records(body, "additions", found.dns_name)
            deletions = _parse_records(body, "deletions", found.dns_name)
            _check_change(found.intended, additions, deletions)
            return self._submit(project, found, additions, deletions).to_json()

    def _submit(
        self,
        project: str,
        found: ManagedZone,
        additions: list[RecordSet],
        deletions: list[RecordSet],
    ) -> Change:
        """Accept a checked change (the caller holds the lock); served after the delay.

        The rrsets methods go through here too: Cloud DNS records each of them as a change.
        """
        change = Change(str(len(found.changes)), additions, deletions)
        change.apply_to(found.intended)
        found.changes.append(change)
        generation, zone = self._generation, found.name
        self._ctx.scheduler.call_later(
            self._ctx.latency.seconds("dns.change"),
            lambda: self._finish_change(project, zone, change.id, generation),
        )
        return change

    def get_change(self, project: str, zone: str, change_id: str) -> dict[str, Any]:
        with self._lock:
            return self._zone(project, zone).change(change_id).to_json()

    def list_changes(
        self,
        project: str,
        zone: str,
        descending: bool,
        max_results: int | None,
        page_token: str | None,
    ) -> dict[str, Any]:
        with self._lock:
            changes = list(self._zone(project, zone).changes)
            if descending:
                changes.reverse()
            page, token = paginate(changes, max_results, page_token, self._page_cap)
            return _listing("dns#changesListResponse", "changes", page, token)

    def _finish_change(self, project: str, zone: str, change_id: str, generation: int) -> None:
        with self._lock:
            found = self._zones.get((project, zone))
            if generation != self._generation or found is None:
                return
            for change in found.changes:
                if int(change.id) > int(change_id):
                    break
                if change.status == "pending":
                    change.apply_to(found.served)
                    change.status = "done"

    def _zone(self, project: str, zone: str) -> ManagedZone:
        """By name or by id, as Cloud DNS's ``managedZone`` parameter allows."""
        found = self._zones.get((project, zone))
        if found is None:
            found = next(
                (z for (p, _), z in self._zones.items() if p == project and z.id == zone), None
            )
        if found is None:
            raise UnknownResource("parameters.managedZone", zone)
        return found


def _parse_records(body: dict[str, Any], field_name: str, dns_name: str) -> list[RecordSet]:
    raw = body.get(field_name) or []
    if not isinstance(raw, list):
        raise InvalidChange(f"Invalid value for 'entity.change.{field_name}': expected a list")
    return [
        RecordSet.from_json(item, f"entity.change.{field_name}[{i}]", dns_name)
        for i, item in enumerate(raw)
    ]


def _check_change(
    intended: dict[RRKey, RecordSet], additions: list[RecordSet], deletions: list[RecordSet]
) -> None:
    """Raise the error Cloud DNS would give; nothing is changed before this passes."""
    if not additions and not deletions:
        raise InvalidChange("The 'entity.change' resource has no additions or deletions")
    if len(additions) + len(deletions) > MAX_RECORDS_PER_CHANGE:
        raise InvalidChange(
            f"A change holds at most {MAX_RECORDS_PER_CHANGE} additions and deletions, "
            f"got {len(additions) + len(deletions)}"
        )
    for field_name, records in (("additions", additions), ("deletions", deletions)):
        keys = [r.key for r in records]
        if len(set(keys)) != len(keys):
            raise InvalidChange(f"The 'entity.change.{field_name}' list names a record set twice")
    for i, record in enumerate(deletions):
        current = intended.get(record.key)
        if current is None or not current.matches(record):
            raise ConditionNotMet(f"entity.change.deletions[{i}]")
    deleted = {r.key for r in deletions}
    for i, record in enumerate(additions):
        if record.key in intended and record.key not in deleted:
            raise AlreadyExists(f"entity.change.additions[{i}]", f"{record.name} ({record.type})")


def _listing(kind: str, items_key: str, page: list[Any], token: str | None) -> dict[str, Any]:
    reply: dict[str, Any] = {"kind": kind, items_key: [item.to_json() for item in page]}
    if token:
        reply["nextPageToken"] = token
    return reply
