"""Judging a Cloud Run update whose reply was lost: adopt it, or leave it to the retry."""

from __future__ import annotations

import requests
from google.api_core import exceptions as gexc
from google.cloud import run_v2

from tasks.run_rollout import Outcome, ambiguous, carries, masked_value, outcome

SCALING = ["scaling.min_instance_count", "scaling.max_instance_count"]
FENCE = ["ingress", "annotations"]
INTERNAL = run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY


def read(generation: int = 4, etag: str = "e4") -> run_v2.Service:
    """A service as a step reads it: bounds 0..10, public, no annotations."""
    return run_v2.Service(
        name="projects/p/locations/us-east1/services/auth-service",
        generation=generation,
        etag=etag,
        scaling=run_v2.ServiceScaling(min_instance_count=0, max_instance_count=10),
        ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
    )


def scaled(service: run_v2.Service, low: int, high: int) -> run_v2.Service:
    copy = run_v2.Service(service)
    copy.scaling = run_v2.ServiceScaling(min_instance_count=low, max_instance_count=high)
    return copy


def test_masked_values_follow_dotted_paths() -> None:
    service = scaled(read(), 3, 50)
    assert [masked_value(service, p) for p in SCALING] == [3, 50]
    assert masked_value(service, "ingress") == run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL


def test_a_service_whose_generation_has_not_moved_has_not_taken_the_update() -> None:
    intended = scaled(read(), 3, 50)
    assert outcome(intended, read(etag="e4-status-only"), SCALING) is Outcome.NOT_YET


def test_a_moved_generation_that_carries_the_change_is_adopted() -> None:
    intended = scaled(read(), 3, 50)
    now = scaled(read(generation=5, etag="e5"), 3, 50)
    assert outcome(intended, now, SCALING) is Outcome.LANDED


def test_a_moved_generation_with_other_values_is_another_writers() -> None:
    intended = scaled(read(), 3, 50)
    now = scaled(read(generation=5, etag="e5"), 1, 10)
    assert outcome(intended, now, SCALING) is Outcome.OVERTAKEN


def test_only_the_masked_fields_are_compared() -> None:
    intended = read()
    intended.ingress = INTERNAL
    intended.annotations["lifeboat.dev/fenced-by"] = "failback/INC-1/run"
    now = run_v2.Service(intended)
    now.generation = 5
    now.scaling = run_v2.ServiceScaling(min_instance_count=3, max_instance_count=50)
    assert carries(now, intended, FENCE)
    assert outcome(intended, now, FENCE) is Outcome.LANDED
    other_owner = run_v2.Service(now)
    other_owner.annotations["lifeboat.dev/fenced-by"] = "failback/INC-2/run"
    assert outcome(intended, other_owner, FENCE) is Outcome.OVERTAKEN


def test_maps_and_lists_compare_whole() -> None:
    intended = read()
    intended.traffic = [run_v2.TrafficTarget(revision="auth-service-00002-abc", percent=100)]
    now = run_v2.Service(intended)
    now.generation = 5
    assert carries(now, intended, ["traffic"])
    now.traffic.append(run_v2.TrafficTarget(revision="auth-service-00001-xyz", tag="blue"))
    assert not carries(now, intended, ["traffic"])


def test_which_failures_may_have_been_acted_on() -> None:
    assert ambiguous(requests.exceptions.ReadTimeout("held"))
    assert ambiguous(requests.exceptions.ConnectionError("reset"))
    assert ambiguous(TimeoutError())
    assert ambiguous(gexc.ServiceUnavailable("503"))
    assert ambiguous(gexc.InternalServerError("500"))
    assert ambiguous(gexc.Conflict("etag does not match"))  # maybe our own first try
    assert not ambiguous(gexc.TooManyRequests("throttled before anything was done"))
    assert not ambiguous(gexc.Forbidden("denied"))
    assert not ambiguous(gexc.NotFound("no such service"))
    assert not ambiguous(gexc.BadRequest("bad field"))
