"""The IAM table (lifeboat/iam.py) covers every Google API call the flows make.

Each test launches flows through the lab's Prefect deployments (every deployed flow,
between them) and reads the lab's request log between each launch and the run's end;
one runs `lifeboat discover`. Every logged Google API call must
match a row of the table, that row must name the flow, and the project (or bucket) in
its path must be one the row resolves to in the lab's topology. A call with no row fails
the test, naming the call: the table cannot drift from the code.

The other direction: every (row, flow) pair of the table must be seen in one of these
runs, or be allow-listed below with the reason no run here makes it (an error path, an
expiry that a fresh lab never reaches). A row the code no longer needs, or a flow it no
longer names, then fails the last test: the table grants nothing the code does not use.

Left out, as the fault matrix leaves them out (reliability/faults.py): the region apps'
and the front door's health probes and the notification webhooks. They are not Google
API calls; ``is_cloud_call`` keeps the request log's Google APIs only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from google.cloud import run_v2

from lab.prefect_api import PrefectApi
from lifeboat.iam import CALLS, Call, Place, find, grants_by_flow, projects_of
from reliability.faults import is_cloud_call
from tests.backup.backup_checks import write_synthetic
from tests.flows.lab_checks import (
    PRIMARY,
    SECONDARY,
    TOPOLOGY,
    incident,
    set_app_secret,
    sql_instance,
)
from tests.flows.rollback_helpers import deploy_new_revision
from tests.labharness import Lab, lifeboat
from tests.polling import wait_for

BUCKETS = {
    TOPOLOGY.backups.records_bucket,
    *TOPOLOGY.backups.backup_buckets,
    *([TOPOLOGY.cdn.assets_bucket] if TOPOLOGY.cdn.assets_bucket else []),
}
OLD = TOPOLOGY.cloud_sql.primary

# (row, flow) pairs the runs here have made, and the tests that fed them: the last test
# judges the table's other direction only after every one of them ran in this process
# (the suite keeps a module on one worker, in order).
SEEN: set[tuple[Call, str]] = set()
FED: set[str] = set()


def _run(lab: Lab, api: PrefectApi, flow: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Launch ``flow``'s lab deployment, wait for its end; the cloud calls it made."""
    since = lab.last_seq()
    final = api.wait(api.launch(f"{flow}/lab", params)["id"], timeout=400)
    assert final["state"]["type"] == "COMPLETED", (flow, final["state"])
    return [e for e in lab.requests(since=since) if is_cloud_call(e)]


def _where(call: Call, flow: str) -> set[str]:
    return {p for place in call.places(flow) for p in projects_of(place, TOPOLOGY)}


def _misfit(entry: dict[str, Any], flow: str) -> str | None:
    """Why the table does not cover this logged call for this flow; None when it does."""
    said = f"{entry['api']} {entry['method']} {entry['path']}"
    call = find(entry["api"], entry["method"], entry["path"])
    if call is None:
        return f"{said}: no row in lifeboat/iam.py"
    if flow not in call.flows:
        return f"{said}: row {call.path} does not list {flow}"
    # A project id ends at a slash or at a custom verb (``projects/p:testIamPermissions``).
    project = re.search(r"/projects/([^/:]+)[/:]", entry["path"])
    if project and project.group(1) not in _where(call, flow):
        where = _where(call, flow)
        return f"{said}: project {project.group(1)} is not where the row lands ({where})"
    bucket = re.search(r"/b/([^/]+)", entry["path"])
    # Only a Cloud Storage call names its bucket; a call that asks about every project
    # (Resource Manager's) lands on the buckets' project without naming a bucket.
    in_bucket = call.api == "storage" and Place.buckets in call.places(flow)
    if in_bucket and (not bucket or bucket.group(1) not in BUCKETS):
        return f"{said}: not a bucket of the topology"
    return None


def assert_covered(entries: list[dict[str, Any]], flow: str) -> None:
    assert entries, f"{flow} made no Google API call: the request log is not what is read"
    misfits = sorted({m for e in entries if (m := _misfit(e, flow)) is not None})
    assert not misfits, f"{flow}: calls the IAM table does not cover:\n" + "\n".join(misfits)
    SEEN.update((c, flow) for e in entries if (c := find(e["api"], e["method"], e["path"])))


def test_a_failover_and_its_failback_make_only_calls_the_table_lists(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.outage(PRIMARY.name, True)  # an outage: the failover needs no approval
    failover = _run(
        fresh_lab, api, "failover", {"reason": "outage", "incident_id": incident("IAM")}
    )
    fresh_lab.outage(PRIMARY.name, False)
    assert_covered(failover, "failover")
    assert any(e["path"].endswith("/promoteReplica") for e in failover)

    failback = _run(fresh_lab, api, "failback", {"reason": "back", "incident_id": incident("IAM")})
    assert_covered(failback, "failback")
    assert any(e["path"].endswith("/promoteReplica") for e in failback)
    FED.add("switches")


def test_a_rollback_and_a_backup_make_only_calls_the_table_lists(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    deploy_new_revision(fresh_lab, "auth-service")
    rollback = _run(
        fresh_lab,
        api,
        "rollback",
        {"reason": "bad release", "incident_id": incident("IAM"), "services": ["auth-service"]},
    )
    assert_covered(rollback, "rollback")
    assert any(e["path"].endswith("/revisions") for e in rollback)

    backup = _run(fresh_lab, api, "backup", {})
    assert_covered(backup, "backup")
    assert any(e["path"].endswith("/export") for e in backup)
    FED.add("rollback-backup")


def test_discover_makes_only_calls_the_table_lists(fresh_lab: Lab) -> None:
    """The one command that reads the cloud outside a flow: its rows are in the table too."""
    since = fresh_lab.last_seq()
    result = lifeboat(
        "discover",
        "--primary-project",
        TOPOLOGY.regions.primary.project,
        "--secondary-project",
        TOPOLOGY.regions.secondary.project,
        "--env",
        "lab",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    calls = [e for e in fresh_lab.requests(since=since) if is_cloud_call(e)]
    assert_covered(calls, "discover")
    assert any(e["path"].endswith("/managedZones") for e in calls)
    FED.add("discover")


def _expired_drill_instance(lab: Lab) -> None:
    """A scratch instance a drill left (a killed worker), labelled and past its expiry."""
    past = int((datetime.now(UTC) - timedelta(hours=1)).timestamp())
    labels = {"lifeboat-drill": "drill-iam", "lifeboat-expires": str(past)}
    body = {
        "name": "recovery-test-iam",
        "region": SECONDARY.name,
        "settings": {"userLabels": labels},
    }
    sql = lab.clients().sql
    sql.call(lambda s: s.instances().insert(project=OLD.project, body=body), timeout=10)
    wait_for(
        lambda: sql_instance(lab, OLD.project, "recovery-test-iam").get("state") == "RUNNABLE",
        timeout=60,
        what="the expired scratch instance RUNNABLE",
        interval=0.5,
    )


def test_the_backup_drill_readiness_and_watch_flows_make_only_calls_the_table_lists(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Every other deployed flow, in the order that gives each what it reads: a backup
    for the staleness check, the restore and the drill; a drill for readiness. A backup
    past retention gives the backup something to delete, and an expired drill instance
    the sweeper. mongo-capture goes first: finding no base backup with change tokens, it
    takes one (the backup's MongoDB calls) before its slice."""
    write_synthetic(fresh_lab, "mongodb", timedelta(days=45))
    # Every kind the config backup keeps, the weekly secrets included; a config backup
    # past retention gives it something to delete. The drill restores one of its items.
    write_synthetic(fresh_lab, "config", timedelta(days=120))
    kinds = {"kinds": ["config", "secrets", "assets"]}
    assert_covered(_run(fresh_lab, api, "config-backup", kinds), "config-backup")
    flows = ("mongo-capture", "backup", "backup-staleness", "restore", "recovery-drill")
    for flow in (*flows, "readiness"):
        # The drill as its monthly schedule runs it: from the europe-west1 copy.
        params = {"source_bucket": "europe-west1"} if flow == "recovery-drill" else {}
        assert_covered(_run(fresh_lab, api, flow, params), flow)
    _expired_drill_instance(fresh_lab)
    _expired_drill_record_set(fresh_lab)
    assert_covered(_run(fresh_lab, api, "drill-sweeper", {}), "drill-sweeper")
    # watch reads which region serves users from DNS, and Cloud Run's metrics from
    # Cloud Monitoring in that region's project.
    watch = _run(fresh_lab, api, "watch", {})
    assert_covered(watch, "watch")
    assert {e["api"] for e in watch} == {"dns", "monitoring"}
    assert grants_by_flow(TOPOLOGY)["watch"][PRIMARY.project] == (
        "dns.resourceRecordSets.list",
        "monitoring.timeSeries.list",
    )
    FED.add("the-rest")


def _expired_drill_record_set(lab: Lab) -> None:
    """A record set a killed drill left, named for a day long past, for the sweeper."""
    zone = f"{lab.endpoints['dns']}/dns/v1/projects/{TOPOLOGY.dns.project}/managedZones"
    name = f"lifeboat-drill-20260101-iam.{TOPOLOGY.dns.dns_name}"
    addition = {"name": name, "type": "A", "ttl": 60, "rrdatas": ["192.0.2.1"]}
    httpx.post(
        f"{zone}/{TOPOLOGY.dns.zone}/changes", json={"additions": [addition]}, timeout=10
    ).raise_for_status()


def test_restore_config_makes_only_calls_the_table_lists(fresh_lab: Lab, api: PrefectApi) -> None:
    """Each kind put back in place after a change, and into a new resource: a record set,
    a secret, a Cloud Run service."""
    service = TOPOLOGY.services[0].name
    client = fresh_lab.clients().run_services
    name = f"projects/{PRIMARY.project}/locations/{PRIMARY.name}/services/{service}"
    svc = client.get_service(name=name)
    # Traffic pinned to a revision: restore-config then checks that revision still exists.
    pinned = run_v2.TrafficTarget(
        type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
        revision=svc.latest_ready_revision.rsplit("/", 1)[-1],
        percent=100,
    )
    del svc.traffic[:]
    svc.traffic.append(pinned)
    client.update_service(service=svc).result(timeout=30, polling=fresh_lab.clients().polling)
    kinds = {"kinds": ["config", "secrets"]}
    assert_covered(_run(fresh_lab, api, "config-backup", kinds), "config-backup")
    record = TOPOLOGY.dns.records[0]
    secret = TOPOLOGY.cloud_sql.app_secret
    items = {
        "record": f"dns/{TOPOLOGY.dns.zone}/{record.type}/{record.name.rstrip('.')}.json",
        "secret": f"secrets/{secret.project}/{secret.name}.json",
        "service": f"run/{PRIMARY.name}/{service}.json",
    }
    set_app_secret(lab=fresh_lab, url="postgresql://iam@192.0.2.9:5432/varai_prod")
    svc = client.get_service(name=name)
    svc.labels["iam"] = "changed"
    client.update_service(service=svc).result(timeout=30, polling=fresh_lab.clients().polling)
    targets = {
        "record": f"iam-copy.{TOPOLOGY.dns.dns_name}",
        "secret": "iam-copy",
        "service": "iam-copy",
    }
    for kind, item in items.items():
        for target in (None, targets[kind]):
            params = {"item": item, "dry_run": False, "reason": "iam", "target": target}
            params["force"] = True
            assert_covered(_run(fresh_lab, api, "restore-config", params), "restore-config")
    FED.add("restore-config")


def _foreign_instance(lab: Lab, name: str) -> None:
    """An instance no restore made, for a forced restore-sql to replace."""
    body = {"name": name, "region": PRIMARY.name, "settings": {"userLabels": {"owner": "iam"}}}
    sql = lab.clients().sql
    sql.call(lambda s: s.instances().insert(project=OLD.project, body=body), timeout=10)
    wait_for(
        lambda: sql_instance(lab, OLD.project, name).get("state") == "RUNNABLE",
        timeout=60,
        what=f"{name} RUNNABLE",
        interval=0.5,
    )


def test_restore_sql_makes_only_calls_the_table_lists(fresh_lab: Lab, api: PrefectApi) -> None:
    """A restore to a point in time (a clone), a forced one from a backup run over an
    instance no restore made (deleted, created again, the run restored into it), and one
    from the exports of the europe-west1 copy (users, databases, imports)."""
    assert_covered(_run(fresh_lab, api, "backup", {}), "backup")
    runs = fresh_lab.clients().sql.call(
        lambda s: s.backupRuns().list(project=OLD.project, instance=OLD.instance), timeout=10
    )
    run_id = int(runs["items"][0]["id"])
    point = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    pitr = _run(
        fresh_lab,
        api,
        "restore-sql",
        {"point_in_time": point, "target_instance": "iam-pitr", "reason": "iam"},
    )
    assert_covered(pitr, "restore-sql")
    assert any(e["path"].endswith("/clone") for e in pitr)
    _foreign_instance(fresh_lab, "iam-foreign")
    forced = _run(
        fresh_lab,
        api,
        "restore-sql",
        {"backup_run": run_id, "target_instance": "iam-foreign", "force": True, "reason": "iam"},
    )
    assert_covered(forced, "restore-sql")
    assert any(e["path"].endswith("/restoreBackup") for e in forced)
    exported = _run(
        fresh_lab,
        api,
        "restore-sql",
        {"source_bucket": "europe-west1", "target_instance": "iam-export", "reason": "iam"},
    )
    assert_covered(exported, "restore-sql")
    assert any(e["path"].endswith("/import") for e in exported)
    FED.add("restore-sql")


# Rows (api, method, path) and flows that no run above makes, and why. An entry that a run
# does make fails the test too: the list holds only what must be taken on trust.
NOT_MADE_HERE: dict[tuple[str, str, str, str], str] = {
    ("sql", "DELETE", "/v1/projects/{project}/instances/{instance}/backupRuns/{run}", "backup"): (
        "a backup run past retention (30 days): Cloud SQL stamps a run when it is made and no "
        "API backdates one, so a lab run is never old enough; the decision is unit-tested "
        "(tests/unit/test_retention_decisions.py)"
    ),
    (
        "sql",
        "POST",
        "/v1/projects/{project}/instances/{instance}/restoreBackup",
        "recovery-drill",
    ): (
        "the drill restores a backup run only when it reads the backups bucket; the run here "
        "reads the europe-west1 copy, as the monthly schedule does, and imports its exports "
        "instead (the same call is made here by restore-sql; tests/flows/test_drill.py makes "
        "it from the drill)"
    ),
}


def test_every_row_of_the_table_is_made_by_the_flows_it_names() -> None:
    if {
        "switches",
        "rollback-backup",
        "discover",
        "the-rest",
        "restore-sql",
        "restore-config",
    } != FED:
        pytest.skip("judged only after this module's other tests all ran and passed")
    key = lambda c, f: (c.api, c.method, c.path, f)  # noqa: E731
    unseen = sorted(
        key(c, f)
        for c in CALLS
        for f in c.flows
        if (c, f) not in SEEN and key(c, f) not in NOT_MADE_HERE
    )
    assert not unseen, (
        "rows no run made (drop them, or allow-list them with the reason):\n"
        + "\n".join(" ".join(u) for u in unseen)
    )
    made = sorted(k for k in NOT_MADE_HERE if any(key(c, f) == k for c, f in SEEN))
    assert not made, f"allow-listed, yet made by a run here: {made}"
