"""restore-config through the real Prefect server and worker: an item of a config or
secrets backup put back, after a dry run, against the lab's Cloud DNS, Cloud Run and
Secret Manager emulators; the request log says which writes were made, and how often."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from google.cloud import run_v2

from lab.prefect_api import PrefectApi
from tests.backup.backup_checks import params
from tests.flows.lab_checks import (
    PRIMARY,
    RECORD,
    TOPOLOGY,
    app_secret_value,
    dns_record,
    run_records,
    set_app_secret,
    side_effects,
)
from tests.labharness import Lab

ZONE = TOPOLOGY.dns.zone
RECORD_ITEM = f"dns/{ZONE}/{RECORD.type}/{RECORD.name.rstrip('.')}.json"
SECRET = TOPOLOGY.cloud_sql.app_secret
SECRET_ITEM = f"secrets/{SECRET.project}/{SECRET.name}.json"
SERVICE = TOPOLOGY.services[0].name
SERVICE_ITEM = f"run/{PRIMARY.name}/{SERVICE}.json"
SERVICE_NAME = f"projects/{PRIMARY.project}/locations/{PRIMARY.name}/services/{SERVICE}"


def _backup(api: PrefectApi, kinds: list[str]) -> None:
    final = api.wait(api.launch("config-backup/lab", params(kinds=kinds))["id"], timeout=300)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]


def _restore(api: PrefectApi, **extra: Any) -> dict[str, Any]:
    launched = api.launch("restore-config/lab", params(reason="test", **extra))
    return api.wait(launched["id"], timeout=300)


def _record(lab: Lab, final: dict[str, Any]) -> dict[str, Any]:
    found = run_records(lab, "restore-config", final["id"])
    assert len(found) == 1, found
    return found[0]


def _set_record(lab: Lab, rrdatas: list[str]) -> None:
    """Point the served record elsewhere, as an operator's mistake with gcloud would."""
    now, ttl = dns_record(lab)
    zone = f"{lab.endpoints['dns']}/dns/v1/projects/{TOPOLOGY.dns.project}/managedZones/{ZONE}"
    one = {"name": RECORD.name, "type": RECORD.type, "ttl": ttl}
    reply = httpx.post(
        f"{zone}/changes",
        json={"additions": [{**one, "rrdatas": rrdatas}], "deletions": [{**one, "rrdatas": now}]},
        timeout=10,
    )
    reply.raise_for_status()


def _writes(lab: Lab, since: int, api: str) -> list[tuple[str, str, str]]:
    return [e for e in side_effects(lab, since) if e[0] == api]


def test_a_record_set_is_planned_then_put_back_once_and_a_rerun_changes_nothing(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    _backup(api, ["config"])
    archived, _ = dns_record(fresh_lab)
    _set_record(fresh_lab, ["203.0.113.77"])

    # The dry run (the default) shows the change and makes none.
    since = fresh_lab.last_seq()
    planned = _restore(api, item=RECORD_ITEM)
    assert planned["state"]["type"] == "COMPLETED", planned["state"]["message"]
    record = _record(fresh_lab, planned)
    assert record["outcome"] == "planned" and record["dry_run"] is True
    assert any("203.0.113.77" in line and ",".join(archived) in line for line in record["plan"])
    assert side_effects(fresh_lab, since) == []
    assert [s["name"] for s in record["steps"]] == ["check"]
    assert dns_record(fresh_lab)[0] == ["203.0.113.77"]

    # The served record is the failover's: put back only with force, refused before any
    # change without it, naming the parameter.
    since = fresh_lab.last_seq()
    refused = _restore(api, item=RECORD_ITEM, dry_run=False)
    assert refused["state"]["type"] == "FAILED"
    assert "force:" in refused["state"]["message"], refused["state"]["message"]
    assert side_effects(fresh_lab, since) == []

    # Applied: one change, its first send refused with a 503 and retried; the record holds
    # the set it replaced.
    fresh_lab.fault(api="dns", method="POST", path="/changes$", status=503, count=1)
    since = fresh_lab.last_seq()
    applied = _restore(api, item=RECORD_ITEM, dry_run=False, force=True)
    assert applied["state"]["type"] == "COMPLETED", "\n".join(api.final_logs(applied["id"]))
    assert dns_record(fresh_lab)[0] == archived
    changes = _writes(fresh_lab, since, "dns")
    assert [(m, p.rsplit("/", 1)[-1]) for _, m, p in changes] == [("POST", "changes")]
    record = _record(fresh_lab, applied)
    assert record["outcome"] == "completed"
    assert record["before"]["live"]["rrdatas"] == ["203.0.113.77"]
    assert [s["name"] for s in record["steps"]] == ["check", "region-lock", "apply", "verify"]

    # Again: already as archived, nothing sent, and no lock taken.
    since = fresh_lab.last_seq()
    again = _restore(api, item=RECORD_ITEM, dry_run=False, force=True)
    assert again["state"]["type"] == "COMPLETED", again["state"]["message"]
    assert side_effects(fresh_lab, since) == []
    again_record = _record(fresh_lab, again)
    assert any("nothing to change" in line for line in again_record["plan"])
    assert [s["name"] for s in again_record["steps"]] == ["check"]


def test_a_secret_goes_back_as_a_new_version_and_its_value_is_in_no_record_or_log(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    _backup(api, ["secrets"])
    archived = app_secret_value(fresh_lab)
    set_app_secret(fresh_lab, "postgresql://someone-else@198.51.100.9:5432/varai_prod")

    since = fresh_lab.last_seq()
    final = _restore(api, item=SECRET_ITEM, dry_run=False, force=True)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert app_secret_value(fresh_lab) == archived
    adds = [p for _, m, p in _writes(fresh_lab, since, "secretmanager")]
    assert adds == [f"/v1/{SECRET.resource}:addVersion"]
    record = _record(fresh_lab, final)
    assert record["before"]["live"] is None  # a secret's live value is never recorded
    said = str(record) + "\n".join(api.final_logs(final["id"]))
    assert archived not in said and base64.b64encode(archived.encode()).decode() not in said
    assert "someone-else" not in said

    # Into a new secret: created from the archived metadata, then the value.
    since = fresh_lab.last_seq()
    copy = _restore(api, item=SECRET_ITEM, target="restored-app-secret", dry_run=False)
    assert copy["state"]["type"] == "COMPLETED", copy["state"]["message"]
    made = f"projects/{SECRET.project}/secrets/restored-app-secret"
    assert [p for _, _, p in _writes(fresh_lab, since, "secretmanager")] == [
        f"/v1/projects/{SECRET.project}/secrets",
        f"/v1/{made}:addVersion",
    ]
    got = fresh_lab.clients().secret_manager.access_secret_version(name=f"{made}/versions/latest")
    assert bytes(got.payload.data).decode() == archived


def test_a_run_service_spec_goes_back_and_a_copy_is_created_under_a_new_name(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # Traffic pinned to the serving revision, as a rollback leaves it: a copy under a new
    # name cannot have that revision, so its traffic goes to its own newest one.
    client = fresh_lab.clients().run_services
    pinned = client.get_service(name=SERVICE_NAME)
    serving = pinned.latest_ready_revision.rsplit("/", 1)[-1]
    del pinned.traffic[:]
    pinned.traffic.append(
        run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
            revision=serving,
            percent=100,
        )
    )
    client.update_service(service=pinned).result(timeout=30, polling=fresh_lab.clients().polling)
    _backup(api, ["config"])
    svc = client.get_service(name=SERVICE_NAME)
    archived_labels = dict(svc.labels)
    svc.labels["changed-by"] = "someone"
    svc.scaling.min_instance_count = svc.scaling.min_instance_count + 1
    client.update_service(service=svc).result(timeout=30, polling=fresh_lab.clients().polling)
    revisions_before = len(
        list(fresh_lab.clients().run_revisions.list_revisions(parent=SERVICE_NAME))
    )

    since = fresh_lab.last_seq()
    final = _restore(api, item=SERVICE_ITEM, dry_run=False, force=True)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    now = client.get_service(name=SERVICE_NAME)
    assert dict(now.labels) == archived_labels
    assert now.scaling.min_instance_count == svc.scaling.min_instance_count - 1
    patches = [(m, p) for _, m, p in _writes(fresh_lab, since, "run")]
    assert patches == [("PATCH", f"/v2/{SERVICE_NAME}")]
    [patch] = [e for e in fresh_lab.requests(api="run", method="PATCH", since=since)]
    assert parse_qs(patch["query"])["updateMask"] == ["labels,scaling"]
    # Labels and service-level scaling only: no template change, so no new revision.
    revisions = list(fresh_lab.clients().run_revisions.list_revisions(parent=SERVICE_NAME))
    assert len(revisions) == revisions_before
    record = _record(fresh_lab, final)
    assert sorted(record["before"]["differs"]) == ["labels", "scaling"]
    assert record["before"]["live"]["labels"]["changed-by"] == "someone"

    # A copy under a new name: created from the archived spec.
    since = fresh_lab.last_seq()
    copy = _restore(api, item=SERVICE_ITEM, target=f"{SERVICE}-restored", dry_run=False)
    assert copy["state"]["type"] == "COMPLETED", copy["state"]["message"]
    parent = SERVICE_NAME.rsplit("/services/", 1)[0]
    assert [(m, p) for _, m, p in _writes(fresh_lab, since, "run")] == [
        ("POST", f"/v2/{parent}/services")
    ]
    made = client.get_service(name=f"{parent}/services/{SERVICE}-restored")
    assert made.template.containers[0].image == svc.template.containers[0].image
    assert [t.type_.name for t in made.traffic] == ["TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"]
    # Production's image and service account, so not production's public ingress.
    assert made.ingress.name == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert client.get_service(name=SERVICE_NAME).ingress == svc.ingress  # untouched
    assert any(serving in line for line in _record(fresh_lab, copy)["plan"])


BAD = [
    ({"item": "dns/nowhere/A/missing.example.com.json"}, "item"),
    ({"item": f"compute/urlMaps/{TOPOLOGY.cdn.url_map}.json"}, "item"),
    ({"item": f"compute/backendServices/{TOPOLOGY.cdn.url_map}-backend.json"}, "item"),
    ({"item": RECORD_ITEM, "target": "elsewhere.example.org."}, "target"),
    ({"item": SERVICE_ITEM, "target": "Not_A_Service"}, "target"),
    ({"item": RECORD_ITEM, "backup_id": "19990101T000000Z"}, "backup_id"),
]


def test_bad_items_and_targets_are_refused_before_any_change(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    _backup(api, ["config"])
    since = fresh_lab.last_seq()
    for extra, field in BAD:
        final = _restore(api, dry_run=False, **extra)
        assert final["state"]["type"] == "FAILED", extra
        assert f"{field}:" in final["state"]["message"], (extra, final["state"]["message"])
        if extra["item"].startswith("compute/"):  # kept whole: the refusal says how to import it
            kind = "url-maps" if "/urlMaps/" in extra["item"] else "backend-services"
            assert f"gcloud compute {kind} import" in final["state"]["message"]
            assert extra["item"] in final["state"]["message"]
    assert side_effects(fresh_lab, since) == []


def test_malformed_parameters_are_refused_at_launch(fresh_lab: Lab, api: PrefectApi) -> None:
    since = fresh_lab.last_seq()
    for extra, field in (
        ({"item": ""}, "item"),
        ({"item": "x", "backup_id": "latest"}, "backup_id"),
    ):
        with pytest.raises(httpx.HTTPStatusError) as err:
            api.launch("restore-config/lab", params(**extra))
        assert err.value.response.status_code == 409
        assert field in err.value.response.text
    assert fresh_lab.requests(since=since) == []
