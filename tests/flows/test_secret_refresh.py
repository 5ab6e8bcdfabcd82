"""Running instances that read the apps' secret as an env var see a new version.

The lab seeds the orders service (recommendation-service, behind ``POST /orders``) with
the database URL as an env var at ``latest``, the others with a volume at ``latest``
(lab/seed.py). An env var is resolved when an instance starts (run/docs/configuring/secrets),
so after a new version only a new revision reaches the instances already running.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from google.cloud import run_v2

from lab.prefect_api import PrefectApi
from tests.flows.lab_checks import (
    PRIMARY,
    SECONDARY,
    TOPOLOGY,
    app_secret_value,
    incident,
    instance_address,
    read_object,
    revisions,
    service_name,
    set_app_secret,
    sql,
    take_secret_as_env_var,
)
from tests.labharness import Lab

OLD = TOPOLOGY.cloud_sql.primary
REPLICA = TOPOLOGY.cloud_sql.replica
ORDERS = "recommendation-service"  # lab/regions/app.py ORDERS_SERVICE
VOLUME_SERVICES = [s.name for s in TOPOLOGY.services if s.name != ORDERS]
ROLLED_FOR = "lifeboat.dev/database-secret-version"


def _patches(lab: Lab, since: int, region: Any, service: str) -> int:
    """Successful UpdateService calls (PATCH) on one service since ``since``."""
    path = service_name(region, service)
    return sum(
        1
        for e in lab.requests(api="run", method="PATCH", since=since)
        if e["path"].endswith(path) and e["status"] < 400
    )


def _attempts(lab: Lab, since: int, region: Any, service: str) -> list[int]:
    path = service_name(region, service)
    return [
        e["status"]
        for e in lab.requests(api="run", method="PATCH", since=since)
        if e["path"].endswith(path)
    ]


def _order_via(lab: Lab, region: Any, order_id: str) -> httpx.Response:
    """A write from a client whose resolver still caches ``region``'s address (stale DNS)."""
    return httpx.post(
        f"{lab.endpoints['region_apps'][region.name]}/orders",
        json={"id": order_id, "sku": "VR-00042"},
        headers={"host": TOPOLOGY.health.host},
        timeout=15,
    )


def _latest_version(lab: Lab) -> str:
    got = lab.clients().secret_manager.get_secret_version(
        name=f"{TOPOLOGY.cloud_sql.app_secret.resource}/versions/latest"
    )
    return str(got.name)


def _new_version(lab: Lab) -> str:
    """Add a version with the value the secret holds now (as a re-run of seed 004 would)."""
    set_app_secret(lab, app_secret_value(lab))
    return _latest_version(lab)


def _refresh(region: Any, service: str, version: str) -> Any:
    """Run the task as the flows do: in a flow run (its retries, its logger)."""
    from prefect import flow

    from tasks.cloud_run_secrets import run_refresh_secret_readers

    @flow(name="test-refresh-secret-readers")
    def refresh() -> Any:
        return run_refresh_secret_readers("lab", region.project, region.name, service, version)

    return refresh()


def _write_once_the_fence_is_lifted(lab: Lab, order_id: str) -> httpx.Response:
    """Wait until the failback has fenced the secondary and lifted it, then write there."""
    client = lab.clients().run_services
    name = service_name(SECONDARY, ORDERS)
    fenced = False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        got = client.get_service(name=name)
        holds = "lifeboat.dev/fenced-by" in got.annotations
        if fenced and not holds and not got.reconciling:
            return _order_via(lab, SECONDARY, order_id)
        fenced = fenced or holds
        time.sleep(0.05)
    raise AssertionError("the failback never fenced and lifted the secondary")


def _template_annotation(lab: Lab, region: Any, service: str) -> str:
    got = lab.clients().run_services.get_service(name=service_name(region, service))
    return str(got.template.annotations.get(ROLLED_FOR, ""))


def test_failback_moves_the_secondarys_env_var_instances_to_the_final_primary(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    failover = api.launch("failover/lab", {"reason": "outage", "incident_id": incident("FO")})
    assert api.wait(failover["id"])["state"]["type"] == "COMPLETED"
    fresh_lab.outage(PRIMARY.name, False)
    # The secondary's orders instances started with the secondary's URL (an env var).
    secondary_at = instance_address(fresh_lab, REPLICA.project, REPLICA.instance)
    before = _order_via(fresh_lab, SECONDARY, f"{incident('pre').lower()}")
    assert before.status_code == 201 and before.json()["database"].startswith(f"{secondary_at}:")
    revisions_before = {
        (region.name, s.name): revisions(fresh_lab, region, s.name)
        for region in (PRIMARY, SECONDARY)
        for s in TOPOLOGY.services
    }

    since = fresh_lab.last_seq()
    inc = incident("FBENV")
    run_id = api.launch("failback/lab", {"reason": "primary back", "incident_id": inc})["id"]
    # A client with stale DNS (TTL 60 s) still reaches the secondary once the fence is
    # lifted, before the failback exports and rebuilds its database: write then.
    window_id = incident("window").lower()
    window = _write_once_the_fence_is_lifted(fresh_lab, window_id)
    final = api.wait(run_id, timeout=300)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]

    # That acknowledged write is on the final primary, not only in the export of the
    # instance the failback replaced by a replica.
    primary_at = instance_address(fresh_lab, OLD.project, OLD.instance)
    if window.status_code == 503:
        # Just after the fence is lifted, the failback turns PITR on on the new primary,
        # which restarts it (backups-on-new-primary): a write then is refused, not lost.
        # Only that restart may refuse it; the client's retry lands on the new primary.
        assert window.json()["reason"].startswith(f"database {primary_at}:"), window.text
        window = _order_via(fresh_lab, SECONDARY, window_id)
    assert window.status_code == 201, window.text
    assert window.json()["database"].startswith(f"{primary_at}:"), window.json()
    window_query = f"SELECT id FROM orders WHERE id = '{window_id}'"
    assert sql(fresh_lab, OLD.project, OLD.instance, window_query) == [(window_id,)]

    # And after the failback, as long as the instances that ran stay warm.
    order_id = incident("stale").lower()
    stale = _order_via(fresh_lab, SECONDARY, order_id)
    assert stale.status_code == 201, stale.text
    assert stale.json()["region"] == SECONDARY.name
    assert stale.json()["database"].startswith(f"{primary_at}:"), stale.json()
    query = f"SELECT id FROM orders WHERE id = '{order_id}'"
    assert sql(fresh_lab, OLD.project, OLD.instance, query) == [(order_id,)]
    # And through the primary too.
    fresh = _order_via(fresh_lab, PRIMARY, f"{order_id}-p")
    assert fresh.status_code == 201 and fresh.json()["database"].startswith(f"{primary_at}:")

    # One UpdateService per region for the env-var service (its roll), on top of what
    # every service gets (secondary: fence, lift, standby; primary: the service-level
    # scale-up); none for the volume-at-latest services. The primary's had one more, first:
    # the failover could not reach it, so its instances still named the stale primary the
    # failback exports and deletes, and it was rolled to the failover's version before.
    version = _latest_version(fresh_lab).rsplit("/", 1)[-1]
    for region, baseline, rolls in ((PRIMARY, 1, 2), (SECONDARY, 3, 1)):
        assert _patches(fresh_lab, since, region, ORDERS) == baseline + rolls, region.name
        for name in VOLUME_SERVICES:
            assert _patches(fresh_lab, since, region, name) == baseline, (region.name, name)
        assert _template_annotation(fresh_lab, region, ORDERS) == version
        new = set(revisions(fresh_lab, region, ORDERS)) - set(
            revisions_before[(region.name, ORDERS)]
        )
        assert len(new) == rolls, (region.name, new)
        for name in VOLUME_SERVICES:
            assert revisions(fresh_lab, region, name) == revisions_before[(region.name, name)]
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failback/{inc}.json")
    )
    steps = {s["name"]: s for s in record["steps"]}
    detail = steps["database-connection"]["detail"]
    assert f"{SECONDARY.name}/{ORDERS}: read it as an env var at latest: new revision" in detail
    assert f"{PRIMARY.name}/auth-service: reads it from a volume at latest" in detail
    names = [s["name"] for s in record["steps"]]
    assert names.index("repoint-primary-readers") < names.index("preserve-old-primary")
    # The primary scales up before the fence, outside the outage: its env-var instances
    # started then are replaced by the roll once the new version exists.
    assert names.index("scale-primary") < names.index("fence-secondary")
    assert names.index("promote") < names.index("database-connection")
    assert names.index("database-connection") < names.index("lift-fence")
    secret = TOPOLOGY.cloud_sql.app_secret.resource
    assert (
        f"roll a new revision of {SECONDARY.name}/{ORDERS}: it reads {secret} as an env var at "
        "latest, resolved at instance start"
    ) in record["plan"]
    assert (
        f"{SECONDARY.name}/auth-service reads {secret} from a volume at latest: follows at once"
    ) in record["plan"]


def test_refreshing_twice_makes_one_revision(fresh_lab: Lab) -> None:
    # ai-service pinned to version 1 (an env var), the orders service at latest.
    take_secret_as_env_var(fresh_lab, PRIMARY.name, "ai-service", "1")
    version = _new_version(fresh_lab)
    number = version.rsplit("/", 1)[-1]
    before = {s: revisions(fresh_lab, PRIMARY, s) for s in ("ai-service", ORDERS, "auth-service")}
    services = fresh_lab.clients().run_services
    untouched = services.get_service(name=service_name(PRIMARY, "ai-service"))
    since = fresh_lab.last_seq()

    def refresh(service: str) -> Any:
        return _refresh(PRIMARY, service, version)

    first = [refresh(s) for s in ("ai-service", ORDERS, "auth-service")]
    again = [refresh(s) for s in ("ai-service", ORDERS, "auth-service")]
    assert [r.changed for r in first] == [True, True, False]
    assert [r.changed for r in again] == [False, False, False]
    assert [r.reading for r in first] == ["env-pinned", "env-latest", "volume-latest"]
    assert _patches(fresh_lab, since, PRIMARY, "ai-service") == 1
    assert _patches(fresh_lab, since, PRIMARY, ORDERS) == 1
    assert _patches(fresh_lab, since, PRIMARY, "auth-service") == 0
    for service in ("ai-service", ORDERS):
        assert len(revisions(fresh_lab, PRIMARY, service)) == len(before[service]) + 1
    assert revisions(fresh_lab, PRIMARY, "auth-service") == before["auth-service"]
    got = services.get_service(name=service_name(PRIMARY, "ai-service"))
    assert got.template.containers[0].env[0].value_source.secret_key_ref.version == number
    # Only the template moved: scaling at both levels, ingress and traffic are as they were.
    for field in ("scaling", "ingress", "traffic", "annotations", "labels"):
        assert getattr(got, field) == getattr(untouched, field), field
    assert got.template.scaling == untouched.template.scaling
    assert got.template.annotations[ROLLED_FOR] == number
    # The orders service's new instances started with the new version and still write.
    assert _order_via(fresh_lab, PRIMARY, incident("twice").lower()).status_code == 201


def _pin_traffic(lab: Lab, region: Any, service: str) -> str:
    """Pin 100% of the traffic to the revision serving now (no LATEST target)."""
    client = lab.clients().run_services
    got = client.get_service(name=service_name(region, service))
    serving = got.latest_ready_revision.rsplit("/", 1)[-1]
    got.traffic = [
        run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
            revision=serving,
            percent=100,
        )
    ]
    client.update_service(service=got).result(timeout=30, polling=lab.clients().polling)  # type: ignore[no-untyped-call]
    return serving


def test_a_service_whose_traffic_is_pinned_is_left_alone_and_the_plan_says_why(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    _pin_traffic(fresh_lab, SECONDARY, ORDERS)
    inc = incident("PIN")
    final = api.wait(
        api.launch("failover/lab", {"reason": "plan", "incident_id": inc, "dry_run": True})["id"]
    )
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    plan = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.plan.json")
    )["plan"]
    (line,) = [p for p in plan if p.startswith(f"leave {SECONDARY.name}/{ORDERS} alone")]
    assert "its traffic is pinned to named revisions" in line
    assert "instances keep the URL they started with until they restart" in line
    assert "mount the secret as a volume at latest" in line
    # The primary answers (no outage): its services are read and planned too.
    assert any(p.startswith(f"roll a new revision of {PRIMARY.name}/{ORDERS}") for p in plan)

    before = revisions(fresh_lab, SECONDARY, ORDERS)
    since = fresh_lab.last_seq()
    result = _refresh(SECONDARY, ORDERS, _new_version(fresh_lab))
    assert not result.changed and result.action.startswith("left alone: ")
    assert "mount the secret as a volume at latest" in result.action
    assert _attempts(fresh_lab, since, SECONDARY, ORDERS) == []  # no call, traffic untouched
    assert revisions(fresh_lab, SECONDARY, ORDERS) == before


def test_throttled_or_unavailable_updates_are_retried(fresh_lab: Lab) -> None:
    version = _new_version(fresh_lab)
    before = revisions(fresh_lab, PRIMARY, ORDERS)
    since = fresh_lab.last_seq()
    fresh_lab.fault(api="run", method="PATCH", path=f"services/{ORDERS}", status=429, count=1)
    fresh_lab.fault(api="run", method="PATCH", path=f"services/{ORDERS}", status=503, count=1)
    result = _refresh(PRIMARY, ORDERS, version)
    assert result.changed
    assert _attempts(fresh_lab, since, PRIMARY, ORDERS) == [429, 503, 200]
    assert len(revisions(fresh_lab, PRIMARY, ORDERS)) == len(before) + 1


def test_a_permission_error_fails_fast_naming_the_service(fresh_lab: Lab) -> None:
    from tasks.errors import PermanentError

    version = _new_version(fresh_lab)
    since = fresh_lab.last_seq()
    fresh_lab.fault(api="run", method="PATCH", path=f"services/{ORDERS}", status=403, count=5)
    with pytest.raises(PermanentError) as failed:
        _refresh(PRIMARY, ORDERS, version)
    message = str(failed.value)
    assert "refresh-secret-readers" in message and service_name(PRIMARY, ORDERS) in message
    assert "403" in message
    assert _attempts(fresh_lab, since, PRIMARY, ORDERS) == [403]  # no retry
