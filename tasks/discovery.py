"""The reads behind `lifeboat discover`: list what two projects hold. Nothing is written.

Plain functions, not Prefect tasks: discover runs from a shell before any deployment
exists. Every list follows its pages (Google may return fewer items than asked, and the
lab always serves at most 2); a failed list raises DiscoveryError naming the call, the
project and Google's error, after a few tries when the error is transient, so a file is
never printed from a partial read. Each function is idempotent: a read.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.api_core import page_iterator
from google.cloud import run_v2

from lifeboat.clients import ClientFactory
from lifeboat.discovery import DiscoveryError
from lifeboat.discovery.snapshot import Bucket, RecordSet, RunService, SqlInstance, UrlMap, Zone
from tasks.errors import TransientError, classify
from tasks.run_capacity import Capacity

T = TypeVar("T")
TRIES = 3


def read(what: str, resource: str, call: Callable[[], Iterable[T]], pause_s: float) -> list[T]:
    """``list(call())``, retried while transient; else DiscoveryError naming ``what``."""
    for attempt in range(1, TRIES + 1):
        try:
            return list(call())
        except Exception as exc:
            error = classify(exc, f"discover: {what}", resource)
            if not isinstance(error, TransientError) or attempt == TRIES:
                raise DiscoveryError(str(error)) from exc
            time.sleep(pause_s * attempt)
    raise AssertionError("unreachable")


class CloudReader:
    """The lists discovery makes, through the client factory's clients."""

    def __init__(self, clients: ClientFactory, timeout: float):
        self.clients = clients
        self.timeout = timeout
        self.pause_s = 1.0 if clients.endpoints.is_google else 0.05

    def sql_instances(self, project: str) -> list[SqlInstance]:
        """Cloud SQL instances.list, and the databases of each instance that is no replica."""

        def page(service: Any, token: str | None) -> Any:
            return service.instances().list(project=project, pageToken=token)

        found = read(
            "list Cloud SQL instances",
            f"projects/{project}",
            lambda: self.clients.sql.pages(page, self.timeout),
            self.pause_s,
        )
        return [self._instance(project, item) for item in found]

    def _instance(self, project: str, item: dict[str, Any]) -> SqlInstance:
        name = str(item["name"])
        databases: list[str] = []
        if not item.get("masterInstanceName"):
            databases = [
                str(d["name"])
                for d in read(
                    "list Cloud SQL databases",
                    f"projects/{project}/instances/{name}",
                    lambda: self.clients.sql.call(
                        lambda s: s.databases().list(project=project, instance=name),
                        self.timeout,
                    ).get("items", []),
                    self.pause_s,
                )
            ]
        return SqlInstance(
            project=project,
            name=name,
            region=str(item.get("region", "")),
            instance_type=str(item.get("instanceType", "")),
            master=item.get("masterInstanceName"),
            replica_names=list(item.get("replicaNames", [])),
            databases=databases,
        )

    def run_services(self, project: str, region: str) -> list[RunService]:
        """Cloud Run services.list in one region, with each service's effective scaling."""
        parent = f"projects/{project}/locations/{region}"
        found = read(
            "list Cloud Run services",
            parent,
            lambda: self.clients.run_services.list_services(
                parent=parent, retry=None, timeout=self.timeout
            ),
            self.pause_s,
        )
        return [run_service(project, region, svc) for svc in found]

    def zone(self, projects: list[str], wanted: str | None) -> Zone:
        """The zone named ``wanted`` (else the only one) in the first project holding it."""
        candidates: list[tuple[str, dict[str, Any]]] = []
        for project in projects:
            zones = read(
                "list DNS managed zones",
                f"projects/{project}",
                functools.partial(self._dns_pages, project, "managedZones", "managedZones"),
                self.pause_s,
            )
            candidates += [(project, z) for z in zones if wanted in (None, z.get("name"))]
        where = " or ".join(projects)
        if not candidates:
            named = f"DNS zone {wanted!r}" if wanted else "any DNS managed zone"
            raise DiscoveryError(f"discover: {named} not found in project {where}")
        if wanted is None and len(candidates) > 1:
            names = ", ".join(f"{p}/{z.get('name')}" for p, z in candidates)
            raise DiscoveryError(f"discover: several DNS zones in {where} ({names}); pass --zone")
        project, found = candidates[0]
        name = str(found["name"])
        path = f"managedZones/{name}/rrsets"
        record_sets = read(
            "list DNS record sets",
            f"projects/{project}/{path}",
            lambda: self._dns_pages(project, path, "rrsets"),
            self.pause_s,
        )
        return Zone(
            project=project,
            name=name,
            dns_name=str(found["dnsName"]),
            record_sets=[
                RecordSet(
                    name=r["name"],
                    type=r["type"],
                    ttl=r.get("ttl", 300),
                    rrdatas=r.get("rrdatas", []),
                    routing_policy=r.get("routingPolicy"),
                )
                for r in record_sets
            ],
        )

    def _dns_pages(self, project: str, path: str, items_key: str) -> Iterable[dict[str, Any]]:
        # Raw JSON through the client's connection: google-cloud-dns cannot parse a
        # routing-policy record set (it indexes rrdatas), and a zone may hold some.
        client = self.clients.dns(project)
        return page_iterator.HTTPIterator(  # type: ignore[no-untyped-call]
            client=client,
            api_request=functools.partial(client._connection.api_request, timeout=self.timeout),
            path=f"/projects/{project}/{path}",
            item_to_value=lambda _iterator, item: item,
            items_key=items_key,
        )

    def url_maps(self, project: str) -> list[UrlMap]:
        """Compute urlMaps.list (global), with the hosts of each map's host rules."""
        from google.cloud import compute_v1  # slow to import: only discover pays here

        found = read(
            "list url-maps",
            f"projects/{project}/global/urlMaps",
            lambda: self.clients.url_maps.list(
                request=compute_v1.ListUrlMapsRequest(project=project),
                retry=None,
                timeout=self.timeout,
            ),
            self.pause_s,
        )
        return [
            UrlMap(
                project=project,
                name=m.name,
                hosts=[h for rule in m.host_rules for h in rule.hosts],
            )
            for m in found
        ]

    def buckets(self, project: str) -> list[Bucket]:
        """Cloud Storage buckets.list of a project."""
        client = self.clients.storage(project)
        found = read(
            "list buckets",
            f"projects/{project}",
            lambda: client.list_buckets(project=project, retry=None, timeout=self.timeout),
            self.pause_s,
        )
        return [
            Bucket(
                project=project,
                name=b.name,
                location=b.location or "",
                location_type=b.location_type or "",
            )
            for b in found
        ]


def run_service(project: str, region: str, svc: run_v2.Service) -> RunService:
    """What discovery keeps of a Cloud Run service: image, effective scaling, secrets."""
    effective = Capacity.of(svc).effective
    containers = svc.template.containers
    secrets = [v.secret.secret for v in svc.template.volumes if v.secret.secret]
    secrets += [
        e.value_source.secret_key_ref.secret
        for c in containers
        for e in c.env
        if e.value_source.secret_key_ref.secret
    ]
    return RunService(
        project=project,
        region=region,
        name=svc.name.rsplit("/", 1)[-1],
        image=containers[0].image if containers else "",
        min_instances=effective.min,
        max_instances=effective.max,
        labels=dict(svc.labels),
        # A secret of the service's own project may be named alone; the rest by path.
        secrets=[r if "/" in r else f"projects/{project}/secrets/{r}" for r in secrets],
    )
