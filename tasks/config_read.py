"""Read the configuration a region switch depends on, as the APIs describe it.

What seed 004's configuration and secrets backups keep (seed 000's ``backup-config.sh``
did it with ``gcloud ... describe > file``): each Cloud Run service of both regions, every
record set of the DNS zone, the CDN's url-map and the backend services it names, and each
Secret Manager secret's latest value. Each item is one JSON document, the API's own
representation, so that ``lifeboat restore-config`` can send it back as it was.

Secret values are read here only to be put into the encrypted archive: they are never
logged, returned in a task result or recorded (the items are built and archived in one
task, ``tasks/config_backup.py``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import compute_v1, run_v2, secretmanager_v1

from lifeboat import runtime
from lifeboat.config_items import backend_service_links, backend_service_ref
from lifeboat.secret_names import SecretName
from lifeboat.topology import Topology
from tasks.dns_rrsets import list_record_sets
from tasks.errors import PermanentError


@dataclass(frozen=True)
class Captured:
    """One item, ready for the archive: what it is, where it goes, its JSON bytes."""

    kind: str
    name: str
    path: str
    data: bytes


def _json(document: dict[str, Any]) -> bytes:
    # Sorted keys: the same configuration gives the same bytes, hence the same sha256.
    return json.dumps(document, sort_keys=True, indent=1).encode()


def run_services(environment: str) -> Iterator[Captured]:
    """Every Cloud Run service of the primary and secondary regions."""
    topo = runtime.topology(environment)
    client = runtime.clients(environment).run_services
    timeout = runtime.call_timeout(environment)
    for region in (topo.regions.primary, topo.regions.secondary):
        parent = f"projects/{region.project}/locations/{region.name}"
        for service in client.list_services(parent=parent, retry=None, timeout=timeout):
            short = service.name.rsplit("/", 1)[-1]
            document = json.loads(run_v2.Service.to_json(service))
            yield Captured(
                "run-service", service.name, f"run/{region.name}/{short}.json", _json(document)
            )


def dns_record_sets(environment: str) -> Iterator[Captured]:
    """Every record set of the topology's zone, routing policies included.

    Listed through the client's connection, page by page: google-cloud-dns's own listing
    fails on a routing-policy set (tasks/dns_rrsets.py says why).
    """
    topo = runtime.topology(environment)
    client = runtime.clients(environment).dns(topo.dns.project)
    timeout = runtime.call_timeout(environment)
    for item in list_record_sets(client, topo.dns.zone, timeout):
        name, rtype = item["name"], item["type"]
        path = f"dns/{topo.dns.zone}/{rtype}/{name.rstrip('.') or '@'}.json"
        yield Captured("dns-record-set", f"{name} {rtype}", path, _json(item))


def url_map_and_backend_services(environment: str) -> Iterator[Captured]:
    """The CDN's url-map, then each backend service it names (by link), as Compute gives
    them: without its backend services a url-map cannot be put back.

    A link Compute answers 404 for fails the backup, naming it: the load balancer then
    serves from a backend service that is gone, which is worth knowing, and a backup
    without it could not put the url-map back either.
    """
    topo = runtime.topology(environment)
    factory = runtime.clients(environment)
    timeout = runtime.call_timeout(environment)
    got = factory.url_maps.get(
        project=topo.cdn.project, url_map=topo.cdn.url_map, retry=None, timeout=timeout
    )
    document = json.loads(compute_v1.UrlMap.to_json(got))
    name = f"projects/{topo.cdn.project}/global/urlMaps/{topo.cdn.url_map}"
    yield Captured("url-map", name, f"compute/urlMaps/{topo.cdn.url_map}.json", _json(document))
    for link in backend_service_links(document):
        ref = backend_service_ref(link)
        if ref is None:
            raise PermanentError(
                f"config-backup: url-map {name} names {link}, not a global backend service"
            )
        project, short = ref
        try:
            service = factory.backend_services.get(
                project=project, backend_service=short, retry=None, timeout=timeout
            )
        except gexc.NotFound:
            raise PermanentError(
                f"config-backup: url-map {name} names backend service {link}, which Compute "
                "answers 404 (not found) for"
            ) from None
        yield Captured(
            "backend-service",
            f"projects/{project}/global/backendServices/{short}",
            f"compute/backendServices/{short}.json",
            _json(json.loads(compute_v1.BackendService.to_json(service))),
        )


def secret_projects(topo: Topology) -> list[str]:
    """The projects whose secrets are kept: both regions' and the apps' secret's."""
    projects = [topo.regions.primary.project, topo.regions.secondary.project]
    projects.append(topo.cloud_sql.app_secret.project)
    return list(dict.fromkeys(projects))


def secrets(environment: str) -> Iterator[Captured]:
    """Each secret's metadata and its latest version's value (base64, as the API gives it).

    A secret with no enabled version to read is kept as metadata alone: it is there to
    be re-created, and an empty or disabled secret has no value to lose.
    """
    topo = runtime.topology(environment)
    client = runtime.clients(environment).secret_manager
    timeout = runtime.call_timeout(environment)
    for project in secret_projects(topo):
        for secret in client.list_secrets(
            parent=f"projects/{project}", retry=None, timeout=timeout
        ):
            document: dict[str, Any] = {
                "secret": json.loads(secretmanager_v1.Secret.to_json(secret))
            }
            # Secret Manager names a listed secret by project number; the IAM table and
            # the rest of Lifeboat name it by project id, which the API takes as well.
            listed = SecretName.parse(secret.name)
            if listed is None:
                raise PermanentError(f"config-backup: Secret Manager listed {secret.name!r}")
            short = listed.secret
            named = SecretName(project, short).secret_resource
            try:
                got = client.access_secret_version(
                    name=f"{named}/versions/latest", retry=None, timeout=timeout
                )
            except (gexc.NotFound, gexc.FailedPrecondition) as exc:
                document["latest"] = None
                document["unreadable"] = type(exc).__name__  # never the message: no value
            else:
                document["latest"] = {
                    "name": got.name,
                    "data": base64.b64encode(got.payload.data).decode(),
                }
            yield Captured(
                "secret", secret.name, f"secrets/{project}/{short}.json", _json(document)
            )
