"""Contract tests: google-cloud-secret-manager (REST transport) against the lab's emulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager_v1

from lab.core.context import LabContext
from lab.core.faults import FaultRule
from lab.secretmanager import SecretManagerBackend, create
from lab.secretmanager.models import project_number
from tests.discovery import assert_valid

PROJECT = "ml-datadriven-recos-dr"
PARENT = f"projects/{PROJECT}"
BOTH_REGIONS = ["us-central1", "us-east1"]


@pytest.fixture
def emulator(lab_ctx: LabContext, serve: Callable[..., str]) -> tuple[SecretManagerBackend, str]:
    backend, app = create(lab_ctx)
    return backend, serve(app, "secretmanager")


@pytest.fixture
def client(
    emulator: tuple[SecretManagerBackend, str],
) -> secretmanager_v1.SecretManagerServiceClient:
    return secretmanager_v1.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=emulator[1]),
    )


def user_managed(*locations: str) -> dict[str, Any]:
    return {"user_managed": {"replicas": [{"location": loc} for loc in locations]}}


def make_secret(
    client: secretmanager_v1.SecretManagerServiceClient,
    secret_id: str = "prod-database-url",
    replication: dict[str, Any] | None = None,
) -> secretmanager_v1.Secret:
    return client.create_secret(
        request={
            "parent": PARENT,
            "secret_id": secret_id,
            "secret": {"replication": replication or user_managed(*BOTH_REGIONS)},
        }
    )


def add(client: secretmanager_v1.SecretManagerServiceClient, secret: str, value: bytes) -> Any:
    return client.add_secret_version(request={"parent": secret, "payload": {"data": value}})


def raw(base: str, path: str, method: str = "GET", body: Any = None) -> dict[str, Any]:
    """The reply's JSON as the emulator sent it (the client would drop unknown fields)."""
    reply = httpx.request(method, f"{base}{path}", json=body, timeout=5)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def raw_error(base: str, path: str, method: str = "GET", body: Any = None) -> dict[str, Any]:
    reply = httpx.request(method, f"{base}{path}", json=body, timeout=5)
    assert reply.status_code >= 400
    return dict(reply.json()["error"])


def test_create_get_and_list_secrets_with_pages(
    client: secretmanager_v1.SecretManagerServiceClient,
) -> None:
    made = make_secret(client)
    # Google names secrets by project number, whatever the request said.
    number = project_number(PROJECT)
    assert made.name == f"projects/{number}/secrets/prod-database-url"
    assert [r.location for r in made.replication.user_managed.replicas] == BOTH_REGIONS
    for n in range(4):
        make_secret(client, f"other-{n}", {"automatic": {}})

    got = client.get_secret(name=f"{PARENT}/secrets/prod-database-url")
    assert got.name == made.name and got.etag == made.etag

    first = client.list_secrets(request={"parent": PARENT, "page_size": 2})
    page = next(iter(first.pages))
    assert len(page.secrets) == 2 and page.next_page_token and page.total_size == 5
    names = [s.name.rsplit("/", 1)[-1] for s in first]
    assert names == ["prod-database-url", "other-0", "other-1", "other-2", "other-3"]


def test_create_errors_are_googles(
    client: secretmanager_v1.SecretManagerServiceClient, emulator: tuple[Any, str]
) -> None:
    make_secret(client)
    with pytest.raises(exceptions.Conflict, match="already exists"):
        make_secret(client)
    assert raw_error(
        emulator[1],
        f"/v1/{PARENT}/secrets?secretId=prod-database-url",
        "POST",
        {"replication": {"automatic": {}}},
    ) == {
        "code": 409,
        "message": f"Secret [projects/{project_number(PROJECT)}/secrets/prod-database-url] "
        "already exists.",
        "status": "ALREADY_EXISTS",
    }
    with pytest.raises(exceptions.BadRequest, match="Invalid secret id"):
        make_secret(client, "no spaces allowed")
    with pytest.raises(exceptions.BadRequest, match="replication is required"):
        client.create_secret(request={"parent": PARENT, "secret_id": "x", "secret": {}})
    with pytest.raises(exceptions.BadRequest, match="replicas must not be empty"):
        make_secret(client, "y", {"user_managed": {"replicas": []}})
    with pytest.raises(exceptions.NotFound):
        client.get_secret(name=f"{PARENT}/secrets/missing")


def test_versions_add_access_and_the_latest_alias(
    client: secretmanager_v1.SecretManagerServiceClient,
) -> None:
    secret = make_secret(client).name
    v1 = add(client, secret, b"postgresql://varai_user@10.0.0.2:5432/varai_prod")
    v2 = add(client, secret, b"postgresql://varai_user@10.0.0.3:5432/varai_prod")
    assert (v1.name.rsplit("/", 1)[-1], v2.name.rsplit("/", 1)[-1]) == ("1", "2")
    assert v2.state == secretmanager_v1.SecretVersion.State.ENABLED
    assert [r.location for r in v2.replication_status.user_managed.replicas] == BOTH_REGIONS

    latest = client.access_secret_version(
        name=f"{PARENT}/secrets/prod-database-url/versions/latest"
    )
    # The alias resolves: the reply names the version it read.
    assert latest.name == v2.name and latest.payload.data.endswith(b"10.0.0.3:5432/varai_prod")
    pinned = client.access_secret_version(name=v1.name)
    assert pinned.payload.data.endswith(b"10.0.0.2:5432/varai_prod")
    got = client.get_secret_version(name=f"{secret}/versions/latest")
    assert got.name == v2.name


def test_versions_list_newest_first_in_pages(
    client: secretmanager_v1.SecretManagerServiceClient, emulator: tuple[Any, str]
) -> None:
    secret = make_secret(client).name
    for n in range(5):
        add(client, secret, f"value {n}".encode())
    pager = client.list_secret_versions(request={"parent": secret, "page_size": 2})
    first = next(iter(pager.pages))
    assert first.total_size == 5 and first.next_page_token
    assert [v.name.rsplit("/", 1)[-1] for v in pager] == ["5", "4", "3", "2", "1"]
    error = raw_error(emulator[1], f"/v1/{PARENT}/secrets/prod-database-url/versions?pageToken=%%")
    assert error["status"] == "INVALID_ARGUMENT"


def test_disabled_or_destroyed_versions_cannot_be_read_and_latest_never_falls_back(
    client: secretmanager_v1.SecretManagerServiceClient, emulator: tuple[Any, str]
) -> None:
    secret = make_secret(client).name
    add(client, secret, b"old")
    newest = add(client, secret, b"new")
    disabled = client.disable_secret_version(name=newest.name)
    assert disabled.state == secretmanager_v1.SecretVersion.State.DISABLED
    assert disabled.etag != newest.etag
    with pytest.raises(exceptions.BadRequest, match="is in DISABLED state"):
        client.access_secret_version(name=f"{secret}/versions/latest")
    path = f"/v1/{PARENT}/secrets/prod-database-url/versions/latest:access"
    assert raw_error(emulator[1], path)["status"] == "FAILED_PRECONDITION"

    client.enable_secret_version(name=newest.name)
    assert client.access_secret_version(name=f"{secret}/versions/latest").payload.data == b"new"

    destroyed = client.destroy_secret_version(name=newest.name)
    assert destroyed.state == secretmanager_v1.SecretVersion.State.DESTROYED
    assert destroyed.destroy_time
    with pytest.raises(exceptions.BadRequest, match="is in DESTROYED state"):
        client.access_secret_version(name=f"{secret}/versions/latest")
    # DESTROYED is final.
    with pytest.raises(exceptions.BadRequest, match="DESTROYED"):
        client.enable_secret_version(name=newest.name)
    with pytest.raises(exceptions.BadRequest, match="DESTROYED"):
        client.destroy_secret_version(name=newest.name)
    # A stale etag is refused and changes nothing.
    old = client.get_secret_version(name=f"{secret}/versions/1")
    with pytest.raises(exceptions.BadRequest, match="etag"):
        client.disable_secret_version(request={"name": old.name, "etag": '"stale"'})
    assert client.access_secret_version(name=old.name).payload.data == b"old"


def test_missing_versions_and_bad_payloads(
    client: secretmanager_v1.SecretManagerServiceClient,
) -> None:
    secret = make_secret(client).name
    with pytest.raises(exceptions.NotFound, match="has no versions"):
        client.access_secret_version(name=f"{secret}/versions/latest")
    add(client, secret, b"x")
    with pytest.raises(exceptions.NotFound, match="versions/9"):
        client.access_secret_version(name=f"{secret}/versions/9")
    with pytest.raises(exceptions.NotFound):
        add(client, f"{PARENT}/secrets/missing", b"x")
    with pytest.raises(exceptions.BadRequest, match="Checksum mismatch"):
        client.add_secret_version(
            request={"parent": secret, "payload": {"data": b"abc", "data_crc32c": 1}}
        )
    with pytest.raises(exceptions.BadRequest, match="limit"):
        add(client, secret, b"x" * (64 * 1024 + 1))
    assert len(list(client.list_secret_versions(parent=secret))) == 1


def test_user_managed_replicas_survive_one_regional_outage(
    client: secretmanager_v1.SecretManagerServiceClient, lab_ctx: LabContext
) -> None:
    both = make_secret(client).name
    one = make_secret(client, "one-region", user_managed("us-central1")).name
    auto = make_secret(client, "automatic", {"automatic": {}}).name
    for secret in (both, one, auto):
        add(client, secret, b"v")
    lab_ctx.set_outage("us-central1", True)
    assert client.access_secret_version(name=f"{both}/versions/latest").payload.data == b"v"
    assert client.access_secret_version(name=f"{auto}/versions/latest").payload.data == b"v"
    with pytest.raises(exceptions.ServiceUnavailable, match="every replica location"):
        client.access_secret_version(name=f"{one}/versions/latest", retry=None)
    with pytest.raises(exceptions.ServiceUnavailable):
        add(client, one, b"w")


def test_injected_fault_reaches_the_client_and_is_logged(
    client: secretmanager_v1.SecretManagerServiceClient, lab_ctx: LabContext
) -> None:
    secret = make_secret(client).name
    lab_ctx.faults.add(FaultRule(api="secretmanager", method="POST", path="addVersion", status=503))
    since = lab_ctx.requests.entries()[-1].seq
    # addVersion has no default retry in the library: the 503 surfaces at once.
    with pytest.raises(exceptions.ServiceUnavailable):
        add(client, secret, b"x")
    entries = lab_ctx.requests.entries(api="secretmanager", since=since)
    assert [(e.method, e.status, e.injected) for e in entries] == [("POST", 503, True)]
    lab_ctx.faults.clear()
    assert len(list(client.list_secret_versions(parent=secret))) == 0


def test_every_reply_matches_the_discovery_schema(emulator: tuple[Any, str]) -> None:
    base, secrets = emulator[1], f"/v1/{PARENT}/secrets"
    secret = f"{secrets}/prod-database-url"
    replication = {"userManaged": {"replicas": [{"location": r} for r in BOTH_REGIONS]}}
    checks = [
        ("Secret", raw(base, f"{secrets}?secretId=prod-database-url", "POST",
                       {"replication": replication, "labels": {"app": "varai"}})),
        ("Secret", raw(base, f"{secrets}?secretId=auto", "POST",
                       {"replication": {"automatic": {}}})),
        ("SecretVersion", raw(base, f"{secret}:addVersion", "POST",
                              {"payload": {"data": "YQ==", "dataCrc32c": "3251651376"}})),
        ("SecretVersion", raw(base, f"{secret}:addVersion", "POST", {"payload": {"data": "Yg=="}})),
        ("Secret", raw(base, secret)),
        ("ListSecretsResponse", raw(base, f"{secrets}?pageSize=1")),
        ("SecretVersion", raw(base, f"{secret}/versions/latest")),
        ("ListSecretVersionsResponse", raw(base, f"{secret}/versions?pageSize=1")),
        ("AccessSecretVersionResponse", raw(base, f"{secret}/versions/1:access")),
        ("SecretVersion", raw(base, f"{secret}/versions/1:disable", "POST", {})),
        ("SecretVersion", raw(base, f"{secret}/versions/1:enable", "POST", {})),
        ("SecretVersion", raw(base, f"{secret}/versions/1:destroy", "POST", {})),
        ("Empty", raw(base, f"{secrets}/auto", "DELETE")),
    ]  # fmt: skip
    for schema, body in checks:
        assert_valid("secretmanager.v1", schema, body)
    # The bad path: a reply with a field Google does not have fails the same check.
    with pytest.raises(Exception, match="Additional properties"):
        assert_valid("secretmanager.v1", "SecretVersion", {**checks[2][1], "value": "a"})
