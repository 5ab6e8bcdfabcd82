"""readiness through the real Prefect server: green when all is well, red row by row."""

from __future__ import annotations

import os
import signal
from datetime import timedelta

from lab.prefect_api import PrefectApi, iso_ago
from tests.backup.backup_checks import write_synthetic
from tests.flows.lab_checks import TOPOLOGY
from tests.flows.readiness_checks import fresh_backups, passed_drill, readiness, red
from tests.labharness import Lab
from tests.polling import wait_for

REPLICA = TOPOLOGY.cloud_sql.replica
READ_METHODS = {"GET"}  # every API Lifeboat calls is REST now, Cloud SQL included


def test_green_when_ready_and_read_only(fresh_lab: Lab, api: PrefectApi) -> None:
    fresh_backups(fresh_lab)
    passed_drill(fresh_lab, timedelta(days=3))
    since = fresh_lab.last_seq()
    final, rows = readiness(api, fresh_lab)
    assert final["state"]["type"] == "COMPLETED", (final["state"], rows)
    assert red(rows) == set()
    assert len(rows) == 11
    assert rows[("replica", REPLICA.instance)]["limit"] == "300 s"
    assert rows[("verified-restore-age", "recovery-drill")]["measured"] == "3.0 days"
    # A plan evaluation changes nothing: every call it made was a read.
    calls = [
        e for e in fresh_lab.requests(since=since) if e["api"] in ("dns", "run", "sql", "compute")
    ]
    assert calls and {e["method"] for e in calls} <= READ_METHODS, {e["method"] for e in calls}


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
    assert red(rows) == {("backup-age", "mongodb"), ("verified-restore-age", "recovery-drill")}
    assert rows[("backup-age", "mongodb")]["measured"].startswith("40.")
    assert (
        "no recovery drill has passed" in rows[("verified-restore-age", "recovery-drill")]["detail"]
    )
    assert api.wait_event("lifeboat.readiness.red", since)
