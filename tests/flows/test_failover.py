"""failover through the real Prefect server, a process worker and the lab."""

from __future__ import annotations

import json
from datetime import datetime

from lab.prefect_api import PrefectApi
from lifeboat.topology import RegionRole
from tests.flows.lab_checks import (
    PRIMARY,
    RECORD,
    REPLICA,
    SECONDARY,
    TOPOLOGY,
    app_secret_value,
    dns_record,
    front_region,
    incident,
    instance_address,
    instance_type,
    post_order,
    read_object,
    routing_policy_sets,
    scaling,
    side_effects,
    sql,
    take_secret_as_env_var,
)
from tests.labharness import Lab

PRIMARY_DB = TOPOLOGY.cloud_sql.primary.instance


def test_failover_end_to_end_after_a_primary_outage(fresh_lab: Lab, api: PrefectApi) -> None:
    # The zone also holds a geo routing-policy set (no rrdatas), as real zones do; it
    # broke every DNS step while they listed the whole zone through google-cloud-dns.
    policy_sets = routing_policy_sets(fresh_lab)
    assert "geo." + RECORD.name in policy_sets
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()
    inc = incident()
    run = api.launch("failover/lab", {"reason": "us-central1 down", "incident_id": inc})
    final = api.wait(run["id"])
    assert final["state"]["type"] == "COMPLETED", final["state"]

    # The lab now serves from the secondary: every change happened, exactly once.
    assert dns_record(fresh_lab) == (RECORD.rrdatas[RegionRole.secondary], RECORD.failover_ttl)
    for service in TOPOLOGY.services:
        assert scaling(fresh_lab, SECONDARY, service.name) == (
            service.active_scaling.min,
            service.active_scaling.max,
        )
    assert instance_type(fresh_lab, REPLICA.project, REPLICA.instance) == "CLOUD_SQL_INSTANCE"
    assert front_region(fresh_lab) == SECONDARY.name
    assert routing_policy_sets(fresh_lab) == policy_sets  # left exactly as it was

    # The apps follow the secret: a write through the front door lands on the promoted
    # instance, acknowledged (201) only after its commit.
    address = instance_address(fresh_lab, REPLICA.project, REPLICA.instance)
    assert f"@{address}:" in app_secret_value(fresh_lab)
    order = post_order(fresh_lab, f"order-{inc}")
    assert order.status_code == 201, order.text
    assert order.json()["region"] == SECONDARY.name
    assert order.json()["database"].startswith(f"{address}:")
    assert sql(
        fresh_lab,
        REPLICA.project,
        REPLICA.instance,
        f"SELECT id FROM orders WHERE id = 'order-{inc}'",
    ) == [(f"order-{inc}",)]

    effects = side_effects(fresh_lab, since)
    kinds = [(api_, method) for api_, method, _ in effects if api_ != "storage"]
    # One scale per service, and one new revision of the service that reads the URL as an
    # env var (the orders service): its running instances would keep the old one.
    assert kinds.count(("run", "PATCH")) == len(TOPOLOGY.services) + 1
    run_paths = [path for api_, method, path in effects if (api_, method) == ("run", "PATCH")]
    assert run_paths[0].endswith(
        f"/locations/{SECONDARY.name}/services/recommendation-service"
    )  # the roll, before any scale-up
    assert not any(f"/locations/{PRIMARY.name}/" in path for path in run_paths)
    # One version of the apps' secret, added before any service scales up.
    assert kinds.count(("secretmanager", "POST")) == 1
    assert kinds.index(("secretmanager", "POST")) < kinds.index(("run", "PATCH"))
    assert kinds.count(("sql", "instances.promoteReplica")) == 1
    assert kinds.count(("dns", "POST")) == 1
    assert kinds.count(("compute", "POST")) == len(TOPOLOGY.cdn.paths)
    # Order: scale and promote before DNS; DNS before the purge.
    dns_at = kinds.index(("dns", "POST"))
    assert kinds.index(("sql", "instances.promoteReplica")) < dns_at
    assert max(i for i, k in enumerate(kinds) if k == ("run", "PATCH")) < dns_at
    assert dns_at < kinds.index(("compute", "POST"))
    # After the switch, the new primary gets the backups a replica does not keep, once.
    assert kinds.count(("sql", "instances.patch")) == 1
    assert kinds.index(("compute", "POST")) < kinds.index(("sql", "instances.patch"))

    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    assert record["outcome"] == "completed"
    # The RTO is the time from the run's first step to the end of the verification (the
    # backups turned on after it are not part of it).
    first, last = record["steps"][0], record["steps"][-2]
    assert last["name"] == "verify"
    span = (
        datetime.fromisoformat(last["ended_at"]) - datetime.fromisoformat(first["started_at"])
    ).total_seconds()
    assert span - 1 < record["rto_seconds"] < span + 1, (record["rto_seconds"], span)
    assert record["approval"] is None  # the primary was down: no pause
    assert [s["name"] for s in record["steps"]] == [
        "preflight",
        "region-lock",
        "fence-primary",
        "wait-received",
        "database-connection",
        "scale-and-promote",
        "dns-switch",
        "cdn-purge",
        "verify",
        "backups-on-new-primary",
    ]
    assert record["steps"][-1]["detail"] == (
        f"backups and PITR on {REPLICA.instance}, 7 days of logs (as {PRIMARY_DB} had)"
    )
    assert record["before"]["dns"]["rrdatas"] == RECORD.rrdatas[RegionRole.primary]
    # The primary region is down: its services could not be refreshed, and the run went on.
    steps = {s["name"]: s for s in record["steps"]}
    detail = steps["database-connection"]["detail"]
    assert f"{PRIMARY.name}: services not refreshed, its Run API did not answer" in detail
    assert "503" in detail
    # Its fence was tried once per service (best effort: it looks down) and could not be
    # set; the run went on, and said so (and had nothing to lift).
    fence = steps["fence-primary"]["detail"]
    assert "not fenced (best effort, its region looks down)" in fence, fence
    assert sorted(record["fence"]["unfenced"]) == sorted(s.name for s in TOPOLOGY.services)
    assert f"{SECONDARY.name}/recommendation-service: read it as an env var at latest" in detail
    assert f"{SECONDARY.name}/auth-service: reads it from a volume at latest" in detail
    assert (
        f"cannot refresh {PRIMARY.name}/recommendation-service: its Run API answered 503"
    ) in " ".join(record["plan"])
    keys = {a["key"] for a in api.artifacts(run["id"])}
    assert {f"failover-{inc.lower()}", f"failover-{inc.lower()}-steps"} <= keys
    channels = sorted(w["name"] for w in fresh_lab.webhooks())
    assert channels == ["email", "slack"]

    # The incident is done: running it again, or even planning it, is refused before any
    # change, and its record is kept as it was (a re-run resumes only what stopped).
    since = fresh_lab.last_seq()
    for dry_run in (False, True):
        parameters = {"reason": "again", "incident_id": inc, "dry_run": dry_run}
        again = api.wait(api.launch("failover/lab", parameters)["id"])
        assert again["state"]["type"] == "FAILED", again["state"]
        message = again["state"]["message"]
        assert f"incident_id: {inc} completed its failover at " in message, message
        assert "a new failover needs a new incident id" in message, message
    assert side_effects(fresh_lab, since) == []
    kept = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    assert kept == record


def test_failover_env_var_apps_start_with_the_new_version(fresh_lab: Lab, api: PrefectApi) -> None:
    """Apps that take the URL as an env var read it once, when their instances start.

    At standby the secondary runs no instance; the failover's scale-up starts them, so the
    secret's new version must exist before it, or they start with the dead primary's URL.
    """
    take_secret_as_env_var(fresh_lab, SECONDARY.name, "recommendation-service", "latest")
    fresh_lab.outage(PRIMARY.name, True)
    inc = incident("ENV")
    final = api.wait(api.launch("failover/lab", {"reason": "env var", "incident_id": inc})["id"])
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    order = post_order(fresh_lab, f"order-{inc}")
    assert order.status_code == 201, order.text
    address = instance_address(fresh_lab, REPLICA.project, REPLICA.instance)
    assert order.json()["database"].startswith(f"{address}:")
    # The failover rolled a revision for the new version before the scale-up: what serves
    # now is that revision, whose instances started after the version was added.
    got = fresh_lab.clients().run_services.get_service(
        name=f"projects/{SECONDARY.project}/locations/{SECONDARY.name}"
        "/services/recommendation-service"
    )
    latest = fresh_lab.clients().secret_manager.get_secret_version(
        name=f"{TOPOLOGY.cloud_sql.app_secret.resource}/versions/latest"
    )
    version = latest.name.rsplit("/", 1)[-1]
    assert got.template.annotations["lifeboat.dev/database-secret-version"] == version
    serving = got.latest_ready_revision.rsplit("/", 1)[-1]
    starts = fresh_lab.state()["backends"]["app_instances"]
    key = f"{SECONDARY.project}/{SECONDARY.name}/recommendation-service/{serving}"
    assert starts[key]["source"].startswith("env-secret") and starts[key]["started"]
