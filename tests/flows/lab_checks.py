"""Reading the lab's state the way an auditor would: through the real clients and HTTP."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg

from lifeboat.topology import load_topology
from reliability import writer
from tests.labharness import Lab

TOPOLOGY = load_topology("lab")
PRIMARY = TOPOLOGY.regions.primary
SECONDARY = TOPOLOGY.regions.secondary
RECORD = TOPOLOGY.dns.records[0]
REPLICA = TOPOLOGY.cloud_sql.replica
# One client for the reads below: httpx.get builds a client and an SSL context each call
# (20 ms of CPU), and tests poll these.
HTTP = httpx.Client(timeout=10)


def incident(prefix: str = "INC") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dns_record(lab: Lab) -> tuple[list[str], int]:
    """The served record, read alone: google-cloud-dns cannot list a zone that holds a
    routing-policy set (the lab seeds one), so this asks Cloud DNS's own filter."""
    zone = f"{lab.endpoints['dns']}/dns/v1/projects/{TOPOLOGY.dns.project}/managedZones"
    reply = HTTP.get(
        f"{zone}/{TOPOLOGY.dns.zone}/rrsets", params={"name": RECORD.name, "type": RECORD.type}
    )
    reply.raise_for_status()
    for rrset in reply.json()["rrsets"]:
        return list(rrset["rrdatas"]), int(rrset["ttl"])
    raise AssertionError("record missing")


def record_sets(lab: Lab) -> list[dict[str, Any]]:
    """Every record set of the zone, page by page (the lab caps a page, as Cloud DNS may)."""
    zone = f"{lab.endpoints['dns']}/dns/v1/projects/{TOPOLOGY.dns.project}/managedZones"
    found: list[dict[str, Any]] = []
    token = None
    while True:
        query = {"maxResults": 1000, **({"pageToken": token} if token else {})}
        reply = HTTP.get(f"{zone}/{TOPOLOGY.dns.zone}/rrsets", params=query)
        reply.raise_for_status()
        found += reply.json()["rrsets"]
        token = reply.json().get("nextPageToken")
        if not token:
            return found


def routing_policy_sets(lab: Lab) -> dict[str, dict[str, Any]]:
    """Every routing-policy set of the zone (raw JSON: the library cannot parse them)."""
    return {r["name"]: r for r in record_sets(lab) if "routingPolicy" in r}


def service_name(region: Any, service: str) -> str:
    return f"projects/{region.project}/locations/{region.name}/services/{service}"


def scaling(lab: Lab, region: Any, service: str) -> tuple[int, int]:
    """The bounds in effect: service-level when set, else the revision's (0 means unset)."""
    got = lab.clients().run_services.get_service(name=service_name(region, service))
    return (
        got.scaling.min_instance_count or got.template.scaling.min_instance_count,
        got.scaling.max_instance_count or got.template.scaling.max_instance_count or 100,
    )


def revisions(lab: Lab, region: Any, service: str) -> list[str]:
    """A service's revisions by short name, as the real client lists them."""
    listed = lab.clients().run_revisions.list_revisions(parent=service_name(region, service))
    return sorted(r.name.rsplit("/", 1)[-1] for r in listed)


def all_revisions(lab: Lab) -> dict[str, list[str]]:
    return {
        f"{region.name}/{s.name}": revisions(lab, region, s.name)
        for region in (PRIMARY, SECONDARY)
        for s in TOPOLOGY.services
    }


def ingress(lab: Lab, region: Any, service: str) -> tuple[str, dict[str, str]]:
    """A service's ingress setting and its annotations."""
    from google.cloud import run_v2

    got = lab.clients().run_services.get_service(name=service_name(region, service))
    return run_v2.IngressTraffic(got.ingress).name, dict(got.annotations)


def sql_instance(lab: Lab, project: str, name: str) -> dict[str, Any]:
    """The instance as Cloud SQL Admin (REST) describes it."""
    return lab.clients().sql.call(
        lambda s: s.instances().get(project=project, instance=name), timeout=10
    )


def instance_type(lab: Lab, project: str, name: str) -> str:
    return str(sql_instance(lab, project, name)["instanceType"])


# The discovery method a Cloud SQL Admin REST call is, from its verb and path, so that
# tests read like the API reference: ("sql", "instances.promoteReplica").
_SQL_COLLECTIONS = {"instances", "backupRuns", "operations", "users", "databases"}


def sql_method(method: str, path: str) -> str:
    parts = path.strip("/").split("/")
    tail = parts[parts.index("projects") + 2 :] if "projects" in parts else parts
    collection = next((p for p in reversed(tail) if p in _SQL_COLLECTIONS), "?")
    after = tail[len(tail) - tail[::-1].index(collection) :] if collection in tail else []
    if len(after) == 2 and collection == "instances":
        return f"instances.{after[1]}"  # a custom verb: promoteReplica, export, ...
    if not after:
        return f"{collection}.{'insert' if method == 'POST' else 'list'}"
    verbs = {"GET": "get", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}
    return f"{collection}.{verbs.get(method, method.lower())}"


def sql_requests(lab: Lab, since: int = 0) -> list[str]:
    """The Cloud SQL Admin methods called since ``since``, in order (successful or not)."""
    return [sql_method(e["method"], e["path"]) for e in lab.requests(api="sql", since=since)]


def front_region(lab: Lab, path: str = "/version") -> str:
    response = HTTP.get(
        f"{lab.endpoints['front_door']}{path}", headers={"host": TOPOLOGY.health.host}
    )
    return str(response.json()["region"])


def read_object(lab: Lab, bucket: str, name: str) -> bytes:
    client = lab.clients().storage(PRIMARY.project)
    return bytes(client.bucket(bucket).blob(name).download_as_bytes())


def side_effects(lab: Lab, since: int) -> list[tuple[str, str, str]]:
    """State-changing cloud calls since ``since``, in order: (api, method, path).

    Which calls change state is the lab's own judgement (each emulator marks its
    read-only POSTs, lab/core/http.py ``reads``), so no call kind can be missed by a
    list kept here. Cloud SQL calls carry their discovery method
    (``instances.promoteReplica``) instead of the HTTP verb, since its POSTs are many
    different operations.
    """
    return [
        (
            e["api"],
            sql_method(e["method"], e["path"]) if e["api"] == "sql" else e["method"],
            e["path"],
        )
        for e in lab.requests(since=since)
        if e["write"]
        and e["status"] < 400
        and e["api"] not in {"webhooks"}
        and not (e["api"] == "storage" and "dr-records" in e["path"])
    ]


def sql(lab: Lab, project: str, name: str, query: str, database: str = "varai_prod") -> list[tuple]:
    """Run ``query`` on an instance's real PostgreSQL as its superuser, at its API address."""
    got = sql_instance(lab, project, name)
    with psycopg.connect(
        host=str(got["ipAddresses"][0]["ipAddress"]),
        user="postgres",
        dbname=database,
        connect_timeout=5,
        autocommit=True,
    ) as conn:
        cursor = conn.execute(query)
        return cursor.fetchall() if cursor.description else []


def app_role(lab: Lab, project: str, name: str) -> tuple[bool, str]:
    """Whether the apps' role may log in to an instance, and its comment (a fence's mark)."""
    rows = sql(
        lab,
        project,
        name,
        "SELECT rolcanlogin, COALESCE(shobj_description(oid, 'pg_authid'), '') FROM pg_roles"
        f" WHERE rolname = '{TOPOLOGY.cloud_sql.app_user}'",
        database="postgres",
    )
    assert len(rows) == 1, rows
    return bool(rows[0][0]), str(rows[0][1])


def app_secret_value(lab: Lab, version: str = "latest") -> str:
    """The apps' database URL as Secret Manager holds it (a secret: never print it)."""
    secret = TOPOLOGY.cloud_sql.app_secret.resource
    got = lab.clients().secret_manager.access_secret_version(name=f"{secret}/versions/{version}")
    return bytes(got.payload.data).decode()


def set_app_secret(lab: Lab, url: str) -> None:
    """Add a version of the apps' secret, as an operator with gcloud would."""
    lab.clients().secret_manager.add_secret_version(
        request={
            "parent": TOPOLOGY.cloud_sql.app_secret.resource,
            "payload": {"data": url.encode()},
        }
    )


def instance_address(lab: Lab, project: str, name: str) -> str:
    """The address apps connect to: the private one when the instance has it."""
    by_type = {
        ip["type"]: ip["ipAddress"] for ip in sql_instance(lab, project, name)["ipAddresses"]
    }
    return str(by_type.get("PRIVATE") or by_type["PRIMARY"])


def post_order(lab: Lab, order_id: str) -> httpx.Response:
    """A write through the public path: the front door routes it by DNS to a region app."""
    return writer.post_order(lab.endpoints["front_door"], TOPOLOGY.health.host, order_id)


def take_secret_as_env_var(lab: Lab, region_name: str, service: str, version: str) -> None:
    """Reconfigure a service (a new revision) to read the URL as an env var at ``version``.

    A template label that changes each time makes it a new revision even when the env var
    is the same: Cloud Run creates one for any template change, and none for no change.
    """
    from google.cloud import run_v2

    client = lab.clients().run_services
    region_ = PRIMARY if region_name == PRIMARY.name else SECONDARY
    svc = client.get_service(
        name=f"projects/{region_.project}/locations/{region_name}/services/{service}"
    )
    container = svc.template.containers[0]
    del container.volume_mounts[:]
    del svc.template.volumes[:]
    del container.env[:]
    svc.template.labels["rolled"] = str(int(svc.template.labels.get("rolled", "0")) + 1)
    container.env.append(
        run_v2.EnvVar(
            name="DATABASE_URL",
            value_source=run_v2.EnvVarSource(
                secret_key_ref=run_v2.SecretKeySelector(
                    secret=TOPOLOGY.cloud_sql.app_secret.resource, version=version
                )
            ),
        )
    )
    client.update_service(service=svc).result(timeout=30, polling=lab.clients().polling)


def run_records(lab: Lab, folder: str, flow_run_id: str) -> list[dict[str, Any]]:
    """The run records in ``folder`` of the records bucket that a flow run wrote."""
    bucket = lab.clients().storage(PRIMARY.project).bucket(TOPOLOGY.backups.records_bucket)
    found = [json.loads(b.download_as_bytes()) for b in bucket.list_blobs(prefix=f"{folder}/")]
    return [r for r in found if r.get("flow_run_id") == flow_run_id]
