"""The IAM table (lifeboat/iam.py) covers every Google API call the flows make.

Each test launches flows through the lab's Prefect deployments (every deployed flow,
between them) and reads the lab's request log between each launch and the run's end;
one runs `lifeboat discover`. Every logged Google API call must
match a row of the table, that row must name the flow, and the project (or bucket) in
its path must be one the row resolves to in the lab's topology. A call with no row fails
the test, naming the call: the table cannot drift from the code.

Left out, as the fault matrix leaves them out (reliability/faults.py): the region apps'
and the front door's health probes and the notification webhooks. They are not Google
API calls; ``is_cloud_call`` keeps the request log's Google APIs only.
"""

from __future__ import annotations

import re
from typing import Any

from lab.prefect_api import PrefectApi
from lifeboat.iam import Call, Place, find, grants_by_flow, projects_of
from reliability.faults import is_cloud_call
from tests.flows.lab_checks import PRIMARY, TOPOLOGY, incident
from tests.flows.rollback_helpers import deploy_new_revision
from tests.labharness import Lab, lifeboat

BUCKETS = {TOPOLOGY.backups.bucket, TOPOLOGY.backups.records_bucket}


def _run(lab: Lab, api: PrefectApi, flow: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Launch ``flow``'s lab deployment, wait for its end; the cloud calls it made."""
    since = lab.last_seq()
    final = api.wait(api.launch(f"{flow}/lab", params)["id"], timeout=400)
    assert final["state"]["type"] == "COMPLETED", (flow, final["state"])
    return [e for e in lab.requests(since=since) if is_cloud_call(e)]


def _where(call: Call) -> set[str]:
    return {p for place in call.lands_on for p in projects_of(place, TOPOLOGY)}


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
    if project and project.group(1) not in _where(call):
        return f"{said}: project {project.group(1)} is not where the row lands ({_where(call)})"
    bucket = re.search(r"/b/([^/]+)", entry["path"])
    # Only a Cloud Storage call names its bucket; a call that asks about every project
    # (Resource Manager's) lands on the buckets' project without naming a bucket.
    in_bucket = call.api == "storage" and Place.buckets in call.lands_on
    if in_bucket and (not bucket or bucket.group(1) not in BUCKETS):
        return f"{said}: not a bucket of the topology"
    return None


def assert_covered(entries: list[dict[str, Any]], flow: str) -> None:
    assert entries, f"{flow} made no Google API call: the request log is not what is read"
    misfits = sorted({m for e in entries if (m := _misfit(e, flow)) is not None})
    assert not misfits, f"{flow}: calls the IAM table does not cover:\n" + "\n".join(misfits)


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


def test_the_backup_drill_readiness_and_watch_flows_make_only_calls_the_table_lists(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Every other deployed flow, in the order that gives each what it reads: a backup
    for the staleness check, the restore and the drill; a drill for readiness."""
    for flow in ("backup", "backup-staleness", "restore", "recovery-drill", "readiness"):
        assert_covered(_run(fresh_lab, api, flow, {}), flow)
    # The drill cleans up after itself, so the sweeper finds nothing to delete: its list
    # calls are what is checked here.
    assert_covered(_run(fresh_lab, api, "drill-sweeper", {}), "drill-sweeper")
    # watch reads its metrics from the lab's control API, not a Google API (yet): the
    # table gives it nothing, and it calls nothing.
    assert _run(fresh_lab, api, "watch", {}) == []
    assert grants_by_flow(TOPOLOGY)["watch"] == {}
