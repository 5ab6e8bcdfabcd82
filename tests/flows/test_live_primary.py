"""After a failover, backups and readiness follow the instance that takes writes now.

The topology names varai-prod as the primary; after a failover varai-db-secondary is the
one the apps write to and varai-prod is stale (and here unreachable, its region down).
"""

from __future__ import annotations

from lab.prefect_api import PrefectApi
from tests.backup.backup_checks import bucket_objects, params, read_manifest
from tests.flows.lab_checks import PRIMARY, REPLICA, TOPOLOGY, incident, sql_method
from tests.flows.readiness_checks import readiness
from tests.labharness import Lab

STALE = TOPOLOGY.cloud_sql.primary


def test_after_a_failover_backups_and_readiness_follow_the_promoted_instance(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    failover = api.launch("failover/lab", {"reason": "outage", "incident_id": incident("LIVE")})
    assert api.wait(failover["id"])["state"]["type"] == "COMPLETED"
    since = fresh_lab.last_seq()
    # A promoted replica keeps no backups: the failover turned them on, once, after the
    # switch (its only Cloud SQL write besides the promotion).
    failover_writes = [
        (sql_method(e["method"], e["path"]), e["path"])
        for e in fresh_lab.requests(api="sql")
        if e["write"] and e["status"] < 400
    ]
    assert [m for m, _ in failover_writes] == ["instances.promoteReplica", "instances.patch"]
    assert all(f"/instances/{REPLICA.instance}" in path for _, path in failover_writes)

    final = api.wait(api.launch("backup/lab", params())["id"], timeout=300)

    assert final["state"]["type"] == "COMPLETED", final["state"]
    [name] = [n for n in bucket_objects(fresh_lab, "cloudsql/") if n.endswith("manifest.json")]
    manifest = read_manifest(fresh_lab, name)
    assert manifest.status == "verified"
    assert manifest.cloudsql is not None and manifest.cloudsql.instance == REPLICA.instance
    mutations = [
        (sql_method(e["method"], e["path"]), e["path"])
        for e in fresh_lab.requests(api="sql", since=since)
        if e["write"] and e["status"] < 400
    ]
    assert [m for m, _ in mutations] == ["backupRuns.insert", "instances.export"]
    assert all(f"/instances/{REPLICA.instance}/" in path for _, path in mutations)
    assert not [
        e
        for e in fresh_lab.requests(api="sql", since=since)
        if e["method"] != "GET" and f"/instances/{STALE.instance}" in e["path"]
    ], "nothing may be asked of the stale primary"

    _, rows = readiness(api, fresh_lab)
    row = rows[("sql-instance", REPLICA.instance)]
    assert row["status"] == "green", row
    assert f"{STALE.instance} is stale" in row["detail"]
    # The promoted instance can be restored to any moment of the seed's 7 days again.
    pitr = rows[("pitr", REPLICA.instance)]
    assert (pitr["status"], pitr["measured"]) == ("green", "on, 7 days"), pitr
    # No replica protects the promoted instance until a failback: readiness says so.
    assert rows[("replica", REPLICA.instance)]["status"] != "green"
