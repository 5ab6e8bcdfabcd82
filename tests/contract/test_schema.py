"""Contract tests: every emulated Google API judges calls by Google's discovery document.

A call that breaks the document is refused before the emulator sees it (so nothing
changes, and the request log holds no write); a valid call through the real client still
works; a lab reply outside the schema is recorded as the lab bug it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import dns, secretmanager_v1, storage
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lab import compute, secretmanager
from lab import dns as lab_dns
from lab import storage as lab_storage
from lab.core.context import LabContext
from lab.core.http import build_app, json_response

PROJECT = "ml-datadriven-recos"
ZONE = "varai-ai-zone"
API = "api.varai.ai."


@pytest.fixture
def dns_lab(lab_ctx: LabContext, serve: Callable[..., str]) -> tuple[Any, str]:
    backend, app = lab_dns.create(lab_ctx)
    backend.create_zone(PROJECT, ZONE, "varai.ai.", "seeded")
    backend.set_rrset(PROJECT, ZONE, API, "A", 300, ["34.120.10.10"])
    return backend, serve(app, "dns")


def changes_url(base: str) -> str:
    return f"{base}/dns/v1/projects/{PROJECT}/managedZones/{ZONE}/changes"


def a_record(ctx: LabContext, base: str) -> list[str]:
    client = dns.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=base),
    )
    records = client.zone(ZONE, "varai.ai.").list_resource_record_sets()
    return next(r.rrdatas for r in records if r.name == API and r.record_type == "A")


def test_an_unknown_body_field_is_refused_and_changes_nothing(
    lab_ctx: LabContext, dns_lab: tuple[Any, str]
) -> None:
    _, base = dns_lab
    since = lab_ctx.requests.last_seq
    change = {
        "deletions": [{"name": API, "type": "A", "ttl": 300, "rrdatas": ["34.120.10.10"]}],
        "additions": [
            {"name": API, "type": "A", "ttl": 300, "rrdatas": ["34.140.20.20"], "weight": 5}
        ],
    }
    reply = httpx.post(changes_url(base), json=change)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == (
        "Invalid JSON payload received. Unknown name \"weight\" at 'additions[0]': "
        "Cannot find field."
    )
    [entry] = lab_ctx.requests.entries(api="dns", since=since)
    assert (entry.status, entry.write) == (400, False)  # refused: no write happened
    assert a_record(lab_ctx, base) == ["34.120.10.10"]

    del change["additions"][0]["weight"]  # the same change without it goes through
    assert httpx.post(changes_url(base), json=change).status_code == 200
    deadline = time.monotonic() + 5  # a change is pending a moment before it is done
    while a_record(lab_ctx, base) != ["34.140.20.20"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_an_unknown_query_parameter_or_a_bad_value_is_refused(
    lab_ctx: LabContext, dns_lab: tuple[Any, str]
) -> None:
    _, base = dns_lab
    rrsets = f"{base}/dns/v1/projects/{PROJECT}/managedZones/{ZONE}/rrsets"
    unknown = httpx.get(rrsets, params={"name": API, "kind": "A"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == (
        'Invalid JSON payload received. Unknown name "kind": Cannot bind query parameter. '
        "Field 'kind' could not be found in request message."
    )
    bad = httpx.get(rrsets, params={"maxResults": "many"})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "Invalid value at 'maxResults' (TYPE_INT32), \"many\""
    good = httpx.get(rrsets, params={"name": API, "type": "A", "fields": "rrsets"})
    assert good.status_code == 200 and good.json()["rrsets"][0]["rrdatas"] == ["34.120.10.10"]


def test_a_path_google_does_not_serve_is_404(dns_lab: tuple[Any, str]) -> None:
    _, base = dns_lab
    reply = httpx.get(f"{base}/dns/v1/projects/{PROJECT}/managedZones/{ZONE}/records")
    assert reply.status_code == 404
    assert reply.json()["error"]["status"] == "NOT_FOUND"
    # a verb Google does not take on that path
    post = httpx.post(f"{base}/dns/v1/projects/{PROJECT}/managedZones/{ZONE}", json={})
    assert post.status_code == 404
    # a method Google serves (managedZones.update) that the lab does not
    put = httpx.put(f"{base}/dns/v1/projects/{PROJECT}/managedZones/{ZONE}", json={})
    assert put.status_code == 404
    assert put.json()["error"]["message"].startswith("dns.managedZones.update is not served")


def test_secret_manager_refuses_in_its_own_error_shape_and_the_client_still_works(
    lab_ctx: LabContext, serve: Callable[..., str]
) -> None:
    _, app = secretmanager.create(lab_ctx)
    base = serve(app, "secretmanager")
    client = secretmanager_v1.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=base),
    )
    parent = f"projects/{PROJECT}"
    client.create_secret(
        parent=parent,
        secret_id="db-url",
        secret={"replication": {"automatic": {}}},
    )
    reply = httpx.post(
        f"{base}/v1/{parent}/secrets/db-url:addVersion",
        json={"payload": {"data": "c2VjcmV0", "dataCrc32c": "1", "encoding": "utf8"}},
    )
    assert reply.status_code == 400
    assert reply.json() == {
        "error": {
            "code": 400,
            "message": "Invalid JSON payload received. Unknown name \"encoding\" at 'payload': "
            "Cannot find field.",
            "status": "INVALID_ARGUMENT",
        }
    }
    versions = list(client.list_secret_versions(parent=f"{parent}/secrets/db-url"))
    assert versions == []  # nothing was added


def test_a_batch_part_is_judged_alone(lab_ctx: LabContext, serve: Callable[..., str]) -> None:
    _, app = compute.create(lab_ctx)
    base = serve(app, "compute")
    since = lab_ctx.requests.last_seq
    path = f"/compute/v1/projects/{PROJECT}/global/urlMaps/varai-cdn-lb/invalidateCache"
    parts = [
        ("1", json.dumps({"path": "/*", "colour": "red"})),
        ("2", json.dumps({"path": "/*"})),
    ]
    body = "".join(
        f"--b\r\nContent-Type: application/http\r\nContent-ID: <{cid}>\r\n\r\n"
        f"POST {path} HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{payload}\r\n"
        for cid, payload in parts
    )
    reply = httpx.post(
        f"{base}/batch/compute/v1",
        content=(body + "--b--\r\n").encode(),
        headers={"content-type": "multipart/mixed; boundary=b"},
    )
    assert reply.status_code == 200
    assert "HTTP/1.1 400" in reply.text and 'Unknown name \\"colour\\"' in reply.text
    statuses = [e.status for e in lab_ctx.requests.entries(api="compute", since=since)]
    assert 400 in statuses


def test_a_lab_reply_outside_the_schema_is_recorded_as_a_lab_bug(
    lab_ctx: LabContext, serve: Callable[..., str]
) -> None:
    async def broken_get(request: Request) -> Response:
        return json_response({"name": "projects/1/secrets/s", "createdBy": "the lab"})

    route = Route("/v1/projects/{p}/secrets/{s}", broken_get, methods=["GET"])
    base = serve(build_app(lab_ctx, "secretmanager", [route]), "broken")
    reply = httpx.get(f"{base}/v1/projects/p/secrets/s")
    assert reply.status_code == 200  # the client still gets it; the harness fails the test
    [violation] = lab_ctx.violations.entries(kind="response")
    assert violation.discovery_method == "secretmanager.projects.secrets.get"
    assert violation.problems == (
        'Invalid JSON payload received. Unknown name "createdBy": Cannot find field.',
    )
    # What the lab_ctx fixture's teardown would fail on: this test expects it, so clear it.
    lab_ctx.violations = type(lab_ctx.violations)()


def test_a_method_the_lab_does_not_serve_never_reaches_a_route_written_for_another(
    lab_ctx: LabContext, serve: Callable[..., str]
) -> None:
    """``b/{bucket}/o/{object}/acl/{entity}`` is objectAccessControls.get at Google; the
    lab's object route takes slashes in ``{object}``, and served it as objects.get."""
    backend, app = lab_storage.create(lab_ctx)
    base = serve(app, "storage")
    backend.create_bucket(PROJECT, "dr-bucket", location="us-central1", labels={})
    client = storage.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": base}
    )
    client.bucket("dr-bucket").blob("report/acl/allUsers").upload_from_string(b"x")
    acl = httpx.get(f"{base}/storage/v1/b/dr-bucket/o/report/acl/allUsers")
    assert acl.status_code == 404
    assert "storage.objectAccessControls.get is not served" in acl.json()["error"]["message"]
    same_object = httpx.get(f"{base}/storage/v1/b/dr-bucket/o/report%2Facl%2FallUsers")
    assert same_object.status_code == 200 and same_object.json()["name"] == "report/acl/allUsers"
    client.close()
