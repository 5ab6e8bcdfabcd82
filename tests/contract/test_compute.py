"""Contract tests: google-cloud-compute (REST) against the lab's url-map emulator."""

from __future__ import annotations

import email.parser
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from lab.compute import ComputeBackend, create
from lab.core.context import LabContext
from lab.core.faults import FaultRule
from tests import discovery

PROJECT = "ml-datadriven-recos"
URL_MAP = "varai-cdn-lb"
HOST = "api.varai.ai"
Status = compute_v1.Operation.Status


def assert_valid(schema: str, body: Any) -> None:
    discovery.assert_valid("compute.v1", schema, body)


class CdnLab:
    def __init__(self, backend: ComputeBackend, url: str) -> None:
        self.backend = backend
        self.url = url
        options = ClientOptions(api_endpoint=url)
        creds = AnonymousCredentials()
        self.url_maps = compute_v1.UrlMapsClient(
            credentials=creds, transport="rest", client_options=options
        )
        self.operations = compute_v1.GlobalOperationsClient(
            credentials=creds, transport="rest", client_options=options
        )

    def invalidate(self, path: str = "/*", host: str = HOST, request_id: str = "") -> Any:
        # invalidate_cache(...).result() would poll Google itself; unary + our own polling.
        request = compute_v1.InvalidateCacheUrlMapRequest(
            project=PROJECT,
            url_map=URL_MAP,
            cache_invalidation_rule_resource=compute_v1.CacheInvalidationRule(host=host, path=path),
        )
        if request_id:
            request.request_id = request_id
        return self.url_maps.invalidate_cache_unary(request=request)

    def raw(self, path: str) -> Any:
        return httpx.get(f"{self.url}/compute/v1/projects/{PROJECT}/global/{path}").json()


def logged(ctx: LabContext, api: str, since: int, count: int) -> list[Any]:
    """The calls logged since ``since``; the log is written just after the reply is sent."""
    deadline = time.monotonic() + 2
    while len(entries := ctx.requests.entries(api=api, since=since)) < count:
        assert time.monotonic() < deadline, entries
        time.sleep(0.005)
    return entries


@pytest.fixture
def cdn(lab_ctx: LabContext, serve: Callable[..., str]) -> CdnLab:
    backend, app = create(lab_ctx)
    backend.create_url_map(PROJECT, URL_MAP, [HOST])
    return CdnLab(backend, serve(app, "compute"))


def test_get_and_list_url_maps(cdn: CdnLab) -> None:
    for i in range(2):
        cdn.backend.create_url_map(PROJECT, f"extra-{i}", [f"h{i}.varai.ai"], "svc")

    url_map = cdn.url_maps.get(project=PROJECT, url_map=URL_MAP)
    assert url_map.name == URL_MAP and list(url_map.host_rules[0].hosts) == [HOST]
    pager = cdn.url_maps.list(request=compute_v1.ListUrlMapsRequest(project=PROJECT, max_results=2))
    assert [len(page.items) for page in pager.pages] == [2, 1]

    assert_valid("UrlMap", cdn.raw(f"urlMaps/{URL_MAP}"))
    assert_valid("UrlMapList", cdn.raw("urlMaps"))


def test_get_and_list_backend_services(cdn: CdnLab) -> None:
    neg = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/regions/us-central1/networkEndpointGroups/neg"
    made = cdn.backend.create_backend_service(
        PROJECT, "web-backend", [{"group": neg}], enable_cdn=True
    )
    health = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/healthChecks/hc"
    for i in range(2):
        cdn.backend.create_backend_service(
            PROJECT, f"extra-{i}", [], protocol="HTTP", health_checks=[health]
        )
    client = compute_v1.BackendServicesClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=cdn.url),
    )

    got = client.get(project=PROJECT, backend_service="web-backend")
    assert got.self_link == made["selfLink"] and got.enable_c_d_n
    assert [b.group for b in got.backends] == [neg]
    assert got.cdn_policy.cache_mode == "CACHE_ALL_STATIC" and got.fingerprint
    extra = client.get(project=PROJECT, backend_service="extra-0")
    assert list(extra.health_checks) == [health] and extra.protocol == "HTTP"
    assert extra.fingerprint != got.fingerprint  # a hash of the contents
    request = compute_v1.ListBackendServicesRequest(project=PROJECT, max_results=2)
    pages = list(client.list(request=request).pages)
    assert [len(page.items) for page in pages] == [2, 1]
    assert sorted(s.name for page in pages for s in page.items) == [
        "extra-0",
        "extra-1",
        "web-backend",
    ]
    with pytest.raises(exceptions.NotFound):
        client.get(project=PROJECT, backend_service="gone")

    assert_valid("BackendService", cdn.raw("backendServices/web-backend"))
    assert_valid("BackendServiceList", cdn.raw("backendServices"))


def test_purge_takes_effect_long_before_the_operation_is_done(
    lab_ctx: LabContext, cdn: CdnLab
) -> None:
    seen: list[tuple[str | None, str, str]] = []
    fired = threading.Event()

    def listener(host: str | None, path: str) -> None:
        status = cdn.backend.get_operation(PROJECT, cdn.backend.invalidations()[0]["operation"])
        seen.append((host, path, status["status"]))
        fired.set()

    # 3 s real (not the default 1.2 s): a loaded machine once saw it DONE before the get.
    lab_ctx.latency.configure(overrides={"cdn.invalidate_operation": 1500.0})
    cdn.backend.on_invalidation(listener)
    operation = cdn.invalidate("/static/*")
    assert operation.status == Status.RUNNING and operation.operation_type == "invalidateCache"
    assert operation.target_link.endswith(f"/global/urlMaps/{URL_MAP}")
    assert_valid("Operation", cdn.raw(f"operations/{operation.name}"))

    assert fired.wait(5)
    assert seen == [(HOST, "/static/*", "RUNNING")]
    current = cdn.operations.get(project=PROJECT, operation=operation.name)
    assert current.status == Status.RUNNING

    since = lab_ctx.requests.last_seq
    deadline = time.monotonic() + 10
    while current.status != Status.DONE:
        assert time.monotonic() < deadline
        current = cdn.operations.wait(project=PROJECT, operation=operation.name)
    assert not current.http_error_status_code and current.progress == 100
    # operations.wait is a POST that changes nothing: the lab logs it as a read.
    waits = lab_ctx.requests.entries(api="compute", since=since)
    assert waits and all(e.method == "POST" and not e.write for e in waits), waits

    [record] = cdn.backend.invalidations()
    assert record["requested_at"] <= record["effective_at"] <= record["done_at"]
    done = cdn.raw(f"operations/{operation.name}")
    assert_valid("Operation", done)
    assert done["status"] == "DONE" and "endTime" in done
    listing = cdn.raw("operations")
    assert_valid("OperationList", listing)
    assert [op["name"] for op in listing["items"]] == [operation.name]


def test_over_500_a_minute_is_403_rate_limit(lab_ctx: LabContext, cdn: CdnLab) -> None:
    lab_ctx.latency.configure(time_scale=1.0)  # a whole real minute for the window
    for i in range(500):
        cdn.backend.invalidate_cache(PROJECT, URL_MAP, HOST, f"/item/{i}")

    with pytest.raises(exceptions.Forbidden) as caught:
        cdn.invalidate("/one-too-many")
    assert caught.value.errors[0]["reason"] == "rateLimitExceeded"
    assert len(cdn.backend.invalidations()) == 500

    other_project = cdn.backend.create_url_map("other-project", URL_MAP, [HOST])
    assert other_project["name"] == URL_MAP  # the limit is per project
    cdn.backend.invalidate_cache("other-project", URL_MAP, None, "/*")


def test_repeated_request_id_returns_the_same_operation(cdn: CdnLab) -> None:
    first = cdn.invalidate("/a", request_id="5b1c8a7e-0000-4000-8000-000000000001")
    again = cdn.invalidate("/a", request_id="5b1c8a7e-0000-4000-8000-000000000001")
    assert again.name == first.name
    assert len(cdn.backend.invalidations()) == 1


def test_unknown_url_map_and_operation_are_404(cdn: CdnLab) -> None:
    with pytest.raises(exceptions.NotFound):
        cdn.url_maps.get(project=PROJECT, url_map="no-such-map")
    with pytest.raises(exceptions.NotFound):
        cdn.url_maps.invalidate_cache_unary(
            project=PROJECT,
            url_map="no-such-map",
            cache_invalidation_rule_resource=compute_v1.CacheInvalidationRule(path="/*"),
        )
    with pytest.raises(exceptions.NotFound):
        cdn.operations.get(project=PROJECT, operation="operation-404")
    assert cdn.backend.invalidations() == []


def test_bad_path_is_400(cdn: CdnLab) -> None:
    with pytest.raises(exceptions.BadRequest):
        cdn.invalidate("/images*/x")


def test_injected_fault_and_request_log(lab_ctx: LabContext, cdn: CdnLab) -> None:
    since = lab_ctx.requests.last_seq
    lab_ctx.faults.add(
        FaultRule(api="compute", method="POST", path="invalidateCache", status=503, count=1)
    )
    with pytest.raises(exceptions.ServiceUnavailable):
        cdn.invalidate()
    cdn.invalidate()

    calls = logged(lab_ctx, "compute", since, 2)
    assert [(c.method, c.status, c.injected) for c in calls] == [
        ("POST", 503, True),
        ("POST", 200, False),
    ]
    assert (
        calls[0].path == f"/compute/v1/projects/{PROJECT}/global/urlMaps/{URL_MAP}/invalidateCache"
    )


def test_reset_keeps_listeners_and_drops_state(cdn: CdnLab) -> None:
    fired = threading.Event()
    cdn.backend.on_invalidation(lambda host, path: fired.set())
    cdn.backend.reset()
    with pytest.raises(exceptions.NotFound):
        cdn.invalidate()
    cdn.backend.create_url_map(PROJECT, URL_MAP, [HOST])
    cdn.invalidate()
    assert fired.wait(5)


# -- the batch endpoint (cloud.google.com/compute/docs/api/how-tos/batch) ----------------


def batch_body(boundary: str, *calls: str) -> bytes:
    """Parts framed as Google's batch example frames them (CRLF, path-only requests)."""
    parts = [
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <item{i}:lab>\r\n\r\n"
        f"{call}\r\n"
        for i, call in enumerate(calls, 1)
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


def batch_replies(reply: httpx.Response) -> list[tuple[str, int, Any]]:
    """(Content-ID, status, JSON body) of each part of a batch reply."""
    assert reply.headers["content-type"].startswith("multipart/mixed; boundary=")
    envelope = f"Content-Type: {reply.headers['content-type']}\r\n\r\n".encode() + reply.content
    message = email.parser.BytesParser().parsebytes(envelope)
    out = []
    for part in message.get_payload():
        assert part.get_content_type() == "application/http"
        status_line, _, rest = part.get_payload(decode=True).partition(b"\r\n")
        inner = email.parser.BytesParser().parsebytes(rest)
        assert inner["Content-Type"].startswith("application/json")
        out.append(
            (part["Content-ID"], int(status_line.split()[1]), json.loads(inner.get_payload()))
        )
    return out


def post_batch(cdn: CdnLab, body: bytes, boundary: str = "batch_foobarbaz") -> httpx.Response:
    return httpx.post(
        f"{cdn.url}/batch/compute/v1",
        content=body,
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
        timeout=30,
    )


def test_batch_dispatches_each_part_and_answers_each_in_its_own_part(
    lab_ctx: LabContext, cdn: CdnLab
) -> None:
    base = f"/compute/v1/projects/{PROJECT}/global"
    since = lab_ctx.requests.last_seq
    reply = post_batch(
        cdn,
        batch_body(
            "batch_foobarbaz",
            f"GET {base}/urlMaps/{URL_MAP}\r\n",
            f"POST {base}/urlMaps/{URL_MAP}/invalidateCache HTTP/1.1\r\n"
            'Content-Type: application/json\r\n\r\n{"path": "/*", "host": "api.varai.ai"}',
            f"GET {base}/urlMaps/no-such-map\r\n",
        ),
    )
    assert reply.status_code == 200
    parts = batch_replies(reply)
    assert [(cid, status) for cid, status, _ in parts] == [
        ("<response-item1:lab>", 200),
        ("<response-item2:lab>", 200),
        ("<response-item3:lab>", 404),
    ]
    assert_valid("UrlMap", parts[0][2])
    assert_valid("Operation", parts[1][2])
    assert parts[2][2]["error"]["code"] == 404
    [record] = cdn.backend.invalidations()
    assert (record["host"], record["path"]) == (HOST, "/*")
    # Each part is logged as the call it is; the batch is logged too.
    calls = logged(lab_ctx, "compute", since, 4)
    assert [(c.method, c.path.rsplit("/", 1)[-1], c.status) for c in calls] == [
        ("GET", URL_MAP, 200),
        ("POST", "invalidateCache", 200),
        ("GET", "no-such-map", 404),
        ("POST", "v1", 200),
    ]
    # The lab says which changed state: the invalidation only. The batch itself is not a
    # write (its parts are judged alone), so "changed nothing" never counts it twice.
    assert [c.write for c in calls] == [False, True, False, False]


def test_batch_faults_hit_only_their_part(lab_ctx: LabContext, cdn: CdnLab) -> None:
    base = f"/compute/v1/projects/{PROJECT}/global"
    lab_ctx.faults.add(
        FaultRule(api="compute", path="invalidateCache", status=403, reason="rateLimitExceeded")
    )
    invalidation = (
        f"POST {base}/urlMaps/{URL_MAP}/invalidateCache\r\n"
        'Content-Type: application/json\r\n\r\n{"path": "/*"}'
    )
    parts = batch_replies(
        post_batch(cdn, batch_body("b", invalidation, f"GET {base}/urlMaps/{URL_MAP}\r\n"), "b")
    )
    assert [status for _, status, _ in parts] == [403, 200]
    assert parts[0][2]["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    assert cdn.backend.invalidations() == []


def test_batch_refuses_what_google_refuses(lab_ctx: LabContext, cdn: CdnLab) -> None:
    base = f"/compute/v1/projects/{PROJECT}/global"
    not_multipart = httpx.post(f"{cdn.url}/batch/compute/v1", json={"a": 1}, timeout=10)
    assert not_multipart.status_code == 400
    assert not_multipart.json()["error"]["status"] == "INVALID_ARGUMENT"

    too_many = post_batch(cdn, batch_body("b", *[f"GET {base}/urlMaps/{URL_MAP}\r\n"] * 1001), "b")
    assert too_many.status_code == 400 and "1000" in too_many.json()["error"]["message"]

    parts = batch_replies(
        post_batch(
            cdn,
            batch_body(
                "b",
                f"GET https://compute.googleapis.com{base}/urlMaps/{URL_MAP}\r\n",
                "POST /batch/compute/v1\r\n",
                "GET /storage/v1/b/some-bucket\r\n",
            ),
            "b",
        )
    )
    assert [status for _, status, _ in parts] == [400, 400, 400]
    assert "path" in parts[0][2]["error"]["message"]
    assert cdn.backend.invalidations() == []
