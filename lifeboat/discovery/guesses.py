"""The rules discovery guesses by, where the cloud does not say what Lifeboat needs.

Each returns what it chose and a ``Guess``: the sentence the rendered file carries as a
comment above the section, so that the operator reads what was inferred and how.
Pure functions over a ``Snapshot``'s parts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from lifeboat.discovery import DiscoveryError
from lifeboat.discovery.snapshot import Bucket, RecordSet, RunService, SqlInstance, UrlMap, Zone

PLAIN_TYPES = ("A", "AAAA", "CNAME")
# When no label says a service's tier: the tightest objectives, so that a guess never
# judges a service more leniently than its owners would.
DEFAULT_TIER = "critical"
TIER_LABELS = ("lifeboat-tier", "tier")
TIERS = ("critical", "important", "standard")


@dataclass(frozen=True)
class Guess:
    section: str  # the topology's top-level key the comment goes above
    text: str


def _instance_name(master: str) -> str:
    """``project:instance`` (how Cloud SQL names a replica's primary) → ``instance``."""
    return master.rsplit(":", 1)[-1]


def sql_pair(
    instances: list[SqlInstance], primary_project: str
) -> tuple[SqlInstance, SqlInstance, Guess]:
    """The Cloud SQL primary and its read replica in another region: they fix the regions.

    Lifeboat fails over by promoting that replica, so its region is the secondary and the
    primary's region the primary. Several such pairs: the primary project's first by name.
    """
    by_name = {(i.project, i.name): i for i in instances}
    # Keyed by names: a replica names its primary, a primary lists its replicas.
    found: dict[tuple[str, str, str], tuple[SqlInstance, SqlInstance]] = {}
    for inst in instances:
        links: list[tuple[SqlInstance | None, SqlInstance | None]] = [
            (inst, by_name.get((inst.project, name))) for name in inst.replica_names
        ]
        if inst.master:
            links.append((by_name.get((inst.project, _instance_name(inst.master))), inst))
        for source, copy in links:
            if source and copy and not source.master and source.region != copy.region:
                found[(source.project, source.name, copy.name)] = (source, copy)
    if not found:
        listed = ", ".join(f"{i.project}/{i.name} ({i.region})" for i in instances) or "none"
        raise DiscoveryError(
            "no Cloud SQL primary with a read replica in another region "
            f"(instances found: {listed}); Lifeboat fails over by promoting such a replica "
            "(after a failover there is none until the failback rebuilds one)"
        )
    pairs = list(found.values())
    ranked = sorted(pairs, key=lambda p: (p[0].project != primary_project, p[0].name, p[1].name))
    primary, replica = ranked[0]
    text = (
        f"primary region {primary.region}: it holds the Cloud SQL primary {primary.name}; "
        f"secondary region {replica.region}: it holds its read replica {replica.name}"
    )
    if len(ranked) > 1:
        others = ", ".join(f"{p.name}->{r.name}" for p, r in ranked[1:])
        text += f" (other primary/replica pairs not used: {others})"
    return primary, replica, Guess("regions", text)


def tier_of(service: RunService) -> tuple[str, bool]:
    """The service's tier from its labels, and whether it had to be guessed."""
    for key in TIER_LABELS:
        if service.labels.get(key) in TIERS:
            return service.labels[key], False
    return DEFAULT_TIER, True


def app_secret(services: Iterable[RunService], fallback_project: str) -> tuple[str, str, Guess]:
    """(project, name) of the secret the services read most: their database URL, seed 004."""
    counts = Counter(s for svc in services for s in svc.secrets)
    if not counts:
        return (
            fallback_project,
            "prod-database-url",
            Guess("cloud_sql", "app_secret: no service references a secret; the default name"),
        )
    resource, uses = counts.most_common(1)[0]
    _, project, _, name = resource.split("/")[:4]
    text = f"app_secret: {resource}, referenced {uses} time(s) by the services"
    if project.isdigit():  # referenced by project number; the topology wants the id
        text += f"; project number {project} taken to be {fallback_project}"
        project = fallback_project
    return project, name, Guess("cloud_sql", text)


def url_map(maps: list[UrlMap], wanted: str | None, zone: Zone) -> tuple[UrlMap, Guess | None]:
    """The url-map named ``wanted``, else the one serving a host of the zone."""
    if wanted is not None:
        for candidate in maps:
            if candidate.name == wanted:
                return candidate, None
        raise DiscoveryError(f"url-map {wanted!r} not found (url-maps found: {_names(maps)})")
    names = {r.name.rstrip(".") for r in zone.record_sets if r.type in PLAIN_TYPES}
    serving = [m for m in maps if names & set(m.hosts)] or maps
    if not serving:
        raise DiscoveryError("no url-map found; pass --url-map")
    chosen = sorted(serving, key=lambda m: m.name)[0]
    text = f"url-map {chosen.name}: it serves {', '.join(chosen.hosts) or 'no host rule'}"
    if len(serving) > 1:
        text += f" (also candidates: {_names([m for m in serving if m is not chosen])})"
    return chosen, Guess("cdn", text)


def _names(items: Iterable[UrlMap | Bucket]) -> str:
    return ", ".join(f"{i.project}/{i.name}" for i in items) or "none"


def buckets(found: list[Bucket]) -> tuple[Bucket, Bucket, Guess]:
    """The backup bucket and the records bucket, told apart by name."""
    backup = sorted((b for b in found if "backup" in b.name), key=lambda b: b.name)
    records = sorted((b for b in found if "record" in b.name), key=lambda b: b.name)
    missing = [what for what, got in (("backup", backup), ("record", records)) if not got]
    if missing:
        raise DiscoveryError(
            f"no bucket named like {' or '.join(repr(m) for m in missing)} "
            f"(buckets found: {_names(found)})"
        )
    text = (
        f"bucket {backup[0].name} ({backup[0].location}) for backups and "
        f"{records[0].name} ({records[0].location}) for records, told apart by name"
    )
    return backup[0], records[0], Guess("backups", text)


def region_records(
    zone: Zone, primary_region: str, secondary_region: str, hosts: list[str]
) -> tuple[list[dict[str, object]], list[Guess]]:
    """The zone's plain A/AAAA/CNAME sets with each region's rrdatas.

    A zone says which addresses belong to which region only in a geo routing policy: a
    plain set whose rrdatas are one region's item of a geo set of its type takes both
    regions' items. A set with no such match is left out, unless it is a host of the
    url-map: that one is kept with no secondary rrdatas, for the operator to fill in.
    """
    geo_sets = [r for r in zone.record_sets if r.geo_items()]
    records: list[dict[str, object]] = []
    guesses: list[Guess] = []
    left_out: list[str] = []
    for rs in zone.record_sets:
        if rs.type not in PLAIN_TYPES or rs.routing_policy is not None:
            continue
        match = _geo_match(rs, geo_sets, primary_region, secondary_region)
        if match is None and rs.name.rstrip(".") not in hosts:
            left_out.append(f"{rs.name} {rs.type}")
            continue
        record: dict[str, object] = {"name": rs.name, "type": rs.type, "ttl": rs.ttl}
        if match is None:
            record["rrdatas"] = {"primary": list(rs.rrdatas), "secondary": []}
            guesses.append(
                Guess(
                    "dns",
                    f"{rs.name} {rs.type}: no geo routing set names {secondary_region}'s "
                    "addresses; fill in rrdatas.secondary",
                )
            )
        else:
            geo, primary, secondary = match
            record["rrdatas"] = {"primary": primary, "secondary": secondary}
            now = primary_region if set(rs.rrdatas) == set(primary) else secondary_region
            guesses.append(
                Guess(
                    "dns",
                    f"{rs.name} {rs.type}: per-region rrdatas from the geo routing set "
                    f"{geo.name}; it answers with {now}'s addresses now",
                )
            )
        record["failover_ttl"] = 60
        records.append(record)
    if records:
        guesses.append(Guess("dns", "failover_ttl: 60 s, Lifeboat's default"))
    if left_out:
        shown = ", ".join(left_out[:10]) + (" ..." if len(left_out) > 10 else "")
        guesses.append(Guess("dns", f"left out, no per-region addresses found: {shown}"))
    return records, guesses


def _geo_match(
    rs: RecordSet, geo_sets: list[RecordSet], primary_region: str, secondary_region: str
) -> tuple[RecordSet, list[str], list[str]] | None:
    for geo in geo_sets:
        if geo.type != rs.type:
            continue
        items = geo.geo_items()
        primary, secondary = items.get(primary_region), items.get(secondary_region)
        if primary and secondary and set(rs.rrdatas) in (set(primary), set(secondary)):
            return geo, primary, secondary
    return None
