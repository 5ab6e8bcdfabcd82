"""backup-staleness fires on an old backup and stays quiet on a fresh one."""

from __future__ import annotations

import json
from datetime import timedelta

from lab.prefect_api import PrefectApi, iso_ago
from tests.backup.backup_checks import params, write_synthetic
from tests.flows.lab_checks import run_records
from tests.labharness import Lab


def check(api: PrefectApi, **extra: object) -> dict[str, object]:
    return api.wait(api.launch("backup-staleness/lab", params(**extra))["id"], timeout=120)


def test_fresh_backups_stay_quiet(fresh_lab: Lab, api: PrefectApi) -> None:
    write_synthetic(fresh_lab, "mongodb", timedelta(hours=1))
    write_synthetic(fresh_lab, "cloudsql", timedelta(hours=2))
    final = check(api)
    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert fresh_lab.webhooks() == []
    [table] = [a for a in api.artifacts(final["id"]) if a["key"] == "backup-staleness-lab"]
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert {r["source"]: r["level"] for r in rows} == {"mongodb": "ok", "cloudsql": "ok"}
    assert all(0 < r["age_hours"] < 3 for r in rows)  # every source's age is reported


def test_an_old_backup_alerts_and_fails_the_run(fresh_lab: Lab, api: PrefectApi) -> None:
    since = iso_ago()
    write_synthetic(fresh_lab, "mongodb", timedelta(hours=40))  # > 36 h
    write_synthetic(fresh_lab, "mongodb", timedelta(hours=1), status="failed")  # not verified
    write_synthetic(fresh_lab, "cloudsql", timedelta(hours=2))
    final = check(api)
    assert final["state"]["type"] == "FAILED"
    assert "mongodb: 40." in final["state"]["message"]
    assert "cloudsql" not in final["state"]["message"]
    assert sorted(w["name"] for w in fresh_lab.webhooks()) == ["email", "slack"]
    assert "mongodb: 40." in json.dumps(fresh_lab.webhooks())
    assert api.wait_event("lifeboat.backup-staleness.alert", since)
    [record] = run_records(fresh_lab, "backup-staleness", final["id"])
    assert record["outcome"] == "failed" and "mongodb: 40." in record["error"]
    assert {r["source"]: r["level"] for r in record["after"]["sources"]} == {
        "mongodb": "alert",
        "cloudsql": "ok",
    }


def test_thresholds_are_parameters(fresh_lab: Lab, api: PrefectApi) -> None:
    write_synthetic(fresh_lab, "mongodb", timedelta(hours=5))
    write_synthetic(fresh_lab, "cloudsql", timedelta(hours=5))
    final = check(api, rpo_hours=1, alert_hours=4)
    assert final["state"]["type"] == "FAILED"
    assert "alert after 4 h" in final["state"]["message"]
