"""Reading the lab's state the way an auditor would: through the real clients and HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
from google.cloud import sqladmin_v1

from lifeboat.topology import load_topology
from tests.labharness import Lab

TOPOLOGY = load_topology("lab")
PRIMARY = TOPOLOGY.regions.primary
SECONDARY = TOPOLOGY.regions.secondary
RECORD = TOPOLOGY.dns.records[0]
REPLICA = TOPOLOGY.cloud_sql.replica


def incident(prefix: str = "INC") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dns_record(lab: Lab) -> tuple[list[str], int]:
    zone = lab.clients().dns(TOPOLOGY.dns.project).zone(TOPOLOGY.dns.zone, TOPOLOGY.dns.dns_name)
    for rrset in zone.list_resource_record_sets():
        if rrset.name == RECORD.name and rrset.record_type == RECORD.type:
            return list(rrset.rrdatas), rrset.ttl
    raise AssertionError("record missing")


def scaling(lab: Lab, region: Any, service: str) -> tuple[int, int]:
    name = f"projects/{region.project}/locations/{region.name}/services/{service}"
    got = lab.clients().run_services.get_service(name=name)
    return got.template.scaling.min_instance_count, got.template.scaling.max_instance_count


def instance_type(lab: Lab, project: str, name: str) -> str:
    got = lab.clients().sql_instances.get(
        request=sqladmin_v1.SqlInstancesGetRequest(project=project, instance=name)
    )
    return sqladmin_v1.SqlInstanceType(got.instance_type).name


def front_region(lab: Lab, path: str = "/version") -> str:
    response = httpx.get(
        f"{lab.endpoints['front_door']}{path}", headers={"host": TOPOLOGY.health.host}, timeout=10
    )
    return str(response.json()["region"])


def read_object(lab: Lab, bucket: str, name: str) -> bytes:
    client = lab.clients().storage(PRIMARY.project)
    return bytes(client.bucket(bucket).blob(name).download_as_bytes())


def side_effects(lab: Lab, since: int) -> list[tuple[str, str, str]]:
    """Mutating cloud calls since ``since``, in order: (api, method, path)."""
    mutating = {"POST", "PATCH", "PUT", "DELETE", "PromoteReplica", "Insert", "Delete", "Export"}
    return [
        (e["api"], e["method"], e["path"])
        for e in lab.requests(since=since)
        if e["method"] in mutating
        and e["status"] < 400
        and e["api"] not in {"webhooks"}
        and not (e["api"] == "storage" and "dr-records" in e["path"])
    ]


def sql(lab: Lab, project: str, name: str, query: str, database: str = "varai_prod") -> list[tuple]:
    """Run ``query`` on an instance's real PostgreSQL as its superuser, at its API address."""
    got = lab.clients().sql_instances.get(
        request=sqladmin_v1.SqlInstancesGetRequest(project=project, instance=name)
    )
    with psycopg.connect(
        host=str(got.ip_addresses[0].ip_address),
        user="postgres",
        dbname=database,
        connect_timeout=5,
        autocommit=True,
    ) as conn:
        cursor = conn.execute(query)
        return cursor.fetchall() if cursor.description else []
