"""failover's guards: bad input, dry run, the approval pause, one switch at a time, secrets."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from google.api_core.exceptions import NotFound

from lab.prefect_api import PrefectApi
from lifeboat.topology import RegionRole
from tests.flows.lab_checks import (
    PRIMARY,
    RECORD,
    REPLICA,
    TOPOLOGY,
    app_secret_value,
    dns_record,
    incident,
    instance_type,
    read_object,
    side_effects,
)
from tests.labharness import Lab

OLD = TOPOLOGY.cloud_sql.primary


def _message(run: dict) -> str:
    return str(run["state"].get("message") or "")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"reason": "x", "incident_id": "bad id with spaces"}, "incident_id"),
        ({"reason": "x", "environment": "Prod!"}, "environment"),
        ({"reason": "x", "mode": "reckless"}, "mode"),
    ],
)
def test_bad_parameters_are_refused_by_the_api(
    lab: Lab, api: PrefectApi, params: dict, field: str
) -> None:
    with pytest.raises(httpx.HTTPStatusError) as err:
        api.launch("failover/lab", params)
    assert err.value.response.status_code == 409
    assert field in err.value.response.text


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"reason": "   "}, "reason: must not be empty"),
        ({"reason": "x", "environment": "prod"}, "unknown environment 'prod'"),
    ],
)
def test_bad_input_fails_before_any_side_effect(
    fresh_lab: Lab, api: PrefectApi, params: dict, expected: str
) -> None:
    since = fresh_lab.last_seq()
    final = api.wait(api.launch("failover/lab", params)["id"])
    assert final["state"]["type"] == "FAILED"
    assert expected in _message(final)
    assert side_effects(fresh_lab, since) == []


def test_dry_run_prints_the_exact_plan_and_changes_nothing(fresh_lab: Lab, api: PrefectApi) -> None:
    since = fresh_lab.last_seq()
    inc = incident("DRY")
    run = api.launch("failover/lab", {"reason": "plan it", "incident_id": inc, "dry_run": True})
    assert api.wait(run["id"])["state"]["type"] == "COMPLETED"
    assert side_effects(fresh_lab, since) == []
    assert dns_record(fresh_lab) == (RECORD.rrdatas[RegionRole.primary], RECORD.ttl)
    # The plan has an object of its own: it writes over no run's evidence.
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.plan.json")
    )
    assert record["outcome"] == "planned"
    plan = record["plan"]
    assert "DNS api.varai.ai. A: 34.120.10.10 (ttl 300) → 34.140.20.20 (ttl 60)" in plan
    # The effective capacity now, read from both levels, and the service-level target.
    assert (
        "scale us-east1/auth-service: 0..10 (service-level -..-, revision 0..10)"
        " → service-level 3..50"
    ) in plan
    # The primary is healthy: a graceful failover fences its services first, waits for
    # the replica to receive what it wrote, then promotes; it lifts the fence at the end.
    services = [svc.name for svc in TOPOLOGY.services]
    assert plan[: len(services)] == [
        f"fence {PRIMARY.name}/{name}: ingress INGRESS_TRAFFIC_ALL → INGRESS_TRAFFIC_INTERNAL_ONLY"
        " (public traffic and writes stop: the planned outage starts)"
        for name in services
    ]
    database, wait, promote, opened, add = plan[len(services) : len(services) + 5]
    assert database.startswith(f"fence varai_user on {OLD.project}:{OLD.instance}: NOLOGIN")
    assert wait.startswith(f"wait for {REPLICA.instance} to receive all the WAL")
    assert promote.startswith(f"promote {REPLICA.project}:{REPLICA.instance} (read replica")
    assert "after the fence and the wait" in promote
    assert opened.startswith(f"let varai_user log in to {REPLICA.instance} once promoted")
    assert "invalidate varai-cdn-lb api.varai.ai/*" in plan
    secret = TOPOLOGY.cloud_sql.app_secret.resource
    # The secret's new version comes next, before the scale-up, and the plan says why.
    assert add.startswith(f"add a version of secret {secret} naming {REPLICA.instance}")
    assert "before the scale-up" in add
    assert plan[-len(services) - 1 : -1] == [
        f"lift the fence: {PRIMARY.name}/{name} ingress → INGRESS_TRAFFIC_ALL (once it names"
        " the promoted database; else kept)"
        for name in services
    ]
    # Last, after the fence is lifted: the backups a promoted replica does not keep.
    assert plan[-1].startswith(
        f"turn on backups and point-in-time recovery on {REPLICA.instance}"
    ), plan[-1]
    assert "Cloud SQL restarts it to turn PITR on" in plan[-1]
    markdown = [a for a in api.artifacts(run["id"]) if a["type"] == "markdown"]
    assert markdown and "34.140.20.20 (ttl 60)" in markdown[0]["data"]


def _wait_record(lab: Lab, name: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return dict(json.loads(read_object(lab, TOPOLOGY.backups.records_bucket, name)))
        except NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _paused(api: PrefectApi, reason: str, **extra: object) -> tuple[str, str]:
    inc = incident("PAUSE")
    run = api.launch("failover/lab", {"reason": reason, "incident_id": inc, **extra})
    api.wait(run["id"], states={"PAUSED", "FAILED", "COMPLETED", "CRASHED"})
    assert api.state(run["id"]) == "PAUSED"
    return run["id"], inc


def test_healthy_primary_pauses_and_approval_proceeds(fresh_lab: Lab, api: PrefectApi) -> None:
    run_id, inc = _paused(api, "planned switchover")
    answer = api.resume(run_id, {"approved": True, "approver": "sre-on-call", "note": "go"})
    assert answer["status"] == "ACCEPT"
    assert api.wait(run_id)["state"]["type"] == "COMPLETED"
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    assert record["approval"]["approver"] == "sre-on-call"
    assert "the primary looks healthy" in record["approval"]["reasons"][0]
    assert instance_type(fresh_lab, REPLICA.project, REPLICA.instance) == "CLOUD_SQL_INSTANCE"


def test_rejected_approval_changes_nothing(fresh_lab: Lab, api: PrefectApi) -> None:
    since = fresh_lab.last_seq()
    run_id, inc = _paused(api, "maybe not")
    api.resume(run_id, {"approved": False, "approver": "sre-lead", "note": "primary is fine"})
    final = api.wait(run_id)
    assert final["state"]["type"] == "FAILED"
    assert "rejected by sre-lead" in _message(final)
    assert side_effects(fresh_lab, since) == []
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    assert record["outcome"] == "rejected"
    # Who refused, and why, is part of the evidence.
    assert record["approval"]["approved"] is False
    assert (record["approval"]["approver"], record["approval"]["note"]) == (
        "sre-lead",
        "primary is fine",
    )
    assert "the primary looks healthy" in record["approval"]["reasons"][0]


def test_approval_timeout_changes_nothing(fresh_lab: Lab, api: PrefectApi) -> None:
    since = fresh_lab.last_seq()
    run_id, inc = _paused(api, "nobody answers", approval_timeout_s=10)
    final = api.wait(run_id, timeout=60)
    # The server fails an expired pause itself ("never resumed"); the flow still writes
    # its own record saying so, once its poller sees the timeout.
    assert final["state"]["type"] == "FAILED"
    record = _wait_record(fresh_lab, f"failover/{inc}.json")
    assert record["outcome"] == "rejected"
    assert "no approval within 10 s; nothing was changed" in record["error"]
    assert record["approval"]["approved"] is False and record["approval"]["note"] == "timed out"
    assert side_effects(fresh_lab, since) == []


def _winner_and_loser(api: PrefectApi, launches: list[dict]) -> list[dict]:
    """Launch failovers at the same moment, one thread each; their final runs, of which
    exactly one completed and one failed."""
    runs: list[dict] = []
    lock = threading.Lock()

    def launch(parameters: dict) -> None:
        run = api.launch("failover/lab", parameters)
        with lock:
            runs.append(run)

    threads = [threading.Thread(target=launch, args=(p,)) for p in launches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    finals = [api.wait(r["id"]) for r in runs]
    states = sorted(f["state"]["type"] for f in finals)
    assert states == ["COMPLETED", "FAILED"], [_message(f) for f in finals]
    return finals


def test_two_concurrent_failovers_exactly_one_runs(fresh_lab: Lab, api: PrefectApi) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()
    finals = _winner_and_loser(
        api, [{"reason": f"race {n}", "incident_id": incident(f"RACE{n}")} for n in range(2)]
    )
    loser = next(f for f in finals if f["state"]["type"] == "FAILED")
    winner = next(f for f in finals if f["state"]["type"] == "COMPLETED")
    # Refused by the lease, naming the holder's flow and incident: an operator knows at
    # once whose switch runs. (`make reliability` storms it with a dozen launches.)
    held_by = f"failover for incident {winner['parameters']['incident_id']}"
    assert f"region lock for lab is held: {held_by}" in _message(loser), _message(loser)
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1
    assert kinds.count(("dns", "POST")) == 1


def test_a_duplicate_launch_of_an_incident_switches_once(fresh_lab: Lab, api: PrefectApi) -> None:
    # Incident tooling that fires twice: both runs pass the completed-incident check at
    # their start, since neither has finished. The second takes the incident's lease as
    # its own and waits for the slot; the first writes its record before it lets the lock
    # go, so the second reads "completed" under the lock and is refused, changing nothing.
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()
    inc = incident("TWICE")
    finals = _winner_and_loser(
        api, [{"reason": f"fired twice ({n})", "incident_id": inc} for n in range(2)]
    )
    winner = next(f for f in finals if f["state"]["type"] == "COMPLETED")
    loser = next(f for f in finals if f["state"]["type"] == "FAILED")
    assert f"incident_id: {inc} completed its failover at " in _message(loser), _message(loser)
    # It passed the check at its start and reached the lock (its log says so): the
    # refusal came under the lock.
    assert any("took the region lock of lab" in line for line in api.final_logs(loser["id"]))

    effects = side_effects(fresh_lab, since)
    kinds = [(a, m) for a, m, _ in effects if a != "storage"]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1
    assert kinds.count(("secretmanager", "POST")) == 1
    assert kinds.count(("run", "PATCH")) == len(TOPOLOGY.services) + 1
    assert kinds.count(("dns", "POST")) == 1
    assert kinds.count(("compute", "POST")) == len(TOPOLOGY.cdn.paths)
    assert kinds.count(("sql", "instances.patch")) == 1
    # The record is the winner's: the loser published nothing over it.
    record = _wait_record(fresh_lab, f"failover/{inc}.json")
    assert record["outcome"] == "completed"
    assert record["flow_run_id"] == winner["id"]
    # Both runs let the lock go: the lease is released, so the next incident may switch.
    lease = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, "locks/lab/region-switch.json")
    )
    assert lease["released"] is True and lease["incident_id"] == inc


def test_secrets_never_reach_logs_artifacts_records_or_notifications(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    from lifeboat.secrets import read_secret

    secrets = [
        read_secret("lifeboat-database-password"),
        read_secret("lifeboat-slack-webhook"),
        read_secret("lifeboat-email-webhook"),
        read_secret("lifeboat-mongodb-uri"),
    ]
    seeded_url = app_secret_value(fresh_lab)
    fresh_lab.outage(PRIMARY.name, True)
    inc = incident("SECRET")
    run = api.launch("failover/lab", {"reason": "scan for secrets", "incident_id": inc})
    assert api.wait(run["id"])["state"]["type"] == "COMPLETED"
    # The password really was used: the apps' URL secret in Secret Manager now carries it.
    database_url = app_secret_value(fresh_lab)
    assert secrets[0] in database_url
    # Both database URLs are secrets too: the one written and the one it replaced.
    secrets += [database_url, seeded_url]
    evidence = "\n".join(
        [
            *api.final_logs(run["id"]),
            json.dumps(api.artifacts(run["id"])),
            json.dumps(api.flow_run(run["id"])["parameters"]),
            read_object(
                fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json"
            ).decode(),
            json.dumps(fresh_lab.webhooks()),
        ]
    )
    assert len(api.final_logs(run["id"])) > 10
    for secret in secrets:
        assert secret not in evidence
