"""The whole lab through its real front doors: region apps, routing, cache, control API."""

from __future__ import annotations

import socket
import time

import httpx
import psycopg
import pytest
from google.api_core import exceptions as gexc
from pymongo import MongoClient

from lab.core.settings import LabSettings
from lifeboat.topology import RegionRole, load_topology
from tests.flows.lab_checks import instance_address, sql, take_secret_as_env_var
from tests.labharness import TEST_PG_PREFIX, TEST_TIME_SCALE, Lab, lifeboat
from tests.polling import wait_for

TOPOLOGY = load_topology("lab")
PRIMARY = TOPOLOGY.regions.primary
SECONDARY = TOPOLOGY.regions.secondary
HOST = TOPOLOGY.health.host
RECORD = TOPOLOGY.dns.records[0]
TIME_SCALE = TEST_TIME_SCALE


def front(lab: Lab, path: str) -> httpx.Response:
    return httpx.get(f"{lab.endpoints['front_door']}{path}", headers={"host": HOST}, timeout=10)


def region(lab: Lab, name: str, path: str) -> httpx.Response:
    return httpx.get(f"{lab.endpoints['region_apps'][name]}{path}", timeout=10)


def test_primary_serves_and_standby_writes_to_the_primary_database(fresh_lab: Lab) -> None:
    assert region(fresh_lab, PRIMARY.name, "/health").status_code == 200
    for path in ("/auth/status", "/ai/status", "/recommendations/status"):
        assert region(fresh_lab, PRIMARY.name, path).json()["healthy"] is True
    standby = region(fresh_lab, SECONDARY.name, "/health")
    # Its services are at min 0 and still serve (after a cold start). Its database is
    # the one its URL secret names, the primary's, as on Google: not the local replica.
    primary_at = instance_address(
        fresh_lab, TOPOLOGY.cloud_sql.primary.project, TOPOLOGY.cloud_sql.primary.instance
    )
    assert standby.status_code == 200
    assert f"database {primary_at}:" in standby.json()["reason"]
    assert "no instances" not in standby.text
    assert region(fresh_lab, PRIMARY.name, "/version").json()["region"] == PRIMARY.name


def test_a_region_at_min_0_serves_after_a_cold_start(fresh_lab: Lab) -> None:
    cold_start = 2.0  # real seconds, so the wait stands out from noise
    fresh_lab.post("config", {"latency": {"run.cold_start": cold_start / TIME_SCALE}})
    started = time.monotonic()
    first = region(fresh_lab, SECONDARY.name, "/version")
    waited = time.monotonic() - started
    started = time.monotonic()
    second = region(fresh_lab, SECONDARY.name, "/version")
    warm = time.monotonic() - started

    assert first.status_code == second.status_code == 200  # not 503 at min 0
    assert first.json()["region"] == SECONDARY.name
    assert waited >= cold_start
    assert warm < cold_start / 2  # the instance the first request started is still up
    primary_started = time.monotonic()
    assert region(fresh_lab, PRIMARY.name, "/version").status_code == 200
    assert time.monotonic() - primary_started < cold_start / 2  # min 3: always warm


def set_ingress(lab: Lab, where: object, service: str, ingress: str) -> None:
    from google.cloud import run_v2
    from google.protobuf import field_mask_pb2

    client = lab.clients().run_services
    name = f"projects/{where.project}/locations/{where.name}/services/{service}"  # type: ignore[attr-defined]
    current = client.get_service(name=name)
    current.ingress = run_v2.IngressTraffic[ingress]
    mask = field_mask_pb2.FieldMask(paths=["ingress"])
    client.update_service(service=current, update_mask=mask).result(timeout=30)  # type: ignore[no-untyped-call]


def test_internal_only_ingress_refuses_the_public_path_with_404(fresh_lab: Lab) -> None:
    assert front(fresh_lab, "/auth/status").status_code == 200
    set_ingress(fresh_lab, PRIMARY, "auth-service", "INGRESS_TRAFFIC_INTERNAL_ONLY")

    refused = front(fresh_lab, "/auth/status")
    assert refused.status_code == 404
    assert refused.headers["x-lab-refused-by"] == "ingress of auth-service"
    assert front(fresh_lab, "/health").status_code == 404  # the whole app needs every service
    assert front(fresh_lab, "/ai/status").status_code == 200  # another service still admits
    # The region's own address stands for a caller inside the VPC: ingress admits it.
    assert region(fresh_lab, PRIMARY.name, "/auth/status").status_code == 200

    # Behind the load balancer, "internal and Cloud Load Balancing" admits the front door.
    set_ingress(fresh_lab, PRIMARY, "auth-service", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER")
    assert front(fresh_lab, "/auth/status").status_code == 200
    set_ingress(fresh_lab, PRIMARY, "auth-service", "INGRESS_TRAFFIC_ALL")
    assert front(fresh_lab, "/health").status_code == 200


def test_front_door_routes_by_dns_and_caches_version(fresh_lab: Lab) -> None:
    first = front(fresh_lab, "/version")
    assert first.json()["region"] == PRIMARY.name
    assert first.headers["x-lab-cache"] == "MISS"
    assert front(fresh_lab, "/version").headers["x-lab-cache"] == "HIT"
    assert front(fresh_lab, "/health").headers["x-lab-cache"] == "MISS"  # never cached


def test_outage_takes_the_primary_down(fresh_lab: Lab) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    assert region(fresh_lab, PRIMARY.name, "/health").status_code == 503
    assert front(fresh_lab, "/health").status_code == 503
    fresh_lab.outage(PRIMARY.name, False)
    assert front(fresh_lab, "/health").status_code == 200


def test_unknown_region_outage_is_refused(lab: Lab) -> None:
    response = httpx.post(
        f"{lab.control}/_lab/outage", json={"region": "mars-north1", "down": True}, timeout=10
    )
    assert response.status_code == 400
    assert "region" in response.json()["error"]


def test_dns_switch_then_purge_moves_the_front_door(fresh_lab: Lab) -> None:
    """A DNS change moves uncached paths a moment after it is done (the front door's
    resolver keeps the old answer for its TTL, capped); the cached /version moves only
    after a purge."""
    # The resolver holds an answer 10 s here (the suite's default is 0.2 s), so the window
    # between "done" and the front door seeing it is wide enough to observe.
    fresh_lab.post("config", {"latency": {"dns.resolver_cache": 10 / TIME_SCALE}})
    clients = fresh_lab.clients()
    assert front(fresh_lab, "/version").json()["region"] == PRIMARY.name  # now cached
    zone = clients.dns(TOPOLOGY.dns.project).zone(TOPOLOGY.dns.zone, TOPOLOGY.dns.dns_name)
    old = zone.resource_record_set(RECORD.name, "A", RECORD.ttl, RECORD.rrdatas[RegionRole.primary])
    new = zone.resource_record_set(RECORD.name, "A", 60, RECORD.rrdatas[RegionRole.secondary])
    change = zone.changes()
    change.delete_record_set(old)
    change.add_record_set(new)
    change.create()

    def switched() -> bool:
        change.reload()
        return change.status == "done"

    wait_for(switched, timeout=20, what="DNS change done")
    assert front(fresh_lab, "/health").headers["x-lab-region"] == PRIMARY.name  # resolver
    wait_for(
        lambda: front(fresh_lab, "/health").headers["x-lab-region"] == SECONDARY.name,
        timeout=30,
        what="the resolver's cached answer to expire",
    )
    assert front(fresh_lab, "/version").json()["region"] == PRIMARY.name  # stale cache

    from google.cloud import compute_v1

    operation = clients.url_maps.invalidate_cache_unary(
        project=TOPOLOGY.cdn.project,
        url_map=TOPOLOGY.cdn.url_map,
        cache_invalidation_rule_resource=compute_v1.CacheInvalidationRule(path="/*", host=HOST),
    )
    wait_for(
        lambda: front(fresh_lab, "/version").json()["region"] == SECONDARY.name,
        timeout=20,
        what="purge effect",
    )
    status = clients.global_operations.get(project=TOPOLOGY.cdn.project, operation=operation.name)
    # The purge took effect long before its operation finishes (10 s vs 600 s modelled).
    assert status.status != compute_v1.Operation.Status.DONE


def test_fault_injection_reaches_a_real_client(fresh_lab: Lab) -> None:
    clients = fresh_lab.clients()
    fresh_lab.fault(api="dns", method="GET", path="managedZones", status=403, count=1)
    zone = clients.dns(TOPOLOGY.dns.project).zone(TOPOLOGY.dns.zone)
    with pytest.raises(gexc.Forbidden):
        zone.reload()
    zone.reload()  # count=1: the next call goes through
    assert zone.dns_name == TOPOLOGY.dns.dns_name
    injected = [e for e in fresh_lab.requests(api="dns") if e["injected"]]
    assert [e["status"] for e in injected] == [403]


def test_request_log_records_real_client_calls(fresh_lab: Lab) -> None:
    since = fresh_lab.last_seq()
    replica = TOPOLOGY.cloud_sql.replica
    fresh_lab.clients().sql.call(
        lambda s: s.instances().get(project=replica.project, instance=replica.instance), timeout=10
    )
    entries = fresh_lab.requests(api="sql", since=since)
    path = f"/v1/projects/{replica.project}/instances/{replica.instance}"
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [("GET", path, 200)]


def test_sql_instances_are_real_postgres_at_their_reported_address(fresh_lab: Lab) -> None:
    where = TOPOLOGY.cloud_sql.replica
    replica = fresh_lab.clients().sql.call(
        lambda s: s.instances().get(project=where.project, instance=where.instance), timeout=10
    )
    address = replica["ipAddresses"][0]["ipAddress"]
    assert address.startswith(TEST_PG_PREFIX)
    with psycopg.connect(
        host=address, user="postgres", dbname="varai_prod", connect_timeout=5
    ) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert conn.execute("SELECT COUNT(*) FROM users").fetchone() == (500,)


def test_mongo_is_seeded(lab: Lab) -> None:
    with MongoClient(lab.endpoints["mongodb_uri"], serverSelectionTimeoutMS=5000) as client:
        names = set(client.varai.list_collection_names())
        assert {"sessions", "products", "analytics"} <= names
        assert client.varai.products.count_documents({}) == 200


def test_reset_restores_the_seeded_topology(lab: Lab) -> None:
    lab.outage(PRIMARY.name, True)
    lab.fault(api="run", status=500)
    lab.reset()
    state = lab.state()
    assert state["outages"] == [] and state["faults"] == []
    assert front(lab, "/health").status_code == 200


def test_lab_up_again_says_it_is_running(lab: Lab) -> None:
    result = lifeboat("lab", "up", "--dir", str(lab.root))
    assert result.returncode == 0
    assert "already running" in result.stdout


def test_port_in_use_is_a_clear_error(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = lifeboat(
            "lab", "up", "--dir", str(tmp_path), "--base-port", str(port), "--no-prefect"
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "already in use" in result.stderr


# -- the apps' database URL, read from Secret Manager -----------------------------------

ORDERS_SERVICE = "recommendation-service"


def order(lab: Lab, order_id: str) -> httpx.Response:
    return httpx.post(
        f"{lab.endpoints['front_door']}/orders",
        json={"id": order_id},
        headers={"host": HOST},
        timeout=15,
    )


def address(lab: Lab, instance: str) -> str:
    return instance_address(lab, TOPOLOGY.cloud_sql.primary.project, instance)


def point_secret_at(lab: Lab, instance: str) -> str:
    """Add a version naming ``instance``, as `gcloud secrets versions add` would; its number."""
    url = f"postgresql://varai_user@{address(lab, instance)}:5432/varai_prod"
    added = lab.clients().secret_manager.add_secret_version(
        request={
            "parent": TOPOLOGY.cloud_sql.app_secret.resource,
            "payload": {"data": url.encode()},
        }
    )
    return str(added.name.rsplit("/", 1)[-1])


def rows(lab: Lab, instance: str, order_id: str) -> list[tuple]:
    return sql(
        lab,
        TOPOLOGY.cloud_sql.primary.project,
        instance,
        f"SELECT id FROM orders WHERE id = '{order_id}'",
    )


def test_the_app_writes_where_its_secret_points(fresh_lab: Lab) -> None:
    primary = TOPOLOGY.cloud_sql.primary.instance
    replica = TOPOLOGY.cloud_sql.replica.instance
    made = order(fresh_lab, "o-1")
    assert made.status_code == 201, made.text
    assert made.json()["database"].startswith(address(fresh_lab, primary))
    assert rows(fresh_lab, primary, "o-1") == [("o-1",)]
    got = httpx.get(
        f"{fresh_lab.endpoints['front_door']}/orders/o-1", headers={"host": HOST}, timeout=10
    )
    assert got.status_code == 200 and got.json()["id"] == "o-1"
    assert order(fresh_lab, "o-1").status_code == 409  # the id makes a retry safe

    # The bad path: the secret names the wrong instance (the read-only replica). The
    # seeded services that read it from a volume at `latest` follow at once and fail.
    point_secret_at(fresh_lab, replica)
    refused = front(fresh_lab, "/auth/status")
    assert refused.status_code == 503 and "does not accept writes" in refused.json()["reason"]
    health = front(fresh_lab, "/health")
    assert health.status_code == 503 and "does not accept writes" in health.json()["reason"]
    assert "varai_user@" not in health.text  # the URL never shows, only host:port/db
    # The orders service takes it as an env var at `latest` (the seed's one such service):
    # its running instances keep the URL they started with, so its writes still land.
    kept = order(fresh_lab, "o-2")
    assert kept.status_code == 201 and rows(fresh_lab, primary, "o-2") == [("o-2",)]
    seeded = fresh_lab.state()["backends"]["app_instances"]
    sources = {key.split("/")[2]: v["source"] for key, v in seeded.items()}
    secret = TOPOLOGY.cloud_sql.app_secret.resource
    assert sources[ORDERS_SERVICE] == f"env-secret {secret}:latest"
    assert sources["auth-service"] == f"volume-secret {secret}:latest"

    point_secret_at(fresh_lab, primary)
    assert front(fresh_lab, "/auth/status").status_code == 200
    assert order(fresh_lab, "o-3").status_code == 201


def test_env_var_instances_keep_their_url_until_they_restart(fresh_lab: Lab) -> None:
    primary = TOPOLOGY.cloud_sql.primary.instance
    replica = TOPOLOGY.cloud_sql.replica.instance
    take_secret_as_env_var(fresh_lab, PRIMARY.name, ORDERS_SERVICE, "latest")
    # A new version after the instances started does not reach them: they keep theirs.
    pinned = point_secret_at(fresh_lab, replica)
    kept = order(fresh_lab, "e-1")
    assert kept.status_code == 201 and rows(fresh_lab, primary, "e-1") == [("e-1",)]
    # A new revision restarts them: they read `latest` (the replica) and writes fail.
    take_secret_as_env_var(fresh_lab, PRIMARY.name, ORDERS_SERVICE, "latest")
    assert order(fresh_lab, "e-2").status_code == 503
    # Pinned to version 1 (the seeded primary), the next revision's instances write again.
    take_secret_as_env_var(fresh_lab, PRIMARY.name, ORDERS_SERVICE, "1")
    assert order(fresh_lab, "e-2").status_code == 201
    assert pinned == "2"
    # An env var that cannot be read stops the instances from starting at all.
    take_secret_as_env_var(fresh_lab, PRIMARY.name, ORDERS_SERVICE, "9")
    failed = order(fresh_lab, "e-3")
    assert failed.status_code == 503 and "did not start" in failed.json()["reason"]


def test_an_app_whose_database_region_is_down_cannot_write(fresh_lab: Lab) -> None:
    # The secondary's services name the primary's database until a failover; with
    # us-central1 down that database does not answer, whatever the secret says.
    fresh_lab.outage(PRIMARY.name, True)
    reply = region(fresh_lab, SECONDARY.name, "/recommendations/status")
    assert reply.status_code == 503


def _pages(url: str, key: str, params: dict[str, str] | None = None) -> list[list[str]]:
    """Every page of a raw list call, following nextPageToken; each item by its name (and
    type, where it has one)."""
    pages: list[list[str]] = []
    token = ""
    while True:
        query = dict(params or {}) | ({"pageToken": token} if token else {})
        response = httpx.get(url, params=query, timeout=30)
        response.raise_for_status()  # an outage another test left would hide the pages
        body = response.json()
        # A record set is known by name and type (the apex has an SOA and an NS set).
        pages.append(
            [
                f"{item.get('name', item.get('id', ''))} {item.get('type', '')}"
                for item in body.get(key, [])
            ]
        )
        token = body.get("nextPageToken", "")
        if not token:
            return pages


def test_every_list_comes_in_small_pages(fresh_lab: Lab) -> None:
    """Google's lists "may return fewer results than requested" (AIP-158): the lab serves
    at most LabSettings.page_cap a page, asked or not, so a client that reads only the
    first page misses items in every API Lifeboat lists."""
    cap = LabSettings.model_fields["page_cap"].default
    e, p, dr = fresh_lab.endpoints, PRIMARY.project, SECONDARY.project
    lists = {
        "dns rrsets": (
            f"{e['dns']}/dns/v1/projects/{p}/managedZones/{TOPOLOGY.dns.zone}/rrsets",
            "rrsets",
            {},
        ),
        "run services": (
            f"{e['run']}/v2/projects/{p}/locations/{PRIMARY.name}/services",
            "services",
            {},
        ),
        "sql instances": (f"{e['sql']}/v1/projects/{p}/instances", "items", {}),
        "compute urlMaps": (
            f"{e['compute']}/compute/v1/projects/{p}/global/urlMaps",
            "items",
            {"maxResults": "500"},
        ),
        "compute backendServices": (
            f"{e['compute']}/compute/v1/projects/{TOPOLOGY.cdn.project}/global/backendServices",
            "items",
            {"maxResults": "500"},
        ),
        "storage buckets": (f"{e['storage']}/storage/v1/b", "items", {"project": dr}),
        "secrets": (
            f"{e['secretmanager']}/v1/projects/{dr}/secrets",
            "secrets",
            {"pageSize": "100"},
        ),
    }
    paged = []
    for what, (url, key, params) in lists.items():
        pages = _pages(url, key, params)
        names = [name for page in pages for name in page]
        assert all(len(page) <= cap for page in pages), (what, pages)
        assert len(names) == len(set(names)), (what, names)  # the tokens neither skip nor repeat
        if len(pages) > 1:
            paged.append(what)
    # The seeded lab has more than a page of these; a single-page reader would miss some.
    assert {"dns rrsets", "run services"} <= set(paged), paged
