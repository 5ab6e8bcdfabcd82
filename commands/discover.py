"""`lifeboat discover`: read two live projects and print the topology file they make.

Only reads: lists and gets, through the client factory (``tasks/discovery.py``). The
file is checked against the topology model before it is printed; a file the model
refuses is still printed, with what to fill in on stderr, and the exit status says so.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from lifeboat.discovery import DiscoveryError
from lifeboat.discovery.build import build
from lifeboat.discovery.guesses import sql_pair
from lifeboat.discovery.render import render
from lifeboat.discovery.snapshot import Snapshot
from lifeboat.endpoints import ResolvedEndpoints, resolve
from lifeboat.topology import Topology, load_topology

# The Google clients load with the reads, when discover runs: not for every command.
if TYPE_CHECKING:
    from tasks.discovery import CloudReader

# Exit statuses: the file is printed and valid / printed but needs editing.
VALID, INCOMPLETE = 0, 3
DEFAULT_TIMEOUT_S = 30.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    discover = sub.add_parser("discover", help="print the topology two live projects make")
    discover.add_argument("--primary-project", required=True)
    discover.add_argument("--secondary-project", required=True)
    discover.add_argument("--zone", default=None, help="managed zone name (default: the only one)")
    discover.add_argument("--url-map", default=None, help="url-map name (default: guessed)")
    discover.add_argument(
        "--env", default=None, help="reach the cloud through this environment's endpoints"
    )
    discover.add_argument("--name", default=None, help="environment name in the file")


def run(args: argparse.Namespace) -> int:
    """Read, build, print. DiscoveryError and TopologyError reach the caller."""
    from lifeboat.clients import ClientFactory
    from tasks.discovery import CloudReader

    endpoints: dict[str, Any] | None = None
    resolved, timeout = ResolvedEndpoints(), DEFAULT_TIMEOUT_S
    if args.env:
        configured = load_topology(args.env).endpoints
        resolved, timeout = resolve(configured), configured.call_timeout_s
        # The file reaches the cloud the way E does; Google's endpoints need no block.
        endpoints = configured.model_dump(exclude_defaults=True) or None
    snapshot = read_snapshot(
        CloudReader(ClientFactory(resolved), timeout),
        args.primary_project,
        args.secondary_project,
        args.zone,
    )
    discovered = build(snapshot, args.name or args.env or "prod", args.url_map, endpoints)
    source = f"environment {args.env}" if args.env else "Google (default credentials)"
    print(render(discovered, source, datetime.now(UTC)), end="")
    try:
        Topology.model_validate(discovered.data)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"discover: the file needs editing before it validates: {where}", file=sys.stderr)
        return INCOMPLETE
    return VALID


def read_snapshot(reader: CloudReader, primary: str, secondary: str, zone: str | None) -> Snapshot:
    """Every list discovery needs. What is missing is reported all at once, by name."""
    projects = list(dict.fromkeys([primary, secondary]))
    instances = [i for p in projects for i in reader.sql_instances(p)]
    url_maps = [m for p in projects for m in reader.url_maps(p)]
    buckets = [b for p in projects for b in reader.buckets(p)]
    missing = []
    if not instances:
        missing.append(f"no Cloud SQL instance in {' or '.join(projects)}")
    if not url_maps:
        missing.append(f"no url-map in {' or '.join(projects)}")
    if not buckets:
        missing.append(f"no bucket in {' or '.join(projects)}")
    try:
        found_zone = reader.zone(projects, zone)
    except DiscoveryError as exc:
        if not missing:
            raise
        missing.append(str(exc).removeprefix("discover: "))
    if missing:
        raise DiscoveryError("discover: nothing to build a topology from: " + "; ".join(missing))
    # The Cloud SQL replica's region is the secondary region: read Run services there.
    primary_sql, replica_sql, _ = sql_pair(instances, primary)
    services = reader.run_services(primary, primary_sql.region) + reader.run_services(
        secondary, replica_sql.region
    )
    return Snapshot(
        primary_project=primary,
        secondary_project=secondary,
        sql_instances=instances,
        services=services,
        zone=found_zone,
        url_maps=url_maps,
        buckets=buckets,
    )
