"""failback after a failover: back to the primary with no write lost, the topology as before."""

from __future__ import annotations

import json

import pytest

from lifeboat.topology import RegionRole
from tests.flows.lab_checks import (
    PRIMARY,
    RECORD,
    REPLICA,
    SECONDARY,
    TOPOLOGY,
    dns_record,
    front_region,
    incident,
    instance_type,
    read_object,
    scaling,
    side_effects,
    sql,
    sql_instance,
)
from tests.labharness import Lab
from tests.prefect_api import PrefectApi

OLD = TOPOLOGY.cloud_sql.primary


def _failed_over(lab: Lab, api: PrefectApi) -> None:
    lab.outage(PRIMARY.name, True)
    run = api.launch("failover/lab", {"reason": "outage", "incident_id": incident("FO")})
    assert api.wait(run["id"])["state"]["type"] == "COMPLETED"


def _settings_that_matter(lab: Lab, name: str) -> dict[str, object]:
    """What makes a rebuilt instance reachable and sized like the one it replaces."""
    settings = sql_instance(lab, OLD.project, name)["settings"]
    return {k: settings.get(k) for k in ("tier", "edition", "ipConfiguration", "databaseFlags")}


def test_failback_restores_the_topology_and_loses_no_write(fresh_lab: Lab, api: PrefectApi) -> None:
    seeded = {n: _settings_that_matter(fresh_lab, n) for n in (OLD.instance, REPLICA.instance)}
    assert seeded[OLD.instance]["ipConfiguration"] is not None  # the lab seeds a private IP
    _failed_over(fresh_lab, api)
    # A write taken by the secondary while it served must survive the failback.
    sql(
        fresh_lab,
        REPLICA.project,
        REPLICA.instance,
        "INSERT INTO users (email) VALUES ('during@dr.example')",
    )
    fresh_lab.outage(PRIMARY.name, False)
    since = fresh_lab.last_seq()
    inc = incident("FB")
    final = api.wait(
        api.launch("failback/lab", {"reason": "primary recovered", "incident_id": inc})["id"],
        timeout=300,
    )
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]

    assert dns_record(fresh_lab) == (RECORD.rrdatas[RegionRole.primary], RECORD.ttl)
    assert front_region(fresh_lab) == PRIMARY.name
    for service in TOPOLOGY.services:
        assert scaling(fresh_lab, PRIMARY, service.name) == (
            service.active_scaling.min,
            service.active_scaling.max,
        )
        assert scaling(fresh_lab, SECONDARY, service.name) == (
            service.standby_scaling.min,
            service.standby_scaling.max,
        )
    assert instance_type(fresh_lab, OLD.project, OLD.instance) == "CLOUD_SQL_INSTANCE"
    assert instance_type(fresh_lab, REPLICA.project, REPLICA.instance) == "READ_REPLICA_INSTANCE"
    # Both instances were rebuilt (as replicas) from their source's live settings: the
    # same tier, edition, private network and flags as the instances they replace.
    for name, before in seeded.items():
        assert _settings_that_matter(fresh_lab, name) == before, name
    assert sql(
        fresh_lab,
        OLD.project,
        OLD.instance,
        "SELECT count(*) FROM users WHERE email = 'during@dr.example'",
    ) == [(1,)]
    sql(
        fresh_lab,
        OLD.project,
        OLD.instance,
        "INSERT INTO users (email) VALUES ('after@fb.example')",
    )

    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1
    assert kinds.count(("sql", "instances.export")) == 1  # the stale old primary, kept in GCS
    assert kinds.count(("dns", "POST")) == 1
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failback/{inc}.json")
    )
    assert record["outcome"] == "completed"
    export = f"failback/{inc}/{OLD.instance}.sql"
    assert b"CREATE TABLE" in read_object(fresh_lab, TOPOLOGY.backups.bucket, export)


def test_failback_is_refused_while_the_primary_is_down(fresh_lab: Lab, api: PrefectApi) -> None:
    _failed_over(fresh_lab, api)
    since = fresh_lab.last_seq()
    final = api.wait(api.launch("failback/lab", {"reason": "too early"})["id"])
    assert final["state"]["type"] == "FAILED"
    assert f"the primary region {PRIMARY.name} is unhealthy" in final["state"]["message"]
    assert side_effects(fresh_lab, since) == []


@pytest.mark.parametrize("dry_run", [True])
def test_failback_without_a_failover_is_refused_and_dry_run_changes_nothing(
    fresh_lab: Lab, api: PrefectApi, dry_run: bool
) -> None:
    since = fresh_lab.last_seq()
    final = api.wait(
        api.launch("failback/lab", {"reason": "nothing to undo", "dry_run": dry_run})["id"]
    )
    assert final["state"]["type"] == "FAILED"
    assert "there is no failover to undo" in final["state"]["message"]
    _failed_over(fresh_lab, api)
    fresh_lab.outage(PRIMARY.name, False)
    since = fresh_lab.last_seq()
    inc = incident("FBDRY")
    final = api.wait(
        api.launch("failback/lab", {"reason": "plan", "incident_id": inc, "dry_run": True})["id"]
    )
    assert final["state"]["type"] == "COMPLETED"
    assert side_effects(fresh_lab, since) == []
    plan = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failback/{inc}.json")
    )["plan"]
    assert f"delete {OLD.project}:{OLD.instance}" in plan
    assert f"wait for {OLD.instance} to catch up, then promote it" in plan
