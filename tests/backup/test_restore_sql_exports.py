"""restore-sql from a backup's SQL exports, read from a cross-region copy (issue 17 §3),
through the real Prefect server, worker and lab: the users and databases the dumps need,
one import per dump, with the source's region down; what it refuses before any change; an
import whose reply is lost; an import that fails, and the re-runs after it."""

from __future__ import annotations

from typing import Any

from lab.prefect_api import PrefectApi
from tests.backup.backup_checks import TOPOLOGY, params
from tests.backup.test_copies import EUROPE, newest_manifest
from tests.flows.lab_checks import run_records, sql, sql_instance, sql_method
from tests.labharness import Lab

PRIMARY = TOPOLOGY.cloud_sql.primary
PROJECT = PRIMARY.project
DATABASES = TOPOLOGY.cloud_sql.databases


def _backup(api: PrefectApi) -> None:
    final = api.wait(api.launch("backup/lab", params(sources=["cloudsql"]))["id"], timeout=400)
    assert final["state"]["type"] == "COMPLETED", final["state"]


def _restore(api: PrefectApi, **extra: Any) -> dict[str, Any]:
    run = api.launch("restore-sql/lab", {"reason": "export test", **extra})
    return api.wait(run["id"], timeout=400)


def _marks(lab: Lab, instance: str) -> list[int]:
    return [int(r[0]) for r in sql(lab, PROJECT, instance, "SELECT id FROM marks ORDER BY id")]


def _mark(lab: Lab, first: int, last: int) -> None:
    statement = f"INSERT INTO marks SELECT generate_series({first}, {last})"
    sql(lab, PROJECT, PRIMARY.instance, statement)


def _sql_mutations(lab: Lab, since: int) -> list[str]:
    return [
        sql_method(e["method"], e["path"])
        for e in lab.requests(api="sql", since=since)
        if e["method"] in ("POST", "PATCH", "DELETE") and e["status"] < 400
    ]


def _imports(lab: Lab, instance: str) -> list[dict[str, Any]]:
    client = lab.clients().sql
    items = client.pages(
        lambda s, token: s.operations().list(project=PROJECT, instance=instance, pageToken=token),
        10,
    )
    return [op for op in items if op["operationType"] == "IMPORT"]


def _backup_with_marks(lab: Lab, api: PrefectApi) -> None:
    """Rows 1-20 in the backup, rows 21-40 written after it: only the first are restored."""
    sql(lab, PROJECT, PRIMARY.instance, "CREATE TABLE marks (id int PRIMARY KEY)")
    sql(lab, PROJECT, PRIMARY.instance, "GRANT SELECT ON marks TO varai_user")
    _mark(lab, 1, 20)
    _backup(api)
    _mark(lab, 21, 40)


def test_a_restore_from_the_europe_copy_imports_its_exports_with_the_source_region_down(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    _backup_with_marks(fresh_lab, api)
    manifest = newest_manifest(fresh_lab, "cloudsql")
    assert manifest.cloudsql is not None and manifest.cloudsql.users == ["postgres", "varai_user"]
    # Nothing of the source is needed: its region is down (its instance unreachable).
    fresh_lab.outage(TOPOLOGY.regions.primary.name, True)
    since = fresh_lab.last_seq()

    final = _restore(api, source_bucket="europe-west1", target_instance="varai-prod-copy")

    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert _marks(fresh_lab, "varai-prod-copy") == list(range(1, 21))
    assert _marks(fresh_lab, PRIMARY.instance) == list(range(1, 41))  # the source untouched
    # The dump's grant holds: its user was created first, then the database, then the import.
    grants = sql(
        fresh_lab,
        PROJECT,
        "varai-prod-copy",
        "SELECT has_table_privilege('varai_user', 'marks', 'SELECT')",
    )
    assert grants == [(True,)]
    assert _sql_mutations(fresh_lab, since) == [
        "instances.insert",
        "users.insert",
        *(["databases.insert"] * len(DATABASES)),
        *(["instances.import"] * len(DATABASES)),
    ]
    imported = [op["importContext"]["uri"] for op in _imports(fresh_lab, "varai-prod-copy")]
    assert sorted(imported) == sorted(
        f"gs://{EUROPE.bucket}/{manifest.prefix}{db}.sql" for db in DATABASES
    )
    restored = sql_instance(fresh_lab, PROJECT, "varai-prod-copy")
    assert restored["settings"]["userLabels"]["lifeboat-restore"] == "export"
    assert restored["region"] == TOPOLOGY.regions.secondary.name  # the default
    recorded = manifest.cloudsql.spec
    assert recorded is not None
    assert restored["settings"]["ipConfiguration"] == recorded["settings"]["ipConfiguration"]
    [record] = run_records(fresh_lab, "restore-sql", final["id"])
    assert record["outcome"] == "completed"
    assert record["before"]["exports"]["backup_id"] == manifest.backup_id
    assert record["before"]["exports"]["bucket"] == EUROPE.bucket
    assert record["after"]["integrity"] == manifest.cloudsql.integrity
    assert "within the backup's counts" in record["steps"][2]["detail"]


def test_a_restore_from_exports_refused_before_any_change_names_the_parameter(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    _backup(api)
    manifest = newest_manifest(fresh_lab, "cloudsql")
    since = fresh_lab.last_seq()
    refusals = {
        "backup_id:": _restore(api, backup_id="20200101T000000Z", target_instance="x-a"),
        "source_bucket:": _restore(api, source_bucket="asia-east1", target_instance="x-b"),
        "point_in_time, backup_run, backup_id:": _restore(
            api, backup_id=manifest.backup_id, backup_run=1, target_instance="x-c"
        ),
        "target_instance:": _restore(
            api, backup_id=manifest.backup_id, target_instance=PRIMARY.instance
        ),
        "region:": _restore(api, backup_run=1, region="europe-west1", target_instance="x-d"),
    }

    for words, final in refusals.items():
        assert final["state"]["type"] == "FAILED", (words, final["state"])
        assert words in final["state"]["message"], (words, final["state"]["message"])
    assert _sql_mutations(fresh_lab, since) == []


def test_an_import_whose_reply_is_lost_is_joined_and_a_rerun_imports_nothing(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    _backup_with_marks(fresh_lab, api)
    # The import starts, but its reply comes after the client's deadline: sent once.
    held = TOPOLOGY.endpoints.call_timeout_s + 3
    fresh_lab.fault(api="sql", method="POST", path="/import$", latency_s=held, count=1)
    since = fresh_lab.last_seq()

    final = _restore(api, source_bucket="europe-west1", target_instance="varai-prod-held")
    again = _restore(api, source_bucket="europe-west1", target_instance="varai-prod-held")

    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert again["state"]["type"] == "COMPLETED", again["state"]
    assert _marks(fresh_lab, "varai-prod-held") == list(range(1, 21))
    assert len(_imports(fresh_lab, "varai-prod-held")) == len(DATABASES)
    sent = [
        e["injected"]
        for e in fresh_lab.requests(api="sql", since=since)
        if sql_method(e["method"], e["path"]) == "instances.import"
    ]
    assert sent == [True], sent  # the held one, never sent again
    [record] = run_records(fresh_lab, "restore-sql", again["id"])
    assert "resuming" in record["steps"][0]["detail"]
    assert "imported nothing new" in record["steps"][1]["detail"]


def test_a_failed_import_is_reported_and_its_target_replaced_only_with_force(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """A grant to a role users.list does not show (one that cannot log in) fails the
    import at Google as in the lab: the run says so, and its half-made target is not
    imported into again."""
    sql(fresh_lab, PROJECT, PRIMARY.instance, "CREATE ROLE auditors NOLOGIN")
    sql(fresh_lab, PROJECT, PRIMARY.instance, "GRANT SELECT ON orders TO auditors")
    _backup(api)
    target = {"source_bucket": "europe-west1", "target_instance": "varai-prod-half"}

    failed = _restore(api, **target)
    since = fresh_lab.last_seq()
    refused = _restore(api, **target)
    between = _sql_mutations(fresh_lab, since)
    forced = _restore(api, **target, force=True)

    assert failed["state"]["type"] == "FAILED"
    assert "auditors" in failed["state"]["message"], failed["state"]["message"]
    assert "does not exist" in failed["state"]["message"]
    assert refused["state"]["type"] == "FAILED"
    assert "target_instance: an import into varai-prod-half failed" in refused["state"]["message"]
    assert between == []  # refused before any change
    assert forced["state"]["type"] == "FAILED"  # the dump still grants to the role
    assert _sql_mutations(fresh_lab, since)[:2] == ["instances.delete", "instances.insert"]
