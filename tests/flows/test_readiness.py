"""readiness through the real Prefect server: green when all is well, red row by row."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from typing import Any

from lab.prefect_api import PrefectApi, iso_ago
from tests.backup.backup_checks import write_synthetic
from tests.flows.lab_checks import TOPOLOGY, sql
from tests.flows.readiness_checks import fresh_backups, passed_drill, readiness, red
from tests.labharness import Lab
from tests.polling import wait_for

REPLICA = TOPOLOGY.cloud_sql.replica
PROJECTS = {TOPOLOGY.regions.primary.project, TOPOLOGY.regions.secondary.project}
PROMOTE = "cloudsql.instances.promoteReplica"
COPIES = TOPOLOGY.backups.copies
READ_METHODS = {"GET"}  # every API Lifeboat calls is REST now, Cloud SQL included


def test_green_when_ready_and_read_only(fresh_lab: Lab, api: PrefectApi) -> None:
    fresh_backups(fresh_lab)
    passed_drill(fresh_lab, timedelta(days=3))
    since = fresh_lab.last_seq()
    final, rows = readiness(api, fresh_lab)
    assert final["state"]["type"] == "COMPLETED", (final["state"], rows)
    assert red(rows) == set()
    assert len(rows) == 15 + len(PROJECTS) + len(COPIES)
    fence = rows[("database-fence", TOPOLOGY.cloud_sql.primary.instance)]
    assert fence["measured"] == "NOLOGIN yes; end sessions yes", fence
    assert fence["detail"] == "postgres can fence varai_user on varai-prod", fence
    for copy in COPIES:  # each region's copy bucket is where the topology says, and fresh
        row = rows[("backup-copy", copy.location)]
        assert row["measured"].startswith(f"{copy.location}; mongodb 1.0 h"), row
    for project in PROJECTS:  # an untouched lab holds every permission
        assert rows[("permissions", project)]["detail"].startswith("the worker holds every")
    assert rows[("pitr", TOPOLOGY.cloud_sql.primary.instance)]["measured"] == "on, 7 days"
    assert rows[("worker-location", "lab-host")]["limit"] == "not us-central1"
    assert rows[("replica", REPLICA.instance)]["limit"] == "300 s"
    assert rows[("verified-restore-age", "recovery-drill")]["measured"] == "3.0 days"
    # A plan evaluation changes nothing: every call it made was a read.
    calls = [
        e for e in fresh_lab.requests(since=since) if e["api"] in ("dns", "run", "sql", "compute")
    ]
    assert calls and {e["method"] for e in calls} <= READ_METHODS, {e["method"] for e in calls}


def test_red_when_the_monitoring_role_could_not_fence_the_apps_role(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """A monitoring role with no CREATEROLE and no right to end other sessions, as Cloud
    SQL may give (lab/FIDELITY.md): a planned switch would fail at its database fence, so
    readiness says so now, naming both grants."""
    fresh_backups(fresh_lab)
    passed_drill(fresh_lab, timedelta(days=3))
    primary = TOPOLOGY.cloud_sql.primary
    sql(fresh_lab, primary.project, primary.instance, "CREATE ROLE lifeboat_weak LOGIN")

    def weak(data: dict[str, Any]) -> None:
        data["cloud_sql"]["monitor_user"] = "lifeboat_weak"

    with fresh_lab.topology_edited(weak):
        final, rows = readiness(api, fresh_lab)

    assert final["state"]["type"] == "FAILED"
    fence = rows[("database-fence", primary.instance)]
    assert fence["status"] == "RED" and fence["measured"] == "NOLOGIN no; end sessions no"
    assert fence["detail"] == (
        "lifeboat_weak lacks CREATEROLE; lifeboat_weak may not end varai_user's sessions: "
        "GRANT pg_signal_backend TO lifeboat_weak (or GRANT varai_user TO lifeboat_weak); "
        "without it a planned switch waits 30 s for them, then fails before the promotion"
    ), fence


def test_red_when_a_bucket_or_the_secret_lives_only_in_the_primary_region(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Issue 16 §4: a failover reads both while the primary region is down. Made with the
    real clients, as an operator's project could hold them: a bucket located in
    us-central1 and a secret replicated there only."""
    fresh_backups(fresh_lab)
    passed_drill(fresh_lab, timedelta(days=3))
    primary, secret = TOPOLOGY.regions.primary, TOPOLOGY.cloud_sql.app_secret
    clients = fresh_lab.clients()
    clients.storage(primary.project).create_bucket("varai-backups-regional", location=primary.name)
    clients.secret_manager.create_secret(
        parent=f"projects/{secret.project}",
        secret_id="prod-database-url-one-region",
        secret={"replication": {"user_managed": {"replicas": [{"location": primary.name}]}}},
    )

    def regional(data: dict[str, Any]) -> None:
        data["backups"]["bucket"] = "varai-backups-regional"
        data["cloud_sql"]["app_secret"]["name"] = "prod-database-url-one-region"

    with fresh_lab.topology_edited(regional):
        final, rows = readiness(api, fresh_lab)

    assert final["state"]["type"] == "FAILED"
    bucket = ("bucket", "varai-backups-regional")
    one_region = ("secret-replication", "prod-database-url-one-region")
    # The new bucket holds no backup yet: the two ages are red as well.
    assert red(rows) == {bucket, one_region, ("backup-age", "mongodb"), ("backup-age", "cloudsql")}
    assert "only in the primary region" in rows[bucket]["detail"]
    assert rows[bucket]["measured"] == "region"
    assert "every replica is in the primary region" in rows[one_region]["detail"]
    assert rows[one_region]["measured"] == primary.name
    assert rows[("bucket", TOPOLOGY.backups.records_bucket)]["measured"] == "multi-region"


def test_red_when_a_copy_bucket_is_not_where_the_topology_says(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Issue 17 §3: a copy counts for a region only if its bucket is really there."""
    fresh_backups(fresh_lab)
    passed_drill(fresh_lab, timedelta(days=3))

    def elsewhere(data: dict[str, Any]) -> None:
        data["backups"]["copies"][1]["location"] = "us-west1"  # it is in europe-west1

    with fresh_lab.topology_edited(elsewhere):
        final, rows = readiness(api, fresh_lab)
    assert final["state"]["type"] == "FAILED"
    assert red(rows) == {("backup-copy", "us-west1")}
    row = rows[("backup-copy", "us-west1")]
    assert row["detail"] == "located in EUROPE-WEST1, the topology says us-west1", row
    assert rows[("backup-copy", "us-east1")]["status"] == "green"


def test_red_when_the_replica_is_stopped(fresh_lab: Lab, api: PrefectApi) -> None:
    fresh_backups(fresh_lab)
    passed_drill(fresh_lab, timedelta(days=3))
    pid_file = (
        fresh_lab.root / "sql" / REPLICA.project / REPLICA.instance / "data" / "postmaster.pid"
    )
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)  # fast shutdown
    wait_for(lambda: not pid_file.exists(), timeout=30, what="the replica's postmaster exit")
    final, rows = readiness(api, fresh_lab)  # the next test's reset rebuilds the replica
    assert final["state"]["type"] == "FAILED"
    assert red(rows) == {("replica", REPLICA.instance)}
    assert f"replica {REPLICA.instance}" in final["state"]["message"]


def test_red_when_the_newest_backup_is_stale_or_no_restore_was_verified(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    since = iso_ago()
    write_synthetic(fresh_lab, "mongodb", timedelta(hours=40))  # past the 36 h alert
    write_synthetic(fresh_lab, "cloudsql", timedelta(hours=2))
    final, rows = readiness(api, fresh_lab)  # and no drill record at all
    assert final["state"]["type"] == "FAILED"
    copies = {("backup-copy", c.location) for c in COPIES}  # their mongodb copies are 40 h old
    assert red(rows) == {
        ("backup-age", "mongodb"),
        ("verified-restore-age", "recovery-drill"),
        *copies,
    }
    assert rows[("backup-age", "mongodb")]["measured"].startswith("40.")
    assert all("mongodb copy" in rows[c]["detail"] for c in copies)
    assert (
        "no recovery drill has passed" in rows[("verified-restore-age", "recovery-drill")]["detail"]
    )
    assert api.wait_event("lifeboat.readiness.red", since)


def test_red_when_a_fence_a_switch_kept_is_still_on_a_service(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """A planned switch killed after its promotion started keeps its fence (ingress
    internal-only, annotations naming the run): readiness names it until a re-run lifts it."""
    from google.cloud import run_v2
    from google.protobuf import field_mask_pb2

    fresh_backups(fresh_lab)
    passed_drill(fresh_lab, timedelta(days=3))
    primary = TOPOLOGY.regions.primary
    services = fresh_lab.clients().run_services
    name = f"projects/{primary.project}/locations/{primary.name}/services/ai-service"
    got = services.get_service(name=name)
    got.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY
    got.annotations["lifeboat.dev/fenced-by"] = "failover/INC-KEPT/run-1"
    got.annotations["lifeboat.dev/ingress-before"] = "INGRESS_TRAFFIC_ALL"
    services.update_service(
        service=got, update_mask=field_mask_pb2.FieldMask(paths=["ingress", "annotations"])
    ).result(timeout=30, polling=fresh_lab.clients().polling)

    final, rows = readiness(api, fresh_lab)

    assert final["state"]["type"] == "FAILED"
    assert red(rows) == {("services", primary.name)}
    detail = rows[("services", primary.name)]["detail"]
    assert "fenced from public traffic: ai-service (by failover/INC-KEPT/run-1)" in detail


def _ready_but_for(lab: Lab) -> None:
    fresh_backups(lab)
    passed_drill(lab, timedelta(days=3))


def test_red_when_the_worker_lacks_a_permission_a_flow_needs(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Issue 16 §3: the lab revokes promoteReplica where the replica lives (the primary's
    project: Cloud SQL keeps a replica in its primary's project); the row names it and the
    flows that need it, and every other row stays green."""
    _ready_but_for(fresh_lab)
    project = REPLICA.project
    fresh_lab.iam(project, revoked=[PROMOTE])
    since = fresh_lab.last_seq()
    final, rows = readiness(api, fresh_lab)
    assert final["state"]["type"] == "FAILED"
    assert red(rows) == {("permissions", project)}
    row = rows[("permissions", project)]
    assert row["detail"] == f"missing 1: {PROMOTE} (needed by failover, failback)"
    assert row["measured"].endswith("held")
    assert f"permissions {project}" in final["state"]["message"]
    # One question per project, and a question is no write.
    asked = fresh_lab.requests(api="resourcemanager", since=since)
    assert {e["path"] for e in asked} == {f"/v3/projects/{p}:testIamPermissions" for p in PROJECTS}
    assert not any(e["write"] for e in asked)


def test_a_503_from_resource_manager_is_retried_and_a_403_is_a_red_row(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Bad paths: a 503 is retried until the answer comes (green); a 403 (the project is
    missing or hidden from the worker) turns that project's row red with the reason,
    and readiness still publishes every other row."""
    _ready_but_for(fresh_lab)
    primary = TOPOLOGY.regions.primary.project
    # The DR project's id starts with the primary's: match the whole path segment.
    asking = f"/v3/projects/{primary}:testIamPermissions"
    fresh_lab.fault(api="resourcemanager", method="POST", path=f"{asking}$", status=503, count=2)
    since = fresh_lab.last_seq()
    final, rows = readiness(api, fresh_lab)
    assert final["state"]["type"] == "COMPLETED", (final["state"], rows)
    assert red(rows) == set()
    statuses = [
        e["status"]
        for e in fresh_lab.requests(api="resourcemanager", since=since)
        if e["path"] == asking
    ]
    assert statuses == [503, 503, 200]

    fresh_lab.fault(api="resourcemanager", method="POST", path=f"{asking}$", status=403, count=10)
    since = fresh_lab.last_seq()
    final, rows = readiness(api, fresh_lab)
    assert final["state"]["type"] == "FAILED"
    assert red(rows) == {("permissions", primary)}
    detail = rows[("permissions", primary)]["detail"]
    assert detail.startswith(f"Resource Manager refused to test permissions on project {primary}")
    assert "(403)" in detail
    assert "does not exist or the worker's identity cannot see it" in detail
    # A 403 is permanent: asked once, not retried.
    statuses = [
        e["status"]
        for e in fresh_lab.requests(api="resourcemanager", since=since)
        if e["path"] == asking
    ]
    assert statuses == [403]


def test_red_when_the_live_primary_keeps_no_point_in_time_recovery(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Seed 004: point-in-time recovery kept 7 days. Turned off with the real client."""
    fresh_backups(fresh_lab)
    passed_drill(fresh_lab, timedelta(days=3))
    primary = TOPOLOGY.cloud_sql.primary
    sql = fresh_lab.clients().sql
    body = {"settings": {"backupConfiguration": {"pointInTimeRecoveryEnabled": False}}}
    op = sql.call(
        lambda s: s.instances().patch(
            project=primary.project, instance=primary.instance, body=body
        ),
        timeout=10,
    )
    wait_for(
        lambda: (
            sql.call(
                lambda s: s.operations().get(project=primary.project, operation=op["name"]),
                timeout=10,
            )["status"]
            == "DONE"
        ),
        timeout=60,
        what="PITR turned off",
        interval=0.5,
    )

    final, rows = readiness(api, fresh_lab)

    assert final["state"]["type"] == "FAILED"
    row = ("pitr", primary.instance)
    assert red(rows) == {row}
    assert rows[row]["measured"] == "off"
    assert "pointInTimeRecoveryEnabled" in rows[row]["detail"]
