"""rollback through the real Prefect server, a process worker and the lab's Cloud Run."""

from __future__ import annotations

import json

import httpx

from lab.prefect_api import PrefectApi
from tests.flows.lab_checks import (
    PRIMARY,
    SECONDARY,
    TOPOLOGY,
    incident,
    read_object,
    side_effects,
)
from tests.flows.rollback_helpers import (
    deploy_new_revision,
    revision_image,
    run_patches,
    serving,
    set_revision_health,
)
from tests.labharness import Lab

SERVICES = [s.name for s in TOPOLOGY.services]
RECORDS = TOPOLOGY.backups.records_bucket


def record_of(lab: Lab, inc: str, kind: str = "") -> dict[str, object]:
    """The incident's record; ``kind=".plan"``: its dry run's."""
    return dict(json.loads(read_object(lab, RECORDS, f"rollbacks/{inc}{kind}.json")))


def test_rollback_plans_switches_verifies_and_refuses_a_completed_incident(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    revisions = {name: deploy_new_revision(fresh_lab, name) for name in SERVICES}

    # Dry run: the exact plan, and nothing changes.
    since = fresh_lab.last_seq()
    plan_inc = incident("RB")
    run = api.launch(
        "rollback/lab", {"reason": "bad release", "incident_id": plan_inc, "dry_run": True}
    )
    assert api.wait(run["id"])["state"]["type"] == "COMPLETED"
    assert run_patches(fresh_lab, since) == []
    planned = record_of(fresh_lab, plan_inc, ".plan")
    assert planned["outcome"] == "planned"
    assert planned["plan"] == [f"traffic {n}: {new} → {old}" for n, (old, new) in revisions.items()]
    markdown = " ".join(str(a.get("data") or "") for a in api.artifacts(run["id"]))
    assert "## Plan" in markdown and "traffic auth-service:" in markdown

    # The rollback: one PATCH per service, each now serving its previous revision.
    since = fresh_lab.last_seq()
    inc = incident("RB")
    run = api.launch(
        "rollback/lab", {"reason": "bad release", "incident_id": inc, "operator": "ops"}
    )
    final = api.wait(run["id"])
    assert final["state"]["type"] == "COMPLETED", final["state"]
    for name, (old, _new) in revisions.items():
        assert serving(fresh_lab, name) == {old: 100}
        assert len(run_patches(fresh_lab, since, name)) == 1
    region_app = f"region-app/{TOPOLOGY.regions.primary.name}"
    checked = {e["path"] for e in fresh_lab.requests(api=region_app, since=since)}
    assert {"/auth/status", "/ai/status", "/recommendations/status"} <= checked
    record = record_of(fresh_lab, inc)
    assert record["outcome"] == "completed"
    assert record["operator"] == "ops"
    assert sorted(record["after"]["rolled_back"]) == sorted(SERVICES)  # type: ignore[index]
    assert record["after"]["failed"] == {}  # type: ignore[index]

    # Done: re-running the incident is refused before any change, and its record kept. Its
    # cached plan would otherwise roll back whatever was released since, to its targets.
    since = fresh_lab.last_seq()
    again = api.launch("rollback/lab", {"reason": "bad release", "incident_id": inc})
    refused = api.wait(again["id"])
    assert refused["state"]["type"] == "FAILED", refused["state"]
    assert f"incident_id: {inc} completed its rollback at " in refused["state"]["message"]
    assert run_patches(fresh_lab, since) == []
    assert record_of(fresh_lab, inc) == record
    # An explicit target that already serves is a "keep" in the plan.
    auth_old = revisions["auth-service"][0]
    keep = api.launch(
        "rollback/lab",
        {
            "reason": "pin auth",
            "services": ["auth-service"],
            "target_revisions": {"auth-service": auth_old},
            "dry_run": True,
        },
    )
    assert api.wait(keep["id"])["state"]["type"] == "COMPLETED"
    markdown = " ".join(str(a.get("data") or "") for a in api.artifacts(keep["id"]))
    assert f"keep auth-service on {auth_old}" in markdown


def test_unhealthy_target_refused_and_failed_service_does_not_stop_others(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    auth = deploy_new_revision(fresh_lab, "auth-service")
    ai = deploy_new_revision(fresh_lab, "ai-service")
    face = deploy_new_revision(fresh_lab, "face-service")
    set_revision_health(fresh_lab, auth[0], False)  # auth's previous revision is broken
    fresh_lab.fault(api="run", method="PATCH", path="services/ai-service$", status=403)
    since = fresh_lab.last_seq()
    inc = incident("RB")
    run = api.launch(
        "rollback/lab",
        {
            "reason": "bad release",
            "incident_id": inc,
            "services": ["auth-service", "ai-service", "face-service"],
        },
    )
    final = api.wait(run["id"])
    assert final["state"]["type"] == "FAILED", final["state"]

    assert serving(fresh_lab, "auth-service") == {auth[1]: 100}  # refused: untouched
    assert run_patches(fresh_lab, since, "auth-service") == []
    assert serving(fresh_lab, "ai-service") == {ai[1]: 100}  # the PATCH was refused
    assert serving(fresh_lab, "face-service") == {face[0]: 100}  # the others went ahead
    record = record_of(fresh_lab, inc)
    assert record["outcome"] == "failed"
    after = record["after"]
    assert after["rolled_back"] == ["face-service"]  # type: ignore[index]
    failed = after["failed"]  # type: ignore[index]
    assert sorted(failed) == ["ai-service", "auth-service"]
    assert "not Ready" in failed["auth-service"]
    assert "ai-service" in str(final["state"]["message"]) or "ai-service" in str(record["error"])


def test_bad_parameters_are_rejected_before_any_side_effect(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    since = fresh_lab.last_seq()
    # The deployment's parameter schema refuses a malformed name at the API.
    response = api.http.post(
        f"/deployments/{api.deployment_id('rollback/lab')}/create_flow_run",
        json={"parameters": {"reason": "x", "services": ["Not A Service!"]}},
    )
    assert response.status_code in (409, 422), response.text
    # A well-formed but unknown service fails the run, naming the parameter.
    run = api.launch("rollback/lab", {"reason": "bad release", "services": ["nope-service"]})
    final = api.wait(run["id"])
    assert final["state"]["type"] == "FAILED"
    assert "services: unknown service(s) nope-service" in str(final["state"]["message"])
    run = api.launch("rollback/lab", {"reason": "  "})
    assert api.wait(run["id"])["state"]["type"] == "FAILED"
    assert side_effects(fresh_lab, since) == []
    assert httpx.get(f"{fresh_lab.control}/_lab/health", timeout=5).status_code == 200


def test_a_rollback_is_refused_while_another_switch_holds_the_region_lock(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # Imported here: importing prefect at collection would freeze its settings before the
    # session's lab sets PREFECT_API_URL (tests.labharness checks for that).
    from tasks.storage import lease_acquire, lease_release, read_lease

    auth = deploy_new_revision(fresh_lab, "auth-service")
    failover_incident = incident("FO")
    lease_acquire.fn("lab", failover_incident, "failover", "oncall@example.com")
    try:
        since = fresh_lab.last_seq()
        run = api.launch("rollback/lab", {"reason": "bad release", "services": ["auth-service"]})
        final = api.wait(run["id"])
        assert final["state"]["type"] == "FAILED", final["state"]
        message = str(final["state"]["message"])
        assert "region lock for lab is held" in message and failover_incident in message
        assert run_patches(fresh_lab, since) == []
        assert serving(fresh_lab, "auth-service") == {auth[1]: 100}
        held = read_lease("lab")
        assert held is not None and held.incident_id == failover_incident
    finally:
        lease_release.fn("lab", failover_incident)


def test_after_a_failover_rollback_still_picks_a_revision_with_another_image(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # A release reached the secondary too (image v2 after the seeded v1), then a failover.
    releases = {n: deploy_new_revision(fresh_lab, n, region=SECONDARY) for n in SERVICES}
    fresh_lab.outage(PRIMARY.name, True)
    failover = api.launch("failover/lab", {"reason": "outage", "incident_id": incident("FO")})
    assert api.wait(failover["id"])["state"]["type"] == "COMPLETED"

    inc = incident("RB")
    run = api.launch(
        "rollback/lab",
        {"reason": "bad release", "incident_id": inc, "dry_run": True, "region": "secondary"},
    )
    assert api.wait(run["id"])["state"]["type"] == "COMPLETED"

    plan = record_of(fresh_lab, inc, ".plan")["plan"]
    # The failover scaled at the service level: no scaling revision stands between the
    # release and its predecessor, so the target is the previous image, not a copy of v2.
    # The one service that reads the database URL as an env var (recommendation-service)
    # now serves a copy of v2 the failover rolled so its instances read the new secret
    # version: rollback looks past that copy too, to v1.
    now = {name: next(iter(serving(fresh_lab, name, SECONDARY))) for name in releases}
    assert plan == [f"traffic {n}: {now[n]} → {old}" for n, (old, _) in releases.items()]
    for name, (old, new) in releases.items():
        assert (now[name] != new) is (name == "recommendation-service"), name
        assert revision_image(fresh_lab, name, old, SECONDARY).endswith(":v1")
        assert revision_image(fresh_lab, name, new, SECONDARY).endswith(":v2")
        assert revision_image(fresh_lab, name, now[name], SECONDARY).endswith(":v2")
