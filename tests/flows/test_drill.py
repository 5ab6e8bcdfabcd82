"""recovery-drill and drill-sweeper through the real Prefect server, worker and lab."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from lab.prefect_api import PrefectApi
from tests.backup.backup_checks import bucket_objects, mongo, params, read_manifest
from tests.flows.lab_checks import (
    TOPOLOGY,
    read_object,
    record_sets,
    run_records,
    scaling,
    side_effects,
    sql_method,
)
from tests.labharness import Lab
from tests.polling import wait_for

RECORDS = TOPOLOGY.backups.records_bucket
SECONDARY = TOPOLOGY.regions.secondary
PROJECT = TOPOLOGY.cloud_sql.primary.project


def backup(api: PrefectApi) -> None:
    """The data backups and the configuration's, side by side as their schedules run them."""
    runs = [
        api.launch("backup/lab", params())["id"],
        api.launch("config-backup/lab", params(kinds=["config"]))["id"],
    ]
    for run_id in runs:
        final = api.wait(run_id, timeout=300)
        assert final["state"]["type"] == "COMPLETED", final["state"]


def drill(api: PrefectApi, **extra: object) -> dict[str, Any]:
    return api.wait(api.launch("recovery-drill/lab", params(**extra))["id"], timeout=300)


def drill_record(lab: Lab, run_id: str) -> dict[str, Any]:
    drill_id = f"drill-{run_id.replace('-', '')[:8]}"
    return dict(json.loads(read_object(lab, RECORDS, f"drills/{drill_id}.json")))


def listed(lab: Lab) -> list[dict[str, Any]]:
    """Every SQL instance of the project (every page), as Cloud SQL Admin lists them."""
    items = lab.clients().sql.pages(
        lambda s, token: s.instances().list(project=PROJECT, pageToken=token), timeout=10
    )
    return list(items)


def instances(lab: Lab) -> dict[str, dict[str, str]]:
    """Every SQL instance of the project → its labels."""
    return {i["name"]: dict(i["settings"].get("userLabels", {})) for i in listed(lab)}


def scratch_left(lab: Lab) -> tuple[list[str], list[str]]:
    with mongo(lab) as client:
        databases = [n for n in client.list_database_names() if n.startswith("drill_")]
    return [n for n in instances(lab) if n.startswith("recovery-test-")], databases


def scratch_records(lab: Lab) -> list[str]:
    """The zone's drill scratch record sets."""
    return [r["name"] for r in record_sets(lab) if r["name"].startswith("lifeboat-drill-")]


def add_record_sets(lab: Lab, names: list[str]) -> None:
    """Scratch-named record sets, added with one change as gcloud would."""
    zone = f"{lab.endpoints['dns']}/dns/v1/projects/{TOPOLOGY.dns.project}/managedZones"
    additions = [{"name": n, "type": "A", "ttl": 60, "rrdatas": ["192.0.2.1"]} for n in names]
    httpx.post(
        f"{zone}/{TOPOLOGY.dns.zone}/changes", json={"additions": additions}, timeout=10
    ).raise_for_status()


def sql_calls(lab: Lab, since: int, method: str) -> list[dict[str, Any]]:
    """Successful calls of one Cloud SQL Admin method, e.g. ``instances.restoreBackup``."""
    return [
        e
        for e in lab.requests(api="sql", since=since)
        if sql_method(e["method"], e["path"]) == method and e["status"] < 400
    ]


def test_a_drill_restores_checks_measures_and_cleans_up(fresh_lab: Lab, api: PrefectApi) -> None:
    backup(api)
    # The monthly drill, primary up: the secondary's apps read their database URL from
    # Secret Manager, and it names the primary's instance until a failover, so with the
    # primary region down the application check fails, as it would at Google. That the
    # restores need nothing of the primary region is the next test's (under an outage).
    since = fresh_lab.last_seq()
    final = drill(api)
    assert final["state"]["type"] == "COMPLETED", final["state"]

    record = drill_record(fresh_lab, final["id"])
    assert record["outcome"] == "completed" and record["after"]["verdict"] == "pass"
    rows = {r["data set"]: r for r in record["after"]["data_sets"]}
    assert list(rows) == ["mongodb", "cloudsql", "cloudsql-pitr", "config", "application", "total"]
    assert all(r["verdict"] == "pass" for r in rows.values())
    [mongo_manifest] = [n for n in bucket_objects(fresh_lab, "mongodb/") if n.endswith(".json")]
    assert rows["mongodb"]["backup used"] == read_manifest(fresh_lab, mongo_manifest).backup_id
    assert "20/20 sampled" in rows["mongodb"]["detail"] or "sampled documents identical" in str(
        rows["mongodb"]["detail"]
    )
    assert "users=500" in rows["cloudsql"]["detail"]
    # The backup's instance cloned to the moment its counts were taken gives those counts.
    [sql_manifest] = [n for n in bucket_objects(fresh_lab, "cloudsql/") if n.endswith(".json")]
    counted_at = read_manifest(fresh_lab, sql_manifest).cloudsql.counted_at  # type: ignore[union-attr]
    assert counted_at is not None
    pitr = rows["cloudsql-pitr"]
    assert pitr["backup used"].startswith(f"{TOPOLOGY.cloud_sql.primary.instance} at "), pitr
    assert "users=500" in pitr["detail"] and "differ" not in pitr["detail"], pitr
    assert (
        0 < rows["cloudsql"]["RPO s"] < 600 and rows["total"]["RTO s"] >= rows["cloudsql"]["RTO s"]
    )
    assert (
        record["rto_seconds"] == rows["total"]["RTO s"]
        or abs(record["rto_seconds"] - rows["total"]["RTO s"]) < 0.1
    )

    # One scratch instance, labelled, in the secondary region; created, restored, deleted
    # once. One clone, claimed (labelled, unprotected) once, deleted once.
    inserts = sql_calls(fresh_lab, since, "instances.insert")
    assert len(inserts) == 1
    assert len(sql_calls(fresh_lab, since, "instances.restoreBackup")) == 1
    [clone] = sql_calls(fresh_lab, since, "instances.clone")
    assert clone["path"].endswith(f"/instances/{TOPOLOGY.cloud_sql.primary.instance}/clone")
    [claim] = sql_calls(fresh_lab, since, "instances.patch")
    assert claim["path"].endswith("-pitr"), claim
    # The served record set, put back under the drill's scratch name, identical; deleted.
    served = TOPOLOGY.dns.records[0]
    assert f"{served.name} {served.type} restored as lifeboat-drill-" in rows["config"]["detail"]
    assert "identical to the archive" in rows["config"]["detail"], rows["config"]
    dns_writes = [e for e in side_effects(fresh_lab, since) if e[0] == "dns"]
    assert [m for _, m, _ in dns_writes] == ["POST", "POST"]  # made, then deleted
    assert scratch_records(fresh_lab) == []
    cleaned = record["after"]["cleanup"]
    assert any(line.startswith("deleted record set lifeboat-drill-") for line in cleaned)
    assert sum("deleted instance recovery-test-" in line for line in cleaned) == 2, cleaned
    assert any(line.endswith("-pitr") for line in cleaned), cleaned
    assert len(sql_calls(fresh_lab, since, "instances.delete")) == 2
    assert scratch_left(fresh_lab) == ([], [])
    # The app check used the secondary only, and the secondary is back at standby.
    apps = {e["api"] for e in fresh_lab.requests(since=since) if e["api"].startswith("region-app")}
    assert apps == {f"region-app/{SECONDARY.name}"}
    for svc in TOPOLOGY.services:
        assert scaling(fresh_lab, SECONDARY, svc.name) == (
            svc.standby_scaling.min,
            svc.standby_scaling.max,
        )
    # Evidence: the table artifact, an event-worthy record, a notification.
    keys = {a["key"] for a in api.artifacts(final["id"])}
    assert "recovery-drill-lab" in keys
    assert any("recovery-drill completed" in json.dumps(w) for w in fresh_lab.webhooks())


def test_a_drill_whose_restore_is_corrupted_fails_and_still_cleans_up(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    backup(api)
    [name] = [n for n in bucket_objects(fresh_lab, "mongodb/") if n.endswith("manifest.json")]
    manifest = read_manifest(fresh_lab, name)
    assert manifest.archive is not None
    data = fresh_lab.root / "storage" / "data" / str(manifest.archive.generation)
    original = data.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    data.write_bytes(bytes(flipped))
    # Ungraceful: the primary region is down for the whole drill; no restore may need it.
    fresh_lab.outage(TOPOLOGY.regions.primary.name, True)
    try:
        final = drill(api, application=False)
    finally:
        data.write_bytes(original)
        fresh_lab.outage(TOPOLOGY.regions.primary.name, False)
    assert final["state"]["type"] == "FAILED", final["state"]
    assert "recovery drill failed: mongodb" in final["state"]["message"]
    record = drill_record(fresh_lab, final["id"])
    rows = {r["data set"]: r for r in record["after"]["data_sets"]}
    assert rows["mongodb"]["verdict"] == "FAIL" and "verification" in rows["mongodb"]["detail"]
    assert rows["cloudsql"]["verdict"] == "pass"  # one failure does not hide the others
    # A clone of the live primary needs its region: with it down, that row fails, and says so.
    assert rows["cloudsql-pitr"]["verdict"] == "FAIL", rows["cloudsql-pitr"]
    assert record["outcome"] == "failed"
    assert scratch_left(fresh_lab) == ([], [])


def test_a_drill_cancelled_mid_run_cleans_up(fresh_lab: Lab, api: PrefectApi) -> None:
    backup(api)
    # A slow restore (25 s in the lab) to cancel in the middle of. The cleanup's delete of
    # the scratch instance waits for it to end (Cloud SQL runs one operation at a time
    # per instance), so it is no longer than it needs to be: the cancellation lands
    # within a few seconds, and a drill that outran it would complete and fail below.
    fresh_lab.post("config", {"latency": {"sql.restore": 2500}})
    run = api.launch("recovery-drill/lab", params(application=False))
    wait_for(
        lambda: sql_calls(fresh_lab, 0, "instances.restoreBackup"),
        timeout=120,
        what="the drill's restore",
        interval=0.5,
    )
    assert scratch_left(fresh_lab)[0], "the scratch instance exists while restoring"
    api.http.post(
        f"/flow_runs/{run['id']}/set_state",
        json={"state": {"type": "CANCELLING"}, "force": True},
    ).raise_for_status()
    final = api.wait(run["id"], timeout=120)
    assert final["state"]["type"] in ("CANCELLED", "CRASHED"), final["state"]
    wait_for(
        lambda: scratch_left(fresh_lab) == ([], []) and scratch_records(fresh_lab) == [],
        timeout=120,
        what="the cancelled drill's cleanup",
        interval=1,
    )


def test_the_sweeper_deletes_expired_labelled_scratch_only(fresh_lab: Lab, api: PrefectApi) -> None:
    now = datetime.now(UTC)
    past, future = now - timedelta(hours=1), now + timedelta(hours=5)
    wanted = {
        "recovery-test-20260101-expired": {
            "lifeboat-drill": "drill-expired",
            "lifeboat-expires": str(int(past.timestamp())),
        },
        "recovery-test-20260101-fresh": {
            "lifeboat-drill": "drill-fresh",
            "lifeboat-expires": str(int(future.timestamp())),
        },
        "recovery-test-by-hand": {},
    }
    api_ = fresh_lab.clients().sql
    for name, labels in wanted.items():
        body = {"name": name, "region": SECONDARY.name, "settings": {"userLabels": labels}}
        api_.call(lambda s, b=body: s.instances().insert(project=PROJECT, body=b), timeout=10)
    with mongo(fresh_lab) as mongo_client:
        mongo_client.drill_20260101_expired["_lifeboat_drill"].insert_one(
            {"_id": "drill-expired", "expires_at": past}
        )
        mongo_client.drill_by_hand.notes.insert_one({"why": "someone's experiment"})

    def runnable() -> bool:
        states = {i["name"]: i["state"] for i in listed(fresh_lab)}
        return all(states.get(n) == "RUNNABLE" for n in wanted)

    # Record sets carry no labels: the day in a scratch name is what the sweeper reads.
    expired_record = f"lifeboat-drill-20260101-expired.{TOPOLOGY.dns.dns_name}"
    fresh_record = f"lifeboat-drill-{now:%Y%m%d}-fresh.{TOPOLOGY.dns.dns_name}"
    add_record_sets(fresh_lab, [expired_record, fresh_record])
    wait_for(runnable, timeout=60, what="the scratch instances RUNNABLE", interval=0.5)
    wait_for(
        lambda: len(scratch_records(fresh_lab)) == 2, timeout=60, what="the scratch record sets"
    )
    since = fresh_lab.last_seq()
    final = api.wait(api.launch("drill-sweeper/lab", params())["id"], timeout=120)
    assert final["state"]["type"] == "COMPLETED", final["state"]

    left_instances, left_databases = scratch_left(fresh_lab)
    assert sorted(left_instances) == ["recovery-test-20260101-fresh", "recovery-test-by-hand"]
    assert left_databases == ["drill_by_hand"]
    assert len(sql_calls(fresh_lab, since, "instances.delete")) == 1
    rows = {r["name"]: r for r in final_rows(api, final["id"])}
    assert rows[f"{PROJECT}:recovery-test-by-hand"]["verdict"] == "unlabelled: left alone"
    assert rows[f"{PROJECT}:recovery-test-20260101-expired"]["done"] == "deleted"
    assert rows["drill_20260101_expired"]["done"] == "deleted"
    assert rows[f"{expired_record} A"]["done"] == "deleted"
    assert rows[f"{fresh_record} A"]["verdict"] == "not expired: kept"
    assert scratch_records(fresh_lab) == [fresh_record]
    [record] = run_records(fresh_lab, "drill-sweeper", final["id"])
    assert record["outcome"] == "completed"
    assert {r["name"]: r["done"] for r in record["after"]["resources"]} == {
        n: r["done"] for n, r in rows.items()
    }
    for name in ("recovery-test-20260101-fresh", "recovery-test-by-hand"):
        api_.call(lambda s, n=name: s.instances().delete(project=PROJECT, instance=n), timeout=10)
    with mongo(fresh_lab) as mongo_client:
        mongo_client.drop_database("drill_by_hand")


def final_rows(api: PrefectApi, run_id: str) -> list[dict[str, Any]]:
    [table] = [a for a in api.artifacts(run_id) if a["key"] == "drill-sweeper-lab"]
    data = table["data"]
    return list(json.loads(data) if isinstance(data, str) else data)
