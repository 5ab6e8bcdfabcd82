"""What restore-config would send back, decided without a lab (lifeboat/config_items.py),
and the drill's scratch record names (tasks/dns_scratch.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lifeboat.config_items import (
    backend_service_links,
    backend_service_ref,
    by_hand,
    in_zone,
    record_set_as,
    record_set_changes,
    run_service_changes,
    runnable_spec,
    snake,
    traffic_revisions,
)
from tasks.dns_scratch import parse_scratch, scratch_record_name

SERVICE = {
    "name": "projects/p/locations/us-central1/services/api",
    "uid": "1",
    "generation": "7",
    "etag": "abc",
    "labels": {"team": "dr"},
    "ingress": "INGRESS_TRAFFIC_ALL",
    "scaling": {"minInstanceCount": 1},
    "template": {"revision": "api-00007-xyz", "containers": [{"image": "img:1"}]},
    "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
    "conditions": [{"type": "Ready"}],
}


def test_output_only_fields_and_the_revision_name_are_not_compared() -> None:
    live = {**SERVICE, "uid": "2", "generation": "9", "etag": "zzz", "conditions": []}
    live["template"] = {**SERVICE["template"], "revision": "api-00009-abc"}  # type: ignore[dict-item]
    assert run_service_changes(SERVICE, live) == []
    assert "revision" not in runnable_spec(SERVICE)["template"]
    assert "uid" not in runnable_spec(SERVICE) and "etag" not in runnable_spec(SERVICE)


def test_only_the_fields_that_differ_are_sent_back() -> None:
    live = {**SERVICE, "labels": {"team": "dr", "x": "y"}, "scaling": {"minInstanceCount": 3}}
    assert run_service_changes(SERVICE, live) == ["labels", "scaling"]
    # A field the archive lacks but the live service has is cleared: it differs too.
    assert run_service_changes({**SERVICE, "labels": {}}, live) == ["labels", "scaling"]
    image = {**SERVICE, "template": {"containers": [{"image": "img:2"}]}}
    assert run_service_changes(SERVICE, image) == ["template"]


def test_a_missing_service_gets_every_settable_field() -> None:
    assert run_service_changes(SERVICE, None) == [
        "labels",
        "ingress",
        "template",
        "traffic",
        "scaling",
    ]


def test_traffic_names_only_explicit_revisions_and_mask_paths_are_snake_case() -> None:
    spec = {"traffic": [{"revision": "api-00003-aaa", "percent": 90}, {"type": "LATEST"}]}
    assert traffic_revisions(spec) == ["api-00003-aaa"]
    assert snake("invokerIamDisabled") == "invoker_iam_disabled"
    assert snake("labels") == "labels"


def test_record_sets_compare_content_not_names() -> None:
    archived = {
        "kind": "dns#resourceRecordSet",
        "name": "api.x.",
        "type": "A",
        "ttl": 300,
        "rrdatas": ["10.0.0.1"],
    }
    assert record_set_changes(archived, dict(archived)) == []
    assert record_set_changes(archived, {**archived, "rrdatas": ["10.0.0.2"]}) == ["rrdatas"]
    assert record_set_changes(archived, {**archived, "ttl": 60}) == ["ttl"]
    assert record_set_changes(archived, None) == ["ttl", "rrdatas"]
    policy = {"name": "api.x.", "type": "A", "ttl": 30, "routingPolicy": {"geo": {"items": []}}}
    assert record_set_changes(policy, archived) == ["ttl", "rrdatas", "routingPolicy"]
    copy = record_set_as(archived, "lifeboat-drill-20261206-ab12.x.")
    assert copy["name"] == "lifeboat-drill-20261206-ab12.x." and copy["rrdatas"] == ["10.0.0.1"]
    assert record_set_changes(archived, copy) == []


def test_a_target_must_be_a_fully_qualified_name_in_the_zone() -> None:
    assert in_zone("api.varai.ai.", "varai.ai.")
    assert in_zone("varai.ai.", "varai.ai.")
    assert not in_zone("api.varai.ai", "varai.ai.")  # not fully qualified
    assert not in_zone("evilvarai.ai.", "varai.ai.")
    assert not in_zone("api.example.org.", "varai.ai.")


def test_scratch_record_names_carry_the_drill_and_the_day() -> None:
    started = datetime(2026, 12, 6, 23, 59, tzinfo=UTC)
    name = scratch_record_name("varai.ai.", started, "ab12cd34")
    assert name == "lifeboat-drill-20261206-ab12cd34.varai.ai."
    found = parse_scratch({"name": name, "type": "A"})
    assert found is not None and found.suffix == "ab12cd34"
    # Made at the latest at the day's end: it expires a day and the TTL after the day began.
    assert found.expires(24) == datetime(2026, 12, 8, tzinfo=UTC)
    assert found.expires(24) > started + timedelta(hours=24)
    assert parse_scratch({"name": "api.varai.ai.", "type": "A"}) is None
    assert parse_scratch({"name": "lifeboat-drill-soon-x.varai.ai.", "type": "A"}) is None


def test_the_fallback_traffic_is_what_a_service_read_back_holds() -> None:
    """Compared with a live service's JSON, the fallback must be equal, or a copy whose
    archived traffic named a revision would never verify (run_v2 writes enums as numbers)."""
    import json

    from google.cloud import run_v2

    from lifeboat.config_items import LATEST_TRAFFIC

    latest = run_v2.TrafficTarget(
        type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
        percent=100,
    )
    read_back = json.loads(run_v2.Service.to_json(run_v2.Service(traffic=[latest])))
    assert read_back["traffic"] == [LATEST_TRAFFIC]


def test_plain_environment_values_are_withheld_from_what_is_recorded() -> None:
    from lifeboat.config_items import redacted

    live = {
        "template": {
            "containers": [
                {"env": [{"name": "TOKEN", "value": "s3cret"}, {"name": "URL", "valueSource": {}}]}
            ]
        }
    }
    shown = redacted(live)
    assert "s3cret" not in str(shown)
    assert shown["template"]["containers"][0]["env"][1] == {"name": "URL", "valueSource": {}}
    assert live["template"]["containers"][0]["env"][0]["value"] == "s3cret"  # not changed


def test_every_backend_service_a_url_map_names_is_found_once_and_buckets_are_not() -> None:
    base = "https://www.googleapis.com/compute/v1/projects/p/global/"
    url_map = {
        "defaultService": base + "backendServices/web",
        "pathMatchers": [
            {
                "name": "m",
                "defaultService": base + "backendServices/web",
                "pathRules": [
                    {"paths": ["/api/*"], "service": base + "backendServices/api"},
                    {"paths": ["/img/*"], "service": base + "backendBuckets/assets"},
                ],
                "routeRules": [
                    {
                        "routeAction": {
                            "weightedBackendServices": [
                                {"backendService": base + "backendServices/canary", "weight": 5}
                            ]
                        }
                    }
                ],
            }
        ],
    }
    links = backend_service_links(url_map)
    assert links == [base + "backendServices/" + n for n in ("web", "api", "canary")]
    assert backend_service_ref(links[1]) == ("p", "api")
    assert backend_service_ref("projects/q/global/backendServices/x") == ("q", "x")
    assert backend_service_ref(base + "backendBuckets/assets") is None
    assert backend_service_ref(base.replace("global", "regions/r") + "backendServices/x") is None


def test_a_load_balancer_item_is_refused_with_the_gcloud_import_that_puts_it_back() -> None:
    uri = "gs://b/config/2026/12/20261206T000000Z/archive.tar.gz.enc"
    said = by_hand(
        "backend-service",
        "projects/p/global/backendServices/web",
        "compute/backendServices/web.json",
        uri,
    )
    assert "gcloud compute backend-services import web --global --source=web.json" in said
    assert "compute/backendServices/web.json" in said and uri in said
    said = by_hand("url-map", "projects/p/global/urlMaps/lb", "compute/urlMaps/lb.json", uri)
    # Backend services first: the url-map names them and Compute refuses a missing one.
    assert said.index("backend-services import") < said.index("url-maps import lb")
    assert "re-applies run-service" in by_hand("other", "x", "x.json", uri)


def test_a_copy_is_internal_only_whatever_the_archive_says() -> None:
    from google.cloud import run_v2

    from lifeboat.config_items import INTERNAL_ONLY, as_copy

    archived = {"ingress": 1, "labels": {"a": "b"}}
    assert as_copy(archived) == {"ingress": INTERNAL_ONLY, "labels": {"a": "b"}}
    assert archived["ingress"] == 1  # the archive itself is not changed
    assert run_v2.IngressTraffic(INTERNAL_ONLY).name == "INGRESS_TRAFFIC_INTERNAL_ONLY"
