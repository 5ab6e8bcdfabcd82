"""The lab's judge of calls (lab/core/discovery.py, lab/core/schema.py), with no lab.

Google's own discovery documents, as google-api-python-client ships them, are the input:
path matching, query parameters, request bodies and replies.
"""

from __future__ import annotations

import json
import timeit

import pytest

from lab.core.discovery import REQUEST, RESPONSE, Schemas, template_pattern
from lab.core.schema import (
    DOCUMENTS,
    ApiSchema,
    body_problems,
    query_problems,
    response_problems,
    schema_for,
)

SERVICES = "/v2/projects/p/locations/us-central1/services"
SECRET = "/v1/projects/p/secrets/db-url"


def method(api: str, verb: str, path: str) -> str:
    found = schema_for(api).match(verb, path)  # type: ignore[union-attr]
    assert found is not None, f"{verb} {path} matched nothing"
    return found.id


def test_every_api_the_lab_serves_loads_its_documents() -> None:
    counts = {api: schema_for(api).method_count() for api in DOCUMENTS}  # type: ignore[union-attr]
    assert counts["storage"] == 87 and counts["run"] == 59 and counts["compute"] > 1000
    assert schema_for("front-door") is None  # not a Google API: never judged


def test_reserved_expansion_may_hold_slashes_a_plain_variable_may_not() -> None:
    assert template_pattern("v2/{+name}").match("v2/projects/p/locations/l/services/s")
    assert not template_pattern("b/{bucket}/o").match("b/a/b/o")
    assert template_pattern("b/{bucket}/o/{object}").match("b/bk/o/2026%2F12%2Fdump.sql")


@pytest.mark.parametrize(
    ("api", "verb", "path", "expected"),
    [
        ("run", "PATCH", SERVICES + "/api", "run.projects.locations.services.patch"),
        (
            "run",
            "POST",
            "/v2/projects/p/locations/l/operations/o:wait",
            "run.projects.locations.operations.wait",
        ),
        (
            "secretmanager",
            "GET",
            SECRET + "/versions/3:access",
            "secretmanager.projects.secrets.versions.access",
        ),
        (
            "secretmanager",
            "GET",
            SECRET + "/versions/3",
            "secretmanager.projects.secrets.versions.get",
        ),
        ("storage", "GET", "/storage/v1/b/bk/o/a%2Fb", "storage.objects.get"),
        ("storage", "GET", "/download/storage/v1/b/bk/o/a%2Fb", "storage.objects.get"),
        ("storage", "POST", "/upload/storage/v1/b/bk/o", "storage.objects.insert"),
        ("storage", "POST", "/resumable/upload/storage/v1/b/bk/o", "storage.objects.insert"),
        ("storage", "POST", "/storage/v1/b/a/o/x/rewriteTo/b/c/o/y", "storage.objects.rewrite"),
        (
            "sql",
            "POST",
            "/v1/projects/p/instances/i/promoteReplica",
            "sql.instances.promoteReplica",
        ),
        (
            "sql",
            "POST",
            "/sql/v1beta4/projects/p/instances/i/promoteReplica",
            "sql.instances.promoteReplica",
        ),
        (
            "dns",
            "GET",
            "/dns/v1/projects/p/managedZones/z/rrsets/a.example./A",
            "dns.resourceRecordSets.get",
        ),
        (
            "compute",
            "POST",
            "/compute/v1/projects/p/global/urlMaps/u/invalidateCache",
            "compute.urlMaps.invalidateCache",
        ),
    ],
)
def test_calls_match_their_discovery_method(api: str, verb: str, path: str, expected: str) -> None:
    assert method(api, verb, path) == expected


def test_a_path_or_verb_google_does_not_serve_matches_nothing() -> None:
    run = schema_for("run")
    assert run is not None
    assert run.match("GET", "/v2/projects/p/locations/l/widgets") is None
    assert run.match("PUT", SERVICES + "/api") is None  # services are PATCHed, never PUT
    storage = schema_for("storage")
    assert storage is not None
    # a resumable session URI is listed as exempt, with its reason, not as a method
    assert storage.exempt("PUT", "/upload/storage/v1/b/bk/o")
    assert not storage.exempt("POST", "/storage/v1/b/bk/o")


def _method(api: str, verb: str, path: str):  # type: ignore[no-untyped-def]
    schema = schema_for(api)
    assert isinstance(schema, ApiSchema)
    found = schema.match(verb, path)
    assert found is not None
    return found


def test_an_unknown_query_parameter_is_refused_in_googles_words() -> None:
    patch = _method("run", "PATCH", SERVICES + "/api")
    assert query_problems(patch, "updateMask=ingress&validateOnly=false") == []
    [problem] = query_problems(patch, "updateMask=ingress&force=true")
    assert problem.message == (
        'Invalid JSON payload received. Unknown name "force": Cannot bind query parameter. '
        "Field 'force' could not be found in request message."
    )


def test_system_parameters_are_accepted_everywhere() -> None:
    patch = _method("run", "PATCH", SERVICES + "/api")
    query = "%24alt=json%3Benum-encoding%3Dint&fields=name&prettyPrint=false&quotaUser=x"
    assert query_problems(patch, query) == []


def test_wrong_types_enums_and_missing_required_parameters_are_refused() -> None:
    listing = _method("storage", "GET", "/storage/v1/b")
    assert [p.message for p in query_problems(listing, "project=p&maxResults=ten")] == [
        "Invalid value at 'maxResults' (TYPE_UINT32), \"ten\""
    ]
    assert [p.message for p in query_problems(listing, "project=p&projection=everything")] == [
        "Invalid value at 'projection' (TYPE_ENUM), \"everything\""
    ]
    [missing] = query_problems(listing, "maxResults=5")
    assert (missing.message, missing.reason) == ("Required parameter: project", "required")
    assert query_problems(listing, "project=p&maxResults=5&projection=full") == []


def test_an_unknown_body_field_is_refused_with_its_place_named() -> None:
    create = _method("run", "POST", SERVICES)
    body = {"template": {"containers": [{"image": "x", "colour": "red"}]}, "foo": 1}
    assert [p.message for p in body_problems(create, json.dumps(body).encode())] == [
        "Invalid JSON payload received. Unknown name \"colour\" at 'template.containers[0]': "
        "Cannot find field.",
        'Invalid JSON payload received. Unknown name "foo": Cannot find field.',
    ]


def test_int64_may_be_a_string_or_a_number_in_a_request_and_only_a_string_in_a_reply() -> None:
    schemas = Schemas(
        {"Thing": {"type": "object", "properties": {"size": {"type": "string", "format": "int64"}}}}
    )
    assert schemas.problems("Thing", {"size": "12"}, REQUEST) == []
    assert schemas.problems("Thing", {"size": 12}, REQUEST) == []
    assert schemas.problems("Thing", {"size": "12"}, RESPONSE) == []
    [problem] = schemas.problems("Thing", {"size": 12}, RESPONSE)
    assert problem.message == "Invalid value at 'size' (TYPE_INT64), 12"
    [bad] = schemas.problems("Thing", {"size": "twelve"}, REQUEST)
    assert "TYPE_INT64" in bad.message


def test_an_enum_takes_its_names_and_in_a_request_its_numbers() -> None:
    run = _method("run", "PATCH", SERVICES + "/api")
    ok = {"ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY"}
    assert body_problems(run, json.dumps(ok).encode()) == []
    assert body_problems(run, json.dumps({"ingress": 2}).encode()) == []  # proto3 JSON
    [problem] = body_problems(run, json.dumps({"ingress": "INTERNAL"}).encode())
    assert problem.message == "Invalid value at 'ingress' (TYPE_ENUM), \"INTERNAL\""


def test_additional_properties_maps_take_any_key_and_check_each_value() -> None:
    run = _method("run", "PATCH", SERVICES + "/api")
    labels = {"labels": {"team": "sre", "any-key": "x"}}
    assert body_problems(run, json.dumps(labels).encode()) == []
    [problem] = body_problems(run, json.dumps({"labels": {"team": 7}}).encode())
    assert problem.message == "Invalid value at 'labels.team' (TYPE_STRING), 7"


def test_a_reply_is_judged_by_the_methods_response_schema() -> None:
    get = _method("secretmanager", "GET", SECRET)
    good = {"name": "projects/1/secrets/db-url", "replication": {"automatic": {}}}
    assert response_problems(get, json.dumps(good).encode()) == []
    bad = {**good, "createdBy": "lab", "replication": {"automatic": {}, "kind": 1}}
    assert response_problems(get, json.dumps(bad).encode()) == [
        "Invalid JSON payload received. Unknown name \"kind\" at 'replication': Cannot find field.",
        'Invalid JSON payload received. Unknown name "createdBy": Cannot find field.',
    ]
    delete = _method("storage", "DELETE", "/storage/v1/b/bk/o/x")
    assert response_problems(delete, b"") == []
    assert response_problems(delete, b'{"deleted": true}') == [
        "storage.objects.delete has no response body, the lab sent one"
    ]


def test_judging_a_call_costs_well_under_a_millisecond() -> None:
    patch = _method("run", "PATCH", SERVICES + "/api")
    body = json.dumps(
        {
            "template": {
                "containers": [{"image": "gcr.io/p/api:2", "env": [{"name": "A", "value": "b"}]}],
                "scaling": {"minInstanceCount": 1, "maxInstanceCount": 10},
            },
            "labels": {"team": "sre"},
        }
    ).encode()
    run = schema_for("run")
    assert run is not None

    def judge() -> None:
        found = run.match("PATCH", SERVICES + "/api")
        assert found is patch
        assert not query_problems(found, "updateMask=template&%24alt=json")
        assert not body_problems(found, body)

    per_call = min(timeit.repeat(judge, number=200, repeat=3)) / 200
    assert per_call < 1e-3, f"{per_call * 1e6:.0f} µs per call"


def test_an_update_mask_must_name_fields_of_the_resource() -> None:
    patch = _method("run", "PATCH", SERVICES + "/api")
    for good in (
        "scaling.minInstanceCount,scaling.maxInstanceCount",
        "scaling.min_instance_count",  # proto names too
        "template.annotations,template.containers,template.revision",
        "labels.team",  # a key of a map
    ):
        assert query_problems(patch, f"updateMask={good}") == [], good
    assert [p.message for p in query_problems(patch, "updateMask=scaling.minimum,ingress")] == [
        'Invalid updateMask: "scaling.minimum" is not a field of GoogleCloudRunV2Service'
    ]
    # a repeated field may only end a path
    [past_a_list] = query_problems(patch, "updateMask=template.containers.image")
    assert "template.containers.image" in past_a_list.message
