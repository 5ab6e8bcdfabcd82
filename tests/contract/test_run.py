"""Contract tests: the real google-cloud-run REST client against the lab's Cloud Run emulator."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.future import polling
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from lab.core.context import LabContext
from lab.core.faults import FaultRule
from lab.run import RunBackend, create
from tests.discovery import assert_valid

PROJECT = "lifeboat-test"
REGION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
NAME = f"{PARENT}/services/web"
POLLING = polling.DEFAULT_POLLING.with_delay(initial=0.05, maximum=0.2)
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
PINNED = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


@dataclass
class RunLab:
    backend: RunBackend
    url: str
    services: run_v2.ServicesClient
    revisions: run_v2.RevisionsClient
    ctx: LabContext

    def raw(self, path: str) -> Any:
        """The emulator's JSON for ``/v2/{path}``, as Google would send it."""
        response = httpx.get(f"{self.url}/v2/{path}")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def run(lab_ctx: LabContext, serve: Callable[..., str]) -> RunLab:
    backend, app = create(lab_ctx)
    url = serve(app, "run")
    options = ClientOptions(api_endpoint=url)
    credentials = AnonymousCredentials()
    backend.create_service(
        PROJECT, REGION, "web", image="gcr.io/lifeboat/web:1", min_instances=1,
        max_instances=10, env={"MODE": "primary"}, labels={"app": "web"},
    )  # fmt: skip
    return RunLab(
        backend=backend,
        url=url,
        services=run_v2.ServicesClient(
            credentials=credentials, transport="rest", client_options=options
        ),
        revisions=run_v2.RevisionsClient(
            credentials=credentials, transport="rest", client_options=options
        ),
        ctx=lab_ctx,
    )


def slow_rollouts(ctx: LabContext) -> None:
    """Rollouts take 1 s instead of 0.09 s, so a test can look at one in flight."""
    ctx.latency.configure(overrides={"run.update": 500.0})


def first_revision(run: RunLab) -> str:
    return next(iter(run.backend.serving_revisions(PROJECT, REGION, "web")))


def test_get_service_and_revisions_match_discovery_schema(run: RunLab) -> None:
    service = run.services.get_service(name=NAME)

    assert service.template.containers[0].image == "gcr.io/lifeboat/web:1"
    assert service.template.scaling.min_instance_count == 1
    assert service.labels["app"] == "web"
    assert service.generation == service.observed_generation == 1
    assert service.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    revision = service.latest_ready_revision.rsplit("/", 1)[-1]
    assert re.fullmatch(r"web-00001-[a-z0-9]{3}", revision)
    assert run.backend.serving_revisions(PROJECT, REGION, "web") == {revision: 100}
    assert_valid("run.v2", "GoogleCloudRunV2Service", run.raw(NAME))
    assert_valid("run.v2", "GoogleCloudRunV2ListServicesResponse", run.raw(f"{PARENT}/services"))
    revisions = run.raw(f"{NAME}/revisions")
    assert_valid("run.v2", "GoogleCloudRunV2ListRevisionsResponse", revisions)
    assert [r["name"].rsplit("/", 1)[-1] for r in revisions["revisions"]] == [revision]
    assert_valid("run.v2", "GoogleCloudRunV2Revision", run.raw(f"{NAME}/revisions/{revision}"))


def revision_names(run: RunLab) -> list[str]:
    return [r.name.rsplit("/", 1)[-1] for r in run.revisions.list_revisions(parent=NAME)]


SERVICE_SCALING_MASK = field_mask_pb2.FieldMask(
    paths=["scaling.min_instance_count", "scaling.max_instance_count"]
)


def test_service_level_scaling_is_a_rollout_that_creates_no_revision(run: RunLab) -> None:
    slow_rollouts(run.ctx)
    before = revision_names(run)
    service = run.services.get_service(name=NAME)
    service.scaling = run_v2.ServiceScaling(min_instance_count=4, max_instance_count=40)

    operation = run.services.update_service(service=service, update_mask=SERVICE_SCALING_MASK)

    assert not operation.done()
    assert run.backend.instance_count(PROJECT, REGION, "web") == 1  # not applied yet
    in_flight = run.raw(NAME)
    assert in_flight["reconciling"] is True
    assert in_flight["terminalCondition"]["state"] == "CONDITION_RECONCILING"
    assert (in_flight["generation"], in_flight["observedGeneration"]) == ("2", "1")
    pending = run.raw(operation.operation.name)
    assert_valid("run.v2", "GoogleLongrunningOperation", pending)
    assert pending["done"] is False
    assert pending["metadata"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Service"

    result = operation.result(timeout=10, polling=POLLING)

    assert result.reconciling is False
    assert result.generation == result.observed_generation == 2
    assert (result.scaling.min_instance_count, result.scaling.max_instance_count) == (4, 40)
    assert result.template.scaling.min_instance_count == 1  # the revision's own, untouched
    # Service-level minimums apply at once, with no revision (run/docs/configuring/min-instances).
    assert run.backend.instance_count(PROJECT, REGION, "web") == 4
    assert revision_names(run) == before
    assert_valid("run.v2", "GoogleCloudRunV2Service", run.raw(NAME))
    finished = run.raw(operation.operation.name)
    assert_valid("run.v2", "GoogleLongrunningOperation", finished)
    assert finished["done"] is True
    assert finished["response"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Service"


def test_template_scaling_change_deploys_a_new_revision(run: RunLab) -> None:
    (old,) = revision_names(run)
    service = run.services.get_service(name=NAME)
    service.template.scaling.min_instance_count = 4

    result = run.services.update_service(service=service).result(timeout=10, polling=POLLING)

    new = result.latest_ready_revision.rsplit("/", 1)[-1]
    assert re.fullmatch(r"web-00002-[a-z0-9]{3}", new)
    assert revision_names(run) == [new, old]
    # Same image: only the scaling differs, and that alone made a revision.
    revision = run.revisions.get_revision(name=f"{NAME}/revisions/{new}")
    assert revision.containers[0].image == "gcr.io/lifeboat/web:1"
    assert revision.scaling.min_instance_count == 4
    assert run.backend.serving_revisions(PROJECT, REGION, "web") == {new: 100}
    assert run.backend.instance_count(PROJECT, REGION, "web") == 4
    assert_valid("run.v2", "GoogleCloudRunV2Revision", run.raw(f"{NAME}/revisions/{new}"))


def test_template_scaling_serves_nothing_where_traffic_is_pinned(run: RunLab) -> None:
    (pinned,) = revision_names(run)
    service = run.services.get_service(name=NAME)
    del service.traffic[:]
    service.traffic.append(run_v2.TrafficTarget(type_=PINNED, revision=pinned, percent=100))
    service = run.services.update_service(service=service).result(timeout=10, polling=POLLING)
    service.template.scaling.min_instance_count = 7

    result = run.services.update_service(service=service).result(timeout=10, polling=POLLING)

    created = result.latest_ready_revision.rsplit("/", 1)[-1]
    assert created != pinned
    assert run.backend.serving_revisions(PROJECT, REGION, "web") == {pinned: 100}
    # The new revision's minimum starts nothing: the pinned revision keeps its own.
    assert run.backend.instance_count(PROJECT, REGION, "web") == 1
    # The service-level minimum does reach the pinned revision.
    result.scaling = run_v2.ServiceScaling(min_instance_count=5)
    run.services.update_service(service=result, update_mask=SERVICE_SCALING_MASK).result(
        timeout=10, polling=POLLING
    )
    assert run.backend.instance_count(PROJECT, REGION, "web") == 5
    assert len(revision_names(run)) == 2


def test_ingress_is_a_service_level_change_that_creates_no_revision(run: RunLab) -> None:
    before = revision_names(run)
    service = run.services.get_service(name=NAME)
    assert service.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL  # Google's default
    service.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY
    service.annotations["lifeboat.dev/note"] = "fenced"
    mask = field_mask_pb2.FieldMask(paths=["ingress", "annotations"])

    result = run.services.update_service(service=service, update_mask=mask).result(
        timeout=10, polling=POLLING
    )

    assert result.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY
    assert result.annotations["lifeboat.dev/note"] == "fenced"
    assert run.backend.ingress(PROJECT, REGION, "web") == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert revision_names(run) == before
    assert_valid("run.v2", "GoogleCloudRunV2Service", run.raw(NAME))


def test_a_service_at_zero_serves_after_one_cold_start(run: RunLab) -> None:
    run.backend.create_service(
        PROJECT, REGION, "idle", image="gcr.io/lifeboat/idle:1", min_instances=0, max_instances=3
    )
    cold = run.ctx.latency.seconds("run.cold_start")

    assert run.backend.instance_count(PROJECT, REGION, "idle") == 0
    assert run.backend.cold_start_delay(PROJECT, REGION, "idle") == cold > 0
    assert run.backend.cold_start_delay(PROJECT, REGION, "idle") == 0  # now warm
    assert run.backend.cold_start_delay(PROJECT, REGION, "web") == 0  # min 1: always warm


def test_template_change_deploys_a_revision_named_after_the_generation(run: RunLab) -> None:
    old = first_revision(run)
    service = run.services.get_service(name=NAME)
    service.template.containers[0].image = "gcr.io/lifeboat/web:2"

    result = run.services.update_service(service=service).result(timeout=10, polling=POLLING)

    new = result.latest_ready_revision.rsplit("/", 1)[-1]
    assert re.fullmatch(r"web-00002-[a-z0-9]{3}", new)
    assert run.backend.serving_revisions(PROJECT, REGION, "web") == {new: 100}
    names = [r.name.rsplit("/", 1)[-1] for r in run.revisions.list_revisions(parent=NAME)]
    assert names == [new, old]
    revision = run.revisions.get_revision(name=f"{NAME}/revisions/{new}")
    assert revision.containers[0].image == "gcr.io/lifeboat/web:2"
    assert revision.conditions[0].type_ == "Ready"
    assert revision.conditions[0].state == run_v2.Condition.State.CONDITION_SUCCEEDED


def test_traffic_moves_back_to_a_previous_revision_without_deploying(run: RunLab) -> None:
    old = first_revision(run)
    new = run.backend.deploy_revision(
        PROJECT, REGION, "web", image="gcr.io/lifeboat/web:2", move_traffic=True
    )
    assert run.backend.serving_revisions(PROJECT, REGION, "web") == {new: 100}
    service = run.services.get_service(name=NAME)
    del service.traffic[:]
    service.traffic.append(run_v2.TrafficTarget(type_=PINNED, revision=old, percent=100))

    result = run.services.update_service(service=service).result(timeout=10, polling=POLLING)

    assert run.backend.serving_revisions(PROJECT, REGION, "web") == {old: 100}
    assert [(t.revision, t.percent) for t in result.traffic_statuses] == [(old, 100)]
    assert len(list(run.revisions.list_revisions(parent=NAME))) == 2


def test_blue_green_deploy_keeps_traffic_and_tags_the_new_revision(run: RunLab) -> None:
    blue = first_revision(run)

    green = run.backend.deploy_revision(
        PROJECT, REGION, "web", image="gcr.io/lifeboat/web:2", tag="green"
    )

    assert run.backend.serving_revisions(PROJECT, REGION, "web") == {blue: 100}
    service = run.raw(NAME)
    assert_valid("run.v2", "GoogleCloudRunV2Service", service)
    tagged = [t for t in service["trafficStatuses"] if t.get("tag") == "green"]
    assert tagged[0]["revision"] == green
    assert tagged[0]["uri"].startswith("https://green---web-")


def test_traffic_percents_must_add_up_to_100(run: RunLab) -> None:
    service = run.services.get_service(name=NAME)
    service.traffic[0].percent = 90

    with pytest.raises(exceptions.BadRequest, match="add up to 100, not 90"):
        run.services.update_service(service=service)

    assert run.services.get_service(name=NAME).generation == 1


def test_traffic_to_an_unknown_revision_is_refused(run: RunLab) -> None:
    service = run.services.get_service(name=NAME)
    del service.traffic[:]
    service.traffic.append(
        run_v2.TrafficTarget(type_=PINNED, revision="web-00009-zzz", percent=100)
    )

    with pytest.raises(exceptions.BadRequest, match="web-00009-zzz"):
        run.services.update_service(service=service)


def test_stale_etag_is_a_conflict(run: RunLab) -> None:
    stale = run.services.get_service(name=NAME)
    run.backend.deploy_revision(PROJECT, REGION, "web", image="gcr.io/lifeboat/web:2")
    stale.template.scaling.min_instance_count = 5

    with pytest.raises(exceptions.Conflict, match="does not match the current etag") as caught:
        run.services.update_service(service=stale)

    # HTTP 409 maps to Conflict itself, not its Aborted subclass.
    assert type(caught.value) is exceptions.Conflict
    assert run.backend.instance_count(PROJECT, REGION, "web") == 1


def test_a_second_update_during_a_rollout_is_a_conflict(run: RunLab) -> None:
    slow_rollouts(run.ctx)
    service = run.services.get_service(name=NAME)
    service.template.scaling.min_instance_count = 2
    first = run.services.update_service(service=service)
    fresh = run.services.get_service(name=NAME)

    with pytest.raises(exceptions.Conflict, match="reconciling operation"):
        run.services.update_service(service=fresh)

    first.result(timeout=10, polling=POLLING)


def test_unknown_resources_are_404_in_googles_error_shape(run: RunLab) -> None:
    with pytest.raises(exceptions.NotFound):
        run.services.get_service(name=f"{PARENT}/services/nope")
    with pytest.raises(exceptions.NotFound):
        run.revisions.get_revision(name=f"{NAME}/revisions/web-00042-abc")

    response = httpx.get(f"{run.url}/v2/{PARENT}/operations/nope")

    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (404, "NOT_FOUND")
    assert error["errors"][0]["reason"] == "notFound"


def test_injected_503_reaches_the_client_and_is_logged(run: RunLab) -> None:
    run.ctx.faults.add(FaultRule(api="run", method="PATCH", status=503, count=1))
    service = run.services.get_service(name=NAME)
    service.template.scaling.min_instance_count = 2

    with pytest.raises(exceptions.ServiceUnavailable):
        run.services.update_service(service=service)

    patches = run.ctx.requests.entries(api="run", method="PATCH")
    assert [(e.path, e.status, e.injected) for e in patches] == [(f"/v2/{NAME}", 503, True)]
    run.services.update_service(service=service).result(timeout=10, polling=POLLING)
    assert run.backend.instance_count(PROJECT, REGION, "web") == 2


def test_region_outage_makes_the_control_plane_unavailable(run: RunLab) -> None:
    service = run.services.get_service(name=NAME)
    service.template.scaling.min_instance_count = 3
    run.ctx.set_outage(REGION, True)

    with pytest.raises(exceptions.ServiceUnavailable, match="unavailable"):
        run.services.update_service(service=service)

    run.ctx.set_outage(REGION, False)
    run.services.update_service(service=service).result(timeout=10, polling=POLLING)
    assert run.backend.instance_count(PROJECT, REGION, "web") == 3


def test_rollout_to_an_unhealthy_revision_fails_and_keeps_traffic(run: RunLab) -> None:
    blue = first_revision(run)
    green = run.backend.deploy_revision(
        PROJECT, REGION, "web", image="gcr.io/lifeboat/web:2", tag="green"
    )
    run.backend.set_revision_health(PROJECT, REGION, green, healthy=False)
    ready = run.revisions.get_revision(name=f"{NAME}/revisions/{green}").conditions[0]
    assert ready.state == run_v2.Condition.State.CONDITION_FAILED
    service = run.services.get_service(name=NAME)
    del service.traffic[:]
    service.traffic.append(run_v2.TrafficTarget(type_=PINNED, revision=green, percent=100))

    with pytest.raises(exceptions.FailedPrecondition, match="not ready"):
        run.services.update_service(service=service).result(timeout=10, polling=POLLING)

    assert run.backend.serving_revisions(PROJECT, REGION, "web") == {blue: 100}
    failed = run.services.get_service(name=NAME).terminal_condition
    assert failed.state == run_v2.Condition.State.CONDITION_FAILED


def test_request_log_records_each_call(run: RunLab) -> None:
    since = run.ctx.requests.last_seq
    service = run.services.get_service(name=NAME)
    service.template.scaling.min_instance_count = 2
    operation = run.services.update_service(service=service)
    operation.result(timeout=10, polling=POLLING)

    entries = run.ctx.requests.entries(api="run", since=since)

    assert [(e.method, e.path, e.status) for e in entries[:2]] == [
        ("GET", f"/v2/{NAME}", 200),
        ("PATCH", f"/v2/{NAME}", 200),
    ]
    polls = entries[2:]
    assert polls and {(e.method, e.path) for e in polls} == {
        ("GET", f"/v2/{operation.operation.name}")
    }
    assert not any(e.injected for e in entries)


def test_create_and_delete_through_the_client(run: RunLab) -> None:
    service = run_v2.Service(
        template=run_v2.RevisionTemplate(
            containers=[run_v2.Container(image="gcr.io/lifeboat/api:1")],
            scaling=run_v2.RevisionScaling(min_instance_count=2),
        )
    )

    created = run.services.create_service(parent=PARENT, service=service, service_id="api").result(
        timeout=10, polling=POLLING
    )

    assert created.name == f"{PARENT}/services/api"
    assert created.traffic[0].type_ == LATEST
    assert run.backend.instance_count(PROJECT, REGION, "api") == 2
    with pytest.raises(exceptions.Conflict, match="already exists"):
        run.services.create_service(parent=PARENT, service=service, service_id="api")
    revision = created.latest_ready_revision
    with pytest.raises(exceptions.BadRequest, match="referenced by the service's traffic"):
        run.revisions.delete_revision(name=revision)

    deleted = run.services.delete_service(name=created.name).result(timeout=10, polling=POLLING)

    assert deleted.name == created.name
    with pytest.raises(exceptions.NotFound):
        run.services.get_service(name=created.name)
    assert run.backend.instance_count(PROJECT, REGION, "api") == 0


def test_update_mask_limits_the_change(run: RunLab) -> None:
    service = run.services.get_service(name=NAME)
    service.template.scaling.min_instance_count = 6
    service.template.containers[0].image = "gcr.io/lifeboat/web:ignored"
    mask = field_mask_pb2.FieldMask(paths=["template.scaling.min_instance_count"])

    result = run.services.update_service(service=service, update_mask=mask).result(
        timeout=10, polling=POLLING
    )

    assert result.template.containers[0].image == "gcr.io/lifeboat/web:1"
    assert run.backend.instance_count(PROJECT, REGION, "web") == 6


def test_raw_patch_accepts_enum_names_and_int64_strings(run: RunLab) -> None:
    body = run.raw(NAME)
    body["generation"] = "1"
    body["traffic"] = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
    body["scaling"] = {"minInstanceCount": 3}  # service-level minimum, no revision

    since = run.ctx.requests.last_seq
    response = httpx.patch(f"{run.url}/v2/{NAME}", json=body)

    assert response.status_code == 200, response.text
    operation = response.json()
    waited = httpx.post(f"{run.url}/v2/{operation['name']}:wait", json={"timeout": "5s"})
    assert waited.json()["done"] is True
    # The lab judges writes itself: the PATCH changed state, the POST :wait did not.
    calls = [(e.method, e.write) for e in run.ctx.requests.entries(api="run", since=since)]
    assert calls == [("PATCH", True), ("POST", False)]
    assert run.backend.instance_count(PROJECT, REGION, "web") == 3
    listing = run.raw(f"{PARENT}/operations")
    assert_valid("run.v2", "GoogleLongrunningListOperationsResponse", listing)
    assert [op["name"] for op in listing["operations"]] == [operation["name"]]
    names = [op.name for op in run.services.list_operations(request={"name": PARENT}).operations]
    assert names == [operation["name"]]


ANNOTATIONS_MASK = field_mask_pb2.FieldMask(paths=["template.annotations"])


def test_a_masked_update_with_a_stale_etag_is_refused_and_a_current_one_accepted(
    run: RunLab,
) -> None:
    """AIP-154: an etag that does not match is refused with ABORTED (HTTP 409); the one
    just read is accepted, and the accepted update gives the service a new etag."""
    stale = run.services.get_service(name=NAME)
    run.backend.deploy_revision(PROJECT, REGION, "web", image="gcr.io/lifeboat/web:2")
    stale.template.annotations["lifeboat.dev/probe"] = "stale"

    with pytest.raises(exceptions.Conflict, match="does not match the current etag"):
        run.services.update_service(service=stale, update_mask=ANNOTATIONS_MASK)

    current = run.services.get_service(name=NAME)
    current.template.annotations["lifeboat.dev/probe"] = "current"
    done = run.services.update_service(service=current, update_mask=ANNOTATIONS_MASK).result(
        timeout=10, polling=POLLING
    )
    assert done.template.annotations["lifeboat.dev/probe"] == "current"
    assert done.etag and done.etag != current.etag


def _held_call_answered(run: RunLab, method: str, timeout: float = 10) -> Any:
    """The held call's log entry: the lab logs a held call when it answers it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = [e for e in run.ctx.requests.entries(api="run", method=method) if e.injected]
        if held:
            return held[0]
        time.sleep(0.05)
    raise AssertionError(f"the held {method} was never answered")


def test_an_update_held_past_the_clients_timeout_lands_once_whatever_the_resend(
    run: RunLab,
) -> None:
    """A PATCH the server holds while the client gives up is still acted on as sent, etag
    included: when the client's resend (with the etag it read again) has landed first,
    the late original is refused, so the service gets one new revision, not two."""
    before = revision_names(run)
    run.ctx.faults.add(FaultRule(api="run", method="PATCH", latency_s=1.5, count=1))
    intended = run.services.get_service(name=NAME)
    intended.template.annotations["lifeboat.dev/database-secret-version"] = "7"
    with pytest.raises(requests.exceptions.Timeout):
        run.services.update_service(service=intended, update_mask=ANNOTATIONS_MASK, timeout=0.3)

    reread = run.services.get_service(name=NAME)
    assert reread.generation == intended.generation  # not acted on yet
    reread.template.annotations["lifeboat.dev/database-secret-version"] = "7"
    run.services.update_service(service=reread, update_mask=ANNOTATIONS_MASK).result(
        timeout=10, polling=POLLING
    )

    held = _held_call_answered(run, "PATCH")
    assert held.status == 409
    assert len(revision_names(run)) == len(before) + 1
    after = run.services.get_service(name=NAME)
    assert after.template.annotations["lifeboat.dev/database-secret-version"] == "7"
