"""restore-sql through the real Prefect server, worker and lab: the live primary, as it was
at a moment, into a new instance; and the refusals, a retried 503, a resumed run."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from lab.prefect_api import PrefectApi
from tests.flows.lab_checks import TOPOLOGY, run_records, sql, sql_instance, sql_method
from tests.labharness import Lab, lifeboat
from tests.polling import wait_for

PRIMARY = TOPOLOGY.cloud_sql.primary
PROJECT = PRIMARY.project


def _launch(api: PrefectApi, **params: Any) -> dict[str, Any]:
    return api.launch("restore-sql/lab", {"reason": "pitr test", **params})


def _restore(api: PrefectApi, **params: Any) -> dict[str, Any]:
    return api.wait(_launch(api, **params)["id"], timeout=300)


def _marks(lab: Lab, instance: str) -> list[int]:
    rows = sql(lab, PROJECT, instance, "SELECT id FROM pitr_marks ORDER BY id")
    return [int(r[0]) for r in rows]


def _write(lab: Lab, first: int, last: int) -> None:
    sql(
        lab,
        PROJECT,
        PRIMARY.instance,
        f"INSERT INTO pitr_marks SELECT generate_series({first}, {last})",
    )


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _calls(lab: Lab, since: int, method: str) -> list[dict[str, Any]]:
    return [
        e
        for e in lab.requests(api="sql", since=since)
        if sql_method(e["method"], e["path"]) == method and e["status"] < 400
    ]


def _moment_between_writes(lab: Lab) -> datetime:
    """Rows 1-20, the moment, rows 21-40: what a restore to the moment must tell apart."""
    sql(lab, PROJECT, PRIMARY.instance, "CREATE TABLE pitr_marks (id int PRIMARY KEY)")
    _write(lab, 1, 20)
    time.sleep(0.3)
    moment = datetime.now(UTC)
    time.sleep(0.3)
    _write(lab, 21, 40)
    return moment


def _state(final: dict[str, Any]) -> str:
    return str(final["state"]["type"])


def test_a_restore_to_a_moment_has_the_rows_before_it_and_none_after(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    moment = _moment_between_writes(fresh_lab)
    since = fresh_lab.last_seq()

    final = _restore(api, point_in_time=_rfc3339(moment), target_instance="varai-prod-pitr")

    assert _state(final) == "COMPLETED", final["state"]
    assert _marks(fresh_lab, "varai-prod-pitr") == list(range(1, 21))
    assert _marks(fresh_lab, PRIMARY.instance) == list(range(1, 41))  # the source untouched
    assert len(_calls(fresh_lab, since, "instances.clone")) == 1
    [record] = run_records(fresh_lab, "restore-sql", final["id"])
    assert record["outcome"] == "completed"
    users = sql(fresh_lab, PROJECT, PRIMARY.instance, "SELECT count(*) FROM users")[0][0]
    assert record["after"]["integrity"]["users"] == users
    assert [s["name"] for s in record["steps"]] == ["check", "restore", "verify"]


def _backup_run(lab: Lab) -> int:
    """An on-demand backup run of the primary, taken with the real client and waited for."""
    client = lab.clients().sql
    op = client.call(
        lambda s: s.backupRuns().insert(project=PROJECT, instance=PRIMARY.instance, body={}),
        timeout=10,
    )
    wait_for(
        lambda: (
            client.call(
                lambda s: s.operations().get(project=PROJECT, operation=op["name"]), timeout=10
            )["status"]
            == "DONE"
        ),
        timeout=120,
        what="the backup run",
        interval=0.5,
    )
    return int(op["backupContext"]["backupId"])


def test_a_restore_of_a_backup_run_goes_into_a_new_instance_like_the_source(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    sql(fresh_lab, PROJECT, PRIMARY.instance, "CREATE TABLE pitr_marks (id int PRIMARY KEY)")
    _write(fresh_lab, 1, 20)
    run_id = _backup_run(fresh_lab)
    _write(fresh_lab, 21, 40)
    since = fresh_lab.last_seq()

    final = _restore(api, backup_run=run_id, target_instance="varai-prod-run")

    assert _state(final) == "COMPLETED", final["state"]
    assert _marks(fresh_lab, "varai-prod-run") == list(range(1, 21))
    assert [sql_method(e["method"], e["path"]) for e in _mutations(fresh_lab, since)] == [
        "instances.insert",
        "instances.restoreBackup",
    ]
    restored = sql_instance(fresh_lab, PROJECT, "varai-prod-run")
    source = sql_instance(fresh_lab, PROJECT, PRIMARY.instance)
    assert restored["settings"]["ipConfiguration"] == source["settings"]["ipConfiguration"]
    assert restored["settings"]["userLabels"]["lifeboat-restore"] == "backup-run"


def _mutations(lab: Lab, since: int) -> list[dict[str, Any]]:
    return [
        e
        for e in lab.requests(api="sql", since=since)
        if e["method"] in ("POST", "DELETE", "PATCH") and e["status"] < 400
    ]


def test_a_restore_refused_before_any_change_names_the_parameter(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    since = fresh_lab.last_seq()
    future = _rfc3339(datetime.now(UTC) + timedelta(hours=1))
    refusals = {
        "future": _restore(api, point_in_time=future, target_instance="varai-prod-x"),
        "both": _restore(api, point_in_time=future, backup_run=123, target_instance="varai-prod-x"),
        # The live replica exists and no restore made it.
        "exists": _restore(
            api,
            point_in_time=_rfc3339(datetime.now(UTC)),
            target_instance=TOPOLOGY.cloud_sql.replica.instance,
        ),
        "not-a-run": _restore(api, backup_run=42, target_instance="varai-prod-x"),
    }

    words = {
        "future": "point_in_time:",
        "both": "point_in_time, backup_run, backup_id:",
        "exists": "target_instance:",
        "not-a-run": "backup_run:",
    }
    for name, final in refusals.items():
        assert _state(final) == "FAILED", (name, final["state"])
        assert words[name] in final["state"]["message"], (name, final["state"]["message"])
    mutations = [
        e for e in fresh_lab.requests(api="sql", since=since) if e["method"] in ("POST", "DELETE")
    ]
    assert mutations == []


def test_pitr_off_is_refused_naming_the_setting(fresh_lab: Lab, api: PrefectApi) -> None:
    client = fresh_lab.clients().sql
    body = {"settings": {"backupConfiguration": {"pointInTimeRecoveryEnabled": False}}}
    op = client.call(
        lambda s: s.instances().patch(project=PROJECT, instance=PRIMARY.instance, body=body),
        timeout=10,
    )
    wait_for(
        lambda: (
            client.call(
                lambda s: s.operations().get(project=PROJECT, operation=op["name"]), timeout=10
            )["status"]
            == "DONE"
        ),
        timeout=60,
        what="PITR turned off",
        interval=0.5,
    )
    since = fresh_lab.last_seq()

    final = _restore(api, point_in_time=_rfc3339(datetime.now(UTC)), target_instance="x-pitr")

    assert _state(final) == "FAILED"
    assert "pointInTimeRecoveryEnabled" in final["state"]["message"]
    assert _calls(fresh_lab, since, "instances.clone") == []


def test_a_503_on_the_clone_is_retried_and_clones_once(fresh_lab: Lab, api: PrefectApi) -> None:
    moment = _moment_between_writes(fresh_lab)
    fresh_lab.fault(api="sql", method="POST", path="/clone", status=503, count=2)
    since = fresh_lab.last_seq()

    final = _restore(api, point_in_time=_rfc3339(moment), target_instance="varai-prod-503")

    assert _state(final) == "COMPLETED", final["state"]
    assert _marks(fresh_lab, "varai-prod-503") == list(range(1, 21))
    assert len(_calls(fresh_lab, since, "instances.clone")) == 1


def test_a_run_that_dies_mid_clone_is_resumed_without_a_second_clone(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    moment = _moment_between_writes(fresh_lab)
    fresh_lab.post("config", {"latency": {"sql.restore": 3000}})  # 30 s in the lab
    since = fresh_lab.last_seq()
    params = {"point_in_time": _rfc3339(moment), "target_instance": "varai-prod-resumed"}
    first = _launch(api, **params)
    wait_for(
        lambda: _calls(fresh_lab, since, "instances.clone"),
        timeout=120,
        what="the first run's clone",
        interval=0.5,
    )
    api.http.post(
        f"/flow_runs/{first['id']}/set_state",
        json={"state": {"type": "CANCELLING"}, "force": True},
    ).raise_for_status()
    assert _state(api.wait(first["id"], timeout=120)) in ("CANCELLED", "CRASHED")
    assert sql_instance(fresh_lab, PROJECT, "varai-prod-resumed")["state"] == "PENDING_CREATE"

    final = _restore(api, **params)

    assert _state(final) == "COMPLETED", final["state"]
    assert len(_calls(fresh_lab, since, "instances.clone")) == 1
    assert _marks(fresh_lab, "varai-prod-resumed") == list(range(1, 21))
    [record] = run_records(fresh_lab, "restore-sql", final["id"])
    assert "resuming" in record["steps"][0]["detail"]


def test_the_cli_restores_to_a_moment(fresh_lab: Lab) -> None:
    moment = _moment_between_writes(fresh_lab)

    result = lifeboat(
        "restore-sql",
        "--env",
        "lab",
        "--point-in-time",
        _rfc3339(moment),
        "--target",
        "varai-prod-cli",
        env=dict(os.environ),
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert "outcome: completed" in result.stdout
    assert _marks(fresh_lab, "varai-prod-cli") == list(range(1, 21))
