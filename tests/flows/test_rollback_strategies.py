"""Seed 004's two rollback strategies, the validation period and the post-rollback checks,
through the real Prefect server, a process worker and the lab."""

from __future__ import annotations

import json
from typing import Any

from lab.prefect_api import PrefectApi
from tests.flows.lab_checks import TOPOLOGY, incident, read_object, side_effects
from tests.flows.rollback_helpers import (
    deploy_blue_green,
    deploy_new_revision,
    revision_image,
    run_patches,
    serving,
    set_revision_health,
    tags,
)
from tests.labharness import Lab

RECORDS = TOPOLOGY.backups.records_bucket
REGION_APP = f"region-app/{TOPOLOGY.regions.primary.name}"


def record_of(lab: Lab, inc: str) -> dict[str, Any]:
    return dict(json.loads(read_object(lab, RECORDS, f"rollbacks/{inc}.json")))


def cdn_purges(lab: Lab, since: int) -> list[str]:
    return [
        e["path"]
        for e in lab.requests(api="compute", method="POST", since=since)
        if e["path"].endswith("/invalidateCache") and e["status"] < 400
    ]


def test_a_traffic_rollback_switches_blue_green_then_purges_checks_and_validates(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    releases = {n: deploy_blue_green(fresh_lab, n) for n in ("auth-service", "ai-service")}
    since = fresh_lab.last_seq()
    inc = incident("RB")

    run = api.launch(
        "rollback/lab",
        {
            "reason": "bad release",
            "incident_id": inc,
            "services": list(releases),
            "strategy": "traffic",
        },
    )
    final = api.wait(run["id"])

    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert final["name"] == "rollback-traffic"
    for name, (blue, green) in releases.items():
        assert serving(fresh_lab, name) == {blue: 100}
        assert tags(fresh_lab, name) == {"blue": blue, "green": green}  # both kept
        assert len(run_patches(fresh_lab, since, name)) == 1
    record = record_of(fresh_lab, inc)
    assert record["plan"] == [f"traffic {n}: {g} → {b}" for n, (b, g) in releases.items()]
    execution = record["execution"]
    assert (execution["strategy"], execution["budget_s"]) == ("traffic", 30)
    assert 0 < execution["measured_s"] < 60 and isinstance(execution["within_budget"], bool)
    validation = record["validation"]
    assert validation["passed"] is True and validation["period_s"] == 300
    assert set(validation["criteria"]) == {
        "health_success_rate",
        "error_rate",
        "p95_latency_s",
        "journeys",
    }
    assert validation["criteria"]["health_success_rate"]["value"] == 1.0
    # What the lab saw after the switch: one purge per CDN path, the journeys in rounds,
    # Monitoring read for the period, the integrity queries' step done.
    assert len(cdn_purges(fresh_lab, since)) == len(TOPOLOGY.cdn.paths)
    probed = [e["path"] for e in fresh_lab.requests(api=REGION_APP, since=since)]
    rounds = TOPOLOGY.rollback_validation.rounds
    for journey in TOPOLOGY.rollback_validation.journeys:
        assert probed.count(journey.path) >= rounds, journey.path
    assert any(
        e["path"].endswith("/timeSeries") for e in fresh_lab.requests(api="monitoring", since=since)
    )
    steps = {s["name"]: s["outcome"] for s in record["steps"]}
    assert steps["cdn-purge"] == steps["integrity"] == steps["validation"] == "done"
    assert [s["name"] for s in record["steps"]][-3:] == ["cdn-purge", "integrity", "validation"]


def test_a_traffic_rollback_refuses_a_service_without_a_blue_green_pair_or_a_sick_partner(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    untagged = deploy_new_revision(fresh_lab, "auth-service")
    blue, green = deploy_blue_green(fresh_lab, "ai-service")
    set_revision_health(fresh_lab, blue, False)
    since = fresh_lab.last_seq()
    inc = incident("RB")

    run = api.launch(
        "rollback/lab",
        {
            "reason": "bad release",
            "incident_id": inc,
            "services": ["auth-service", "ai-service"],
            "strategy": "traffic",
        },
    )
    final = api.wait(run["id"])

    assert final["state"]["type"] == "FAILED", final["state"]
    assert run_patches(fresh_lab, since) == []
    assert cdn_purges(fresh_lab, since) == []
    assert serving(fresh_lab, "auth-service") == {untagged[1]: 100}
    assert serving(fresh_lab, "ai-service") == {green: 100}
    failed = record_of(fresh_lab, inc)["after"]["failed"]
    assert "no blue/green pair" in failed["auth-service"]
    assert f"target revision {blue} is not Ready" in failed["ai-service"]


def test_a_service_rollback_goes_to_the_previous_image_past_a_blue_green_partner(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # v1 (blue) → v2 (green, serving) → a configuration change of v2: the previous image
    # is v1, whatever revision came between.
    blue, _green = deploy_blue_green(fresh_lab, "auth-service")
    inc = incident("RB")

    run = api.launch(
        "rollback/lab",
        {"reason": "bad release", "incident_id": inc, "services": ["auth-service"]},
    )
    final = api.wait(run["id"])

    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert final["name"] == "rollback-service"
    assert serving(fresh_lab, "auth-service") == {blue: 100}
    assert revision_image(fresh_lab, "auth-service", blue).endswith(":v1")
    record = record_of(fresh_lab, inc)
    assert (record["execution"]["strategy"], record["execution"]["budget_s"]) == ("service", 120)
    assert record["validation"]["period_s"] == 600 and record["validation"]["passed"] is True


def test_a_failed_validation_fails_the_run_notifies_and_holds_off_the_next_automatic(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    api.forget_runs("rollback")  # no automatic rollback inside the minimum delay yet
    old, new = deploy_new_revision(fresh_lab, "auth-service")
    since = fresh_lab.last_seq()
    inc = incident("RB")
    journeys = [{"path": "/no-such-journey", "expected_status": 200}]

    def broken_journey(data: dict[str, Any]) -> None:
        data["rollback_validation"] = {"journeys": journeys}

    with fresh_lab.topology_edited(broken_journey):
        run = api.launch(
            "rollback/lab",
            {
                "reason": "automatic: test",
                "incident_id": inc,
                "services": ["auth-service"],
                "automatic": True,
                "operator": "lifeboat-watch",
                "trigger": "auth-service error_rate 0.5 > 0.05 over 600 s → service rollback",
            },
        )
        final = api.wait(run["id"])

    assert final["state"]["type"] == "FAILED", final["state"]
    assert "validation failed" in final["state"]["message"]
    assert "journeys 0.0" in final["state"]["message"]
    assert final["name"].startswith("rollback-service: auth-service error_rate 0.5")
    assert serving(fresh_lab, "auth-service") == {old: 100}  # the switch itself happened
    record = record_of(fresh_lab, inc)
    assert record["outcome"] == "failed"
    assert record["cause"].startswith("auth-service error_rate")
    validation = record["validation"]
    assert validation["passed"] is False
    assert validation["criteria"]["journeys"]["passed"] is False
    assert validation["criteria"]["health_success_rate"]["passed"] is True
    assert record["notifications"], "a failed validation notifies"

    # Another automatic rollback inside the minimum delay stands down, changing nothing.
    patches = run_patches(fresh_lab, since)
    second = api.wait(
        api.launch(
            "rollback/lab",
            {
                "reason": "automatic: again",
                "services": ["auth-service"],
                "automatic": True,
                "operator": "lifeboat-watch",
            },
        )["id"]
    )
    assert (second["state"]["type"], second["state"]["name"]) == ("COMPLETED", "Cooldown")
    assert run_patches(fresh_lab, since) == patches
    assert new not in serving(fresh_lab, "auth-service")


def test_bad_strategy_or_trigger_refused_before_any_side_effect_naming_the_field(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    since = fresh_lab.last_seq()
    deployment = api.deployment_id("rollback/lab")
    for parameters, field in (
        ({"reason": "x", "strategy": "sideways"}, "strategy"),
        ({"reason": "x", "trigger": "t" * 301}, "trigger"),
    ):
        response = api.http.post(
            f"/deployments/{deployment}/create_flow_run", json={"parameters": parameters}
        )
        assert response.status_code in (409, 422), response.text
        assert field in response.text
    assert side_effects(fresh_lab, since) == []
