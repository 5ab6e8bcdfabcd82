"""failback after a failover: back to the primary with no write lost, the topology as before."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import pytest

from lab.prefect_api import PrefectApi
from lifeboat.topology import RegionRole
from tests.flows.fence_checks import assert_slot_freed, hook_finished, kill, wait_crashed
from tests.flows.lab_checks import (
    PRIMARY,
    RECORD,
    REPLICA,
    SECONDARY,
    TOPOLOGY,
    all_revisions,
    dns_record,
    front_region,
    incident,
    ingress,
    instance_type,
    read_object,
    scaling,
    side_effects,
    sql,
    sql_instance,
    sql_method,
    sql_requests,
)
from tests.labharness import Lab
from tests.polling import wait_for

OLD = TOPOLOGY.cloud_sql.primary
NEW = TOPOLOGY.cloud_sql.replica


def _failed_over(lab: Lab, api: PrefectApi) -> None:
    lab.outage(PRIMARY.name, True)
    run = api.launch("failover/lab", {"reason": "outage", "incident_id": incident("FO")})
    assert api.wait(run["id"])["state"]["type"] == "COMPLETED"


def _settings_that_matter(lab: Lab, name: str) -> dict[str, object]:
    """What makes a rebuilt instance reachable and sized like the one it replaces."""
    settings = sql_instance(lab, OLD.project, name)["settings"]
    keys = (
        "tier",
        "edition",
        "ipConfiguration",
        "databaseFlags",
        "deletionProtectionEnabled",
        # Backups and PITR on the primary, none on the replica (Cloud SQL keeps none there).
        "backupConfiguration",
    )
    return {k: settings.get(k) for k in keys}


def _sql_deletes_of(lab: Lab, since: int, instance: str) -> list[int]:
    """Sequence numbers of successful Cloud SQL deletes of ``instance``."""
    return [
        e["seq"]
        for e in lab.requests(api="sql", since=since)
        if e["method"].upper() in {"DELETE"} and instance in e["path"] and e["status"] < 400
    ]


def _object_reads(lab: Lab, since: int, name: str) -> list[int]:
    """Sequence numbers of successful reads of a GCS object's metadata."""
    return [
        e["seq"]
        for e in lab.requests(api="storage", method="GET", since=since)
        if unquote(e["path"]).endswith(f"/o/{name}") and e["status"] == 200
    ]


def _secondary_patches(lab: Lab, since: int, region: str = SECONDARY.name) -> list[int]:
    return [
        e["seq"]
        for e in lab.requests(api="run", method="PATCH", since=since)
        if f"/locations/{region}/" in e["path"] and e["status"] < 400
    ]


def _first(lab: Lab, since: int, api: str, method: str) -> int:
    """The first successful call; Cloud SQL calls are named by their discovery method."""
    return min(
        e["seq"]
        for e in lab.requests(api=api, since=since)
        if e["status"] < 400
        and (sql_method(e["method"], e["path"]) if api == "sql" else e["method"]) == method
    )


def test_failback_restores_the_topology_and_loses_no_write(fresh_lab: Lab, api: PrefectApi) -> None:
    seeded = {n: _settings_that_matter(fresh_lab, n) for n in (OLD.instance, REPLICA.instance)}
    assert seeded[OLD.instance]["ipConfiguration"] is not None  # the lab seeds a private IP
    assert seeded[OLD.instance]["deletionProtectionEnabled"] is True  # as production has it
    revisions_before = all_revisions(fresh_lab)
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
    # same tier, edition, private network and flags as the instances they replace, and
    # the deletion protection each had (a replica never inherits it from its master).
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
    # The stale primary's protection was lifted once, after its export was seen in GCS and
    # before its delete; the rebuilt primary got its backups once, after the switch was
    # verified; nothing else was patched.
    unprotected_at, backups_at = [
        e["seq"]
        for e in fresh_lab.requests(api="sql", since=since)
        if sql_method(e["method"], e["path"]) == "instances.patch" and e["status"] < 400
    ]
    (old_deleted_at,) = _sql_deletes_of(fresh_lab, since, f"instances/{OLD.instance}")
    old_export = f"failback/{inc}/{OLD.instance}.sql"
    assert any(seq < unprotected_at for seq in _object_reads(fresh_lab, since, old_export))
    assert unprotected_at < old_deleted_at
    assert _first(fresh_lab, since, "dns", "POST") < backups_at
    # The stale old primary and the secondary that served until the fence, both kept in GCS.
    assert kinds.count(("sql", "instances.export")) == 2
    assert kinds.count(("dns", "POST")) == 1
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failback/{inc}.json")
    )
    assert record["outcome"] == "completed"
    export = f"failback/{inc}/{OLD.instance}.sql"
    assert b"CREATE TABLE" in read_object(fresh_lab, TOPOLOGY.backups.bucket, export)

    # Scaling at the service level made no revision, in either region, there or back.
    # The one service that reads the database URL as an env var got one new revision per
    # new secret version in each region that answered (the failover's: the secondary; the
    # failback's: both), so its running instances read it; none else did.
    # In the primary, the failover's version was rolled first: the failover could not
    # reach it, and its instances still named the stale primary the failback deletes.
    revisions_after = all_revisions(fresh_lab)
    rolled = {"recommendation-service": {PRIMARY.name: 2, SECONDARY.name: 2}}
    for key, names in revisions_before.items():
        region_name, service_ = key.split("/")
        added = set(revisions_after[key]) - set(names)
        assert set(names) <= set(revisions_after[key]), key
        assert len(added) == rolled.get(service_, {}).get(region_name, 0), (key, added)

    # The secondary was exported, and its copy seen in GCS, before it was deleted.
    secondary_export = f"failback/{inc}/{REPLICA.instance}.sql"
    assert b"during@dr.example" in read_object(fresh_lab, TOPOLOGY.backups.bucket, secondary_export)
    (deleted_at,) = _sql_deletes_of(fresh_lab, since, REPLICA.instance)
    assert any(seq < deleted_at for seq in _object_reads(fresh_lab, since, secondary_export))

    # The fence: secondary ingress internal-only before the promotion, lifted after DNS moved.
    promoted_at = _first(fresh_lab, since, "sql", "instances.promoteReplica")
    dns_at = _first(fresh_lab, since, "dns", "POST")
    patches = _secondary_patches(fresh_lab, since)
    services = len(TOPOLOGY.services)
    assert len([p for p in patches if p < promoted_at]) == services  # the fence
    # Between the promotion and DNS, one roll: the env-var service, while still fenced.
    assert len([p for p in patches if promoted_at < p < dns_at]) == 1
    assert len([p for p in patches if p > dns_at]) == 2 * services  # lift, then standby
    # The primary scaled up before the fence, outside the outage; inside it, only the
    # env-var service's roll once the new version exists.
    fenced_at = min(patches)
    primary_patches = _secondary_patches(fresh_lab, since, PRIMARY.name)
    assert len([p for p in primary_patches if p < fenced_at]) == services + 1  # + the repoint
    assert len([p for p in primary_patches if promoted_at < p < dns_at]) == 1
    assert len(primary_patches) == services + 2
    # The repoint came before the stale primary's export: what its instances wrote until
    # then is in the export, and nothing after it reached the instance.
    assert primary_patches[0] < _first(fresh_lab, since, "sql", "instances.export")
    for service in TOPOLOGY.services:
        assert ingress(fresh_lab, SECONDARY, service.name) == ("INGRESS_TRAFFIC_ALL", {})
    steps = [s["name"] for s in record["steps"]]
    assert steps.index("repoint-primary-readers") < steps.index("preserve-old-primary")
    assert steps.index("fence-secondary") < steps.index("promote") < steps.index("dns-switch")
    assert (
        steps.index("verify") < steps.index("lift-fence") < steps.index("scale-secondary-standby")
    )
    assert [f["after"] for f in record["fence"]["set"]] == [
        "INGRESS_TRAFFIC_INTERNAL_ONLY"
    ] * services
    assert [f["after"] for f in record["fence"]["lifted"]] == ["INGRESS_TRAFFIC_ALL"] * services
    assert record["after"]["primary_services"][0]["after"]["effective"] == {"min": 3, "max": 50}
    # The planned outage: from the fence holding to the verification through the public
    # path, stated apart from the RTO, which also counts the rebuild before the fence.
    by_name = {s["name"]: s for s in record["steps"]}
    fenced = _span(by_name["fence-secondary"]["ended_at"], by_name["verify"]["ended_at"])
    assert fenced - 1 < record["outage_seconds"] < fenced + 1, (record["outage_seconds"], fenced)
    assert record["outage_seconds"] < record["rto_seconds"]

    # Done: the incident is not run again (its promotion, secret and rolls would repeat).
    since = fresh_lab.last_seq()
    again = api.wait(api.launch("failback/lab", {"reason": "again", "incident_id": inc})["id"])
    assert again["state"]["type"] == "FAILED", again["state"]
    assert f"incident_id: {inc} completed its failback at " in again["state"]["message"]
    assert side_effects(fresh_lab, since) == []


def _span(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def test_failback_is_refused_while_the_primary_is_down(fresh_lab: Lab, api: PrefectApi) -> None:
    _failed_over(fresh_lab, api)
    since = fresh_lab.last_seq()
    # A dry run too: nothing a killed run left to repair, no reader to roll; the region
    # is down, and a dry run says so as the run does.
    for dry_run in (False, True):
        params = {"reason": "too early", "dry_run": dry_run}
        final = api.wait(api.launch("failback/lab", params)["id"])
        assert final["state"]["type"] == "FAILED", (dry_run, final["state"])
        message = final["state"]["message"]
        assert f"the primary region {PRIMARY.name} is unhealthy" in message, message
        assert "nothing was changed" in message, message
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
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failback/{inc}.plan.json")
    )["plan"]
    assert f"delete {OLD.project}:{OLD.instance}" in plan
    unprotect = f"lift deletion protection on {OLD.instance} (it is exported first)"
    assert plan.index(unprotect) < plan.index(f"delete {OLD.project}:{OLD.instance}")
    assert any(line.endswith("with deletion protection, as the stale primary had") for line in plan)
    assert (
        f"wait for {OLD.instance} to receive all the WAL {NEW.instance} wrote, then promote it"
        in plan
    )
    # The fence and its lifting, in order around the promotion, and the secondary's export.
    fence = (
        f"fence {SECONDARY.name}/auth-service: ingress INGRESS_TRAFFIC_ALL → "
        "INGRESS_TRAFFIC_INTERNAL_ONLY (public traffic and writes stop: the planned outage starts)"
    )
    lift = f"lift the fence: {SECONDARY.name}/auth-service ingress → INGRESS_TRAFFIC_ALL"
    promote = plan.index(
        f"wait for {OLD.instance} to receive all the WAL {NEW.instance} wrote, then promote it"
    )
    assert plan.index(fence) < promote < plan.index(lift)
    assert (
        f"scale {SECONDARY.name}/auth-service: 3..50 (service-level 3..50, revision 0..10)"
        " → service-level 0..10"
    ) in plan
    export = f"export {REPLICA.project}:{REPLICA.instance} to gs://{TOPOLOGY.backups.bucket}/"
    assert any(line.startswith(export) for line in plan)
    assert not any("fences writes" in line for line in plan)  # scaling is no longer the fence
    # How each service's running instances will see the new secret version, in both regions.
    secret = TOPOLOGY.cloud_sql.app_secret.resource
    for region in (PRIMARY, SECONDARY):
        assert (
            f"roll a new revision of {region.name}/recommendation-service: it reads {secret} "
            "as an env var at latest, resolved at instance start"
        ) in plan
        assert (
            f"{region.name}/auth-service reads {secret} from a volume at latest: follows at once"
        ) in plan
    assert plan.index(
        f"{SECONDARY.name}/auth-service reads {secret} from a volume at latest: follows at once"
    ) < plan.index(lift)


def test_failback_that_fails_mid_way_lifts_the_fence(fresh_lab: Lab, api: PrefectApi) -> None:
    _failed_over(fresh_lab, api)
    fresh_lab.outage(PRIMARY.name, False)
    # The DNS switch back fails for good: after the fence is set and the promotion is done.
    fresh_lab.fault(api="dns", method="POST", path="changes", status=400, count=50)
    since = fresh_lab.last_seq()
    inc = incident("FBFAIL")

    final = api.wait(
        api.launch("failback/lab", {"reason": "fails mid-way", "incident_id": inc})["id"],
        timeout=300,
    )

    assert final["state"]["type"] == "FAILED"
    patches = _secondary_patches(fresh_lab, since)
    promoted_at = _first(fresh_lab, since, "sql", "instances.promoteReplica")
    assert len([p for p in patches if p < promoted_at]) == len(TOPOLOGY.services)  # fenced
    for service in TOPOLOGY.services:
        assert ingress(fresh_lab, SECONDARY, service.name) == ("INGRESS_TRAFFIC_ALL", {})
    assert front_region(fresh_lab, "/auth/status") == SECONDARY.name  # public path open again
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failback/{inc}.json")
    )
    assert record["outcome"] == "failed"
    steps = {s["name"]: s["outcome"] for s in record["steps"]}
    assert steps["dns-switch"] == "failed"
    assert steps["lift-fence"] == "done"
    assert len(record["fence"]["lifted"]) == len(TOPOLOGY.services)
    # Failed inside the fence: the outage lasted until the fence was lifted.
    by_name = {s["name"]: s for s in record["steps"]}
    fenced = _span(by_name["fence-secondary"]["ended_at"], by_name["lift-fence"]["ended_at"])
    assert fenced - 1 < record["outage_seconds"] < fenced + 1, (record["outage_seconds"], fenced)


def _record_of(lab: Lab, inc: str, kind: str = "") -> dict[str, Any]:
    """The incident's record; ``kind=".plan"``: its dry run's."""
    record: dict[str, Any] = json.loads(
        read_object(lab, TOPOLOGY.backups.records_bucket, f"failback/{inc}{kind}.json")
    )
    return record


def test_a_resumed_failback_rebuilds_a_protected_primary_it_had_deleted(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """The run fails between deleting the stale primary and creating its replacement; the
    re-run cannot read the deleted instance's protection, yet the rebuilt one has it."""
    _failed_over(fresh_lab, api)
    fresh_lab.outage(PRIMARY.name, False)
    fresh_lab.fault(api="sql", method="POST", path="/instances$", status=403, count=1)
    since = fresh_lab.last_seq()
    inc = incident("FBPROT")
    first = api.wait(api.launch("failback/lab", {"reason": "one", "incident_id": inc})["id"])
    assert first["state"]["type"] == "FAILED"
    assert "sql-create-replica" in first["state"]["message"]
    (deleted_at,) = _sql_deletes_of(fresh_lab, since, f"instances/{OLD.instance}")
    # The primary region's env-var service held the stale primary's URL (the failover
    # could not reach it): the run rolled it before the export, so the delete left the
    # region healthy. A dry run plans no roll, and changes nothing.
    (repointed_at,) = _secondary_patches(fresh_lab, since, PRIMARY.name)
    assert repointed_at < _first(fresh_lab, since, "sql", "instances.export") < deleted_at
    dry_since = fresh_lab.last_seq()
    dry = api.wait(
        api.launch("failback/lab", {"reason": "plan", "incident_id": inc, "dry_run": True})["id"]
    )
    assert dry["state"]["type"] == "COMPLETED", dry["state"]["message"]
    assert side_effects(fresh_lab, dry_since) == []
    plan = _record_of(fresh_lab, inc, ".plan")["plan"]
    assert plan[0].startswith(f"create {OLD.project}:{OLD.instance} in {PRIMARY.name}"), plan[:2]
    rerun_since = fresh_lab.last_seq()

    # A whole rebuild, then the new primary's backups (a restart): 300 s was too short on
    # a machine at load 18 (the first CI rehearsal of session 14).
    final = api.wait(
        api.launch("failback/lab", {"reason": "two", "incident_id": inc})["id"], timeout=600
    )
    assert final["state"]["type"] == "COMPLETED", (
        final["state"]["message"],
        [(s["name"], s["detail"]) for s in _record_of(fresh_lab, inc)["steps"]],
    )
    assert sql_instance(fresh_lab, OLD.project, OLD.instance)["settings"].get(
        "deletionProtectionEnabled"
    ), "the rebuilt primary lost the stale primary's deletion protection"
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    # Protection lifted once, never re-enabled by hand; backups turned on once.
    assert kinds.count(("sql", "instances.patch")) == 2
    assert kinds.count(("sql", "instances.delete")) == 2  # the stale primary, the secondary
    assert kinds.count(("sql", "instances.export")) == 2
    # The resumed run's first change is the rebuild: no roll of the primary's readers.
    rerun = side_effects(fresh_lab, rerun_since)
    assert rerun[0][:2] == ("sql", "instances.insert"), rerun[:4]
    steps = [s["name"] for s in _record_of(fresh_lab, inc)["steps"]]
    assert "roll-primary-readers" not in steps and "repoint-primary-readers" not in steps


def test_a_failback_killed_while_cloud_sql_creates_its_replica_is_finished_by_the_rerun(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """SIGKILL right after the request that creates the rebuilt primary as a replica. The
    instance carries the incident's label from that request, so it reads as "rebuilt
    already" while Cloud SQL is still creating it: the re-run waits for that creation
    (once, never a second create) before anything reads from it. Before, it skipped the
    rebuild step and failed reading WAL from a server not yet up (the failback crash
    sweep's point 4)."""
    _failed_over(fresh_lab, api)
    fresh_lab.outage(PRIMARY.name, False)
    # 45 wall seconds of creation: the re-run reads the instance well before the killed
    # run's creation ends (at the usual 4.8 s it read a finished instance).
    fresh_lab.configure({"sql.insert": 4500.0})
    since = fresh_lab.last_seq()
    inc = incident("FBCREATE")
    first = str(api.launch("failback/lab", {"reason": "one", "incident_id": inc})["id"])

    def creating() -> bool:
        inserts = [(a, p) for a, m, p in side_effects(fresh_lab, since) if m == "instances.insert"]
        return (
            bool(inserts)
            and sql_instance(fresh_lab, OLD.project, OLD.instance).get("state") == "PENDING_CREATE"
        )

    wait_for(creating, timeout=120, what=f"{OLD.instance}'s creation under way")
    kill(first)
    killed_at = fresh_lab.last_seq()
    wait_crashed(api, first)
    wait_for(lambda: hook_finished(api, first), timeout=60, what="the crash hook's end")
    fresh_lab.configure({"sql.insert": 480.0})  # the secondary's rebuild: Google's usual

    final = api.wait(
        api.launch("failback/lab", {"reason": "two", "incident_id": inc})["id"], timeout=600
    )

    record = _record_of(fresh_lab, inc)
    found = record["before"]["old_primary"]
    assert found["state"] == "PENDING_CREATE", (
        f"the creation ended before the re-run read {OLD.instance}: nothing was tested",
        found,
    )
    assert final["state"]["type"] == "COMPLETED", (
        final["state"]["message"],
        [(s["name"], s["detail"]) for s in record["steps"]],
    )
    # Every insert, answered or refused: the killed run's (the primary-region replica),
    # then the re-run's one (the secondary's replacement), never a second of the first.
    assert sql_requests(fresh_lab, since).count("instances.insert") == 2
    assert sql_requests(fresh_lab, killed_at).count("instances.insert") == 1
    [rebuild] = [s for s in record["steps"] if s["name"] == "rebuild-primary-replica"]
    assert rebuild["detail"].endswith("its creation was waited for"), rebuild
    waits = f"wait for the creation of {OLD.project}:{OLD.instance} as a replica of {NEW.instance}"
    assert any(line.startswith(waits) for line in record["plan"]), record["plan"]
    assert not any(line.startswith("create ") for line in record["plan"]), record["plan"]
    steps = [s["name"] for s in record["steps"]]
    assert steps.index("rebuild-primary-replica") < steps.index("promote"), steps
    assert instance_type(fresh_lab, OLD.project, OLD.instance) == "CLOUD_SQL_INSTANCE"
    assert front_region(fresh_lab) == PRIMARY.name
    assert_slot_freed(api, record, first)


def test_the_fence_refuses_the_public_path_while_it_holds(fresh_lab: Lab, api: PrefectApi) -> None:
    """During a failback, the secondary that DNS still names answers the public path 404."""
    import threading
    import time

    import httpx

    _failed_over(fresh_lab, api)
    fresh_lab.outage(PRIMARY.name, False)
    assert front_region(fresh_lab, "/auth/status") == SECONDARY.name
    # Hold the run in its DNS switch (fenced, DNS still on the secondary) for a while.
    fresh_lab.fault(api="dns", method="POST", path="changes", latency_s=4, count=1)
    seen: list[int] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            response = httpx.get(
                f"{fresh_lab.endpoints['front_door']}/auth/status",
                headers={"host": TOPOLOGY.health.host},
                timeout=10,
            )
            if response.headers.get("x-lab-region") == SECONDARY.name:
                seen.append(response.status_code)
            time.sleep(0.1)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        final = api.wait(
            api.launch("failback/lab", {"reason": "fence", "incident_id": incident("FBF")})["id"],
            timeout=300,
        )
    finally:
        done.set()
        prober.join(timeout=15)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert 404 in seen  # refused while fenced
    assert seen.index(404) > 0 and seen[0] == 200  # it served before the fence
    # Lifted: the secondary admits public traffic again (reached here through its own URL).
    for service in TOPOLOGY.services:
        assert ingress(fresh_lab, SECONDARY, service.name)[0] == "INGRESS_TRAFFIC_ALL"
