"""Contract tests: google-cloud-dns against the lab's Cloud DNS emulator."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import dns

from lab.core.context import LabContext
from lab.core.faults import FaultRule
from lab.dns import DnsBackend, create
from tests.discovery import assert_valid

PROJECT = "ml-datadriven-recos"
ZONE = "varai-ai-zone"
API = "api.varai.ai."
PRIMARY, SECONDARY = ["34.120.10.10"], ["34.140.20.20"]


@pytest.fixture
def seeded(lab_ctx: LabContext, serve: Callable[..., str]) -> tuple[DnsBackend, str]:
    backend, app = create(lab_ctx)
    backend.create_zone(PROJECT, ZONE, "varai.ai.", "seeded")
    backend.set_rrset(PROJECT, ZONE, API, "A", 300, PRIMARY)
    return backend, serve(app, "dns")


@pytest.fixture
def zone(seeded: tuple[DnsBackend, str]) -> Any:
    client = dns.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=seeded[1]),
    )
    return client.zone(ZONE, "varai.ai.")


def zone_url(base: str, zone: str = ZONE) -> str:
    return f"{base}/dns/v1/projects/{PROJECT}/managedZones/{zone}"


def wait_done(change: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while change.status != "done":
        assert time.monotonic() < deadline, f"change {change.name} still {change.status}"
        time.sleep(0.01)
        change.reload()


def logged(ctx: LabContext, api: str, since: int, count: int) -> list[Any]:
    """The calls logged since ``since``; the log is written just after the reply is sent."""
    deadline = time.monotonic() + 2
    while len(entries := ctx.requests.entries(api=api, since=since)) < count:
        assert time.monotonic() < deadline, entries
        time.sleep(0.005)
    return entries


def switch_to_secondary(zone: Any, ttl: int = 300) -> Any:
    change = zone.changes()
    change.delete_record_set(zone.resource_record_set(API, "A", 300, PRIMARY))
    change.add_record_set(zone.resource_record_set(API, "A", ttl, SECONDARY))
    change.create()
    return change


def test_zone_create_get_and_list(seeded: tuple[DnsBackend, str], zone: Any) -> None:
    other = zone._client.zone("staging-zone", "staging.varai.ai.", description="staging")
    other.create()
    assert other.zone_id and other.name_servers

    zone.reload()
    assert zone.dns_name == "varai.ai." and zone.description == "seeded"
    assert {z.name for z in zone._client.list_zones()} == {ZONE, "staging-zone"}
    with pytest.raises(exceptions.Conflict):
        other.create()

    body = httpx.get(zone_url(seeded[1])).json()
    assert_valid("dns.v1", "ManagedZone", body)
    listing = httpx.get(f"{seeded[1]}/dns/v1/projects/{PROJECT}/managedZones").json()
    assert_valid("dns.v1", "ManagedZonesListResponse", listing)


def test_change_is_pending_then_done(seeded: tuple[DnsBackend, str], zone: Any) -> None:
    backend, base = seeded
    change = switch_to_secondary(zone, ttl=60)

    assert change.status == "pending" and change.name == "1"
    # Until the change is done, the name servers still answer with the old record.
    assert backend.get_rrset(PROJECT, ZONE, API, "A") == {
        "kind": "dns#resourceRecordSet",
        "name": API,
        "type": "A",
        "ttl": 300,
        "rrdatas": PRIMARY,
    }
    wait_done(change)
    assert backend.find_rrset("api.varai.ai", "A") == backend.get_rrset(PROJECT, ZONE, API, "A")
    assert backend.find_rrset(API, "A")["rrdatas"] == SECONDARY  # type: ignore[index]
    current = [(r.name, r.record_type, r.ttl, r.rrdatas) for r in zone.list_resource_record_sets()]
    assert (API, "A", 60, SECONDARY) in current

    raw = httpx.get(f"{zone_url(base)}/changes/1").json()
    assert_valid("dns.v1", "Change", raw)
    assert raw["status"] == "done" and raw["additions"][0]["ttl"] == 60


def test_checks_see_pending_changes(zone: Any) -> None:
    first = switch_to_secondary(zone)
    # Deleting what the pending change adds is valid: changes are ordered, not racing.
    back = zone.changes()
    back.delete_record_set(zone.resource_record_set(API, "A", 300, SECONDARY))
    back.add_record_set(zone.resource_record_set(API, "A", 300, PRIMARY))
    back.create()
    wait_done(back)
    first.reload()
    assert first.status == "done"
    assert [c.name for c in zone.list_changes()] == ["0", "1", "2"]


def test_stale_deletion_is_412_and_applies_nothing(
    seeded: tuple[DnsBackend, str], zone: Any
) -> None:
    backend, _ = seeded
    change = zone.changes()
    change.add_record_set(zone.resource_record_set("www.varai.ai.", "CNAME", 300, [API]))
    change.delete_record_set(zone.resource_record_set(API, "A", 60, PRIMARY))  # TTL is 300

    with pytest.raises(exceptions.PreconditionFailed) as caught:
        change.create()

    assert caught.value.errors[0]["reason"] == "conditionNotMet"
    assert backend.get_rrset(PROJECT, ZONE, "www.varai.ai.", "CNAME") is None
    assert backend.get_rrset(PROJECT, ZONE, API, "A")["ttl"] == 300  # type: ignore[index]
    assert [c.name for c in zone.list_changes()] == ["0"]


def test_colliding_addition_is_409(zone: Any) -> None:
    change = zone.changes()
    change.add_record_set(zone.resource_record_set(API, "A", 60, SECONDARY))
    with pytest.raises(exceptions.Conflict) as caught:
        change.create()
    assert caught.value.errors[0]["reason"] == "alreadyExists"


def test_bad_changes_are_400(seeded: tuple[DnsBackend, str], zone: Any) -> None:
    too_many = zone.changes()
    for i in range(1001):
        too_many.add_record_set(zone.resource_record_set(f"h{i}.varai.ai.", "A", 60, PRIMARY))
    with pytest.raises(exceptions.BadRequest):
        too_many.create()

    outside = zone.changes()
    outside.add_record_set(zone.resource_record_set("api.example.com.", "A", 60, PRIMARY))
    with pytest.raises(exceptions.BadRequest):
        outside.create()


def test_unknown_zone_and_change_are_404(seeded: tuple[DnsBackend, str], zone: Any) -> None:
    missing = zone._client.zone("no-such-zone", "nowhere.ai.")
    assert not missing.exists()
    with pytest.raises(exceptions.NotFound):
        missing.reload()
    with pytest.raises(exceptions.NotFound):
        list(missing.list_resource_record_sets())

    reply = httpx.get(f"{zone_url(seeded[1])}/changes/99")
    assert reply.status_code == 404
    assert reply.json()["error"]["errors"][0]["reason"] == "notFound"


def test_rrsets_pagination_and_filters(seeded: tuple[DnsBackend, str], zone: Any) -> None:
    backend, base = seeded
    for i in range(150):
        backend.set_rrset(PROJECT, ZONE, f"r{i}.varai.ai.", "TXT", 300, [f'"{i}"'])

    # The client follows nextPageToken: 150 TXT + A + the apex SOA and NS, 100 a page.
    pages = list(zone.list_resource_record_sets().pages)
    assert [p.num_items for p in pages] == [100, 53]
    assert len(list(zone.list_resource_record_sets(max_results=3))) == 3

    first = httpx.get(f"{zone_url(base)}/rrsets", params={"maxResults": 3}).json()
    assert_valid("dns.v1", "ResourceRecordSetsListResponse", first)
    assert len(first["rrsets"]) == 3 and first["nextPageToken"]

    query = {"name": API, "type": "A"}
    only = httpx.get(f"{zone_url(base)}/rrsets", params=query).json()
    assert_valid("dns.v1", "ResourceRecordSetsListResponse", only)
    assert [(r["name"], r["type"]) for r in only["rrsets"]] == [(API, "A")]
    assert "nextPageToken" not in only

    changes = httpx.get(f"{zone_url(base)}/changes", params={"sortOrder": "descending"}).json()
    assert_valid("dns.v1", "ChangesListResponse", changes)


def test_injected_fault_reaches_the_client(
    lab_ctx: LabContext, seeded: tuple[DnsBackend, str], zone: Any
) -> None:
    since = lab_ctx.requests.last_seq
    lab_ctx.faults.add(FaultRule(api="dns", method="POST", path="changes", status=503, count=1))

    with pytest.raises(exceptions.ServiceUnavailable):
        switch_to_secondary(zone)
    wait_done(switch_to_secondary(zone))  # the fault had count=1; the retry goes through

    posts = [e for e in logged(lab_ctx, "dns", since, 2) if e.method == "POST"]
    assert [(e.status, e.injected) for e in posts] == [(503, True), (200, False)]
    assert all(e.path.endswith(f"/managedZones/{ZONE}/changes") for e in posts)


def test_reset_forgets_every_zone(seeded: tuple[DnsBackend, str], zone: Any) -> None:
    switch_to_secondary(zone)
    seeded[0].reset()
    assert seeded[0].find_rrset(API, "A") is None
    assert not zone.exists()
