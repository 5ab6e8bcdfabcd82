"""Point-in-time recovery through Google's discovery client: ``instances.clone`` with
``cloneContext.pointInTime`` against the lab's real PostgreSQL WAL archive.

Sources: cloud.google.com/sql/docs/postgres/backup-recovery/pitr (a PITR always creates a
new instance; WAL archiving), .../admin-api/rest/v1/instances/clone (CloneContext).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from googleapiclient.errors import HttpError

from lab.core.context import LabContext
from lab.core.serve import ThreadedServer
from lab.core.settings import LabSettings
from lab.sql import create
from tests.contract.conftest import free_port
from tests.contract.test_sql import PROJECT, Lab, discovery_client, error_of

SOURCE, NO_PITR = "ledger-primary", "ledger-nopitr"
_PITR = {"enabled": True, "pointInTimeRecoveryEnabled": True, "transactionLogRetentionDays": 7}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    settings = LabSettings(
        root=tmp_path_factory.mktemp("sql-pitr-lab"),
        time_scale=0.002,
        pg_address_prefix="127.0.44.",
        pg_port=free_port(),
    )
    ctx = LabContext.create(settings)
    backend, app = create(ctx)
    server = ThreadedServer(app, "127.0.0.1", free_port(), "sql")
    server.start()
    lab = Lab(ctx, backend, server.url, discovery_client(server.url))
    backend.create_instance(
        PROJECT,
        SOURCE,
        "us-central1",
        databases=["ledger"],
        settings={"backupConfiguration": _PITR},
    )
    backend.create_instance(PROJECT, NO_PITR, "us-central1", databases=["ledger"])
    for name in (SOURCE, NO_PITR):
        _sql(lab, name, "CREATE TABLE entries (id int PRIMARY KEY)")
    yield lab
    server.stop()
    backend.shutdown()
    ctx.scheduler.stop()


def _sql(lab: Lab, instance: str, statement: str) -> Any:
    with psycopg.connect(lab.backend.dsn(PROJECT, instance, "ledger"), autocommit=True) as conn:
        cur = conn.execute(statement.encode())
        return cur.fetchall() if cur.description else None


def _ids(lab: Lab, instance: str) -> list[int]:
    return [int(r[0]) for r in _sql(lab, instance, "SELECT id FROM entries ORDER BY id")]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _clone(lab: Lab, source: str, body: dict[str, Any]) -> dict[str, Any]:
    request = lab.api.instances().clone(
        project=PROJECT, instance=source, body={"cloneContext": body}
    )
    return lab.run(request, "Operation")


def _refusal(lab: Lab, source: str, body: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(HttpError) as refused:
        _clone(lab, source, body)
    return refused.value.status_code, str(error_of(refused.value)["message"])


def test_a_clone_to_a_point_in_time_holds_what_was_written_before_it_only(lab: Lab) -> None:
    _sql(lab, SOURCE, "INSERT INTO entries SELECT generate_series(1, 50)")
    time.sleep(0.2)
    point = datetime.now(UTC)
    time.sleep(0.2)
    _sql(lab, SOURCE, "INSERT INTO entries SELECT generate_series(51, 100)")

    op = _clone(
        lab, SOURCE, {"destinationInstanceName": "ledger-pitr", "pointInTime": _rfc3339(point)}
    )

    assert op["status"] == "PENDING" and op["operationType"] == "CLONE"
    assert op["targetId"] == "ledger-pitr"
    assert lab.get("ledger-pitr")["state"] == "PENDING_CREATE"
    done = lab.wait(op, timeout=120)
    assert done["status"] == "DONE" and "error" not in done, done.get("error")
    clone = lab.get("ledger-pitr")
    assert clone["state"] == "RUNNABLE"
    assert clone["settings"]["backupConfiguration"]["pointInTimeRecoveryEnabled"] is True
    assert _ids(lab, "ledger-pitr") == list(range(1, 51))
    assert _ids(lab, SOURCE) == list(range(1, 101))
    assert lab.backend.accepts_writes(PROJECT, "ledger-pitr")  # promoted, not a standby


def test_a_point_after_a_backup_run_replays_from_that_backup(lab: Lab) -> None:
    _sql(lab, SOURCE, "INSERT INTO entries VALUES (1001)")
    backup = lab.run(
        lab.api.backupRuns().insert(project=PROJECT, instance=SOURCE, body={}), "Operation"
    )
    assert "error" not in lab.wait(backup, timeout=60)
    _sql(lab, SOURCE, "INSERT INTO entries VALUES (1002)")
    time.sleep(0.2)
    point = datetime.now(UTC)
    time.sleep(0.2)
    _sql(lab, SOURCE, "INSERT INTO entries VALUES (1003)")

    op = _clone(
        lab, SOURCE, {"destinationInstanceName": "ledger-later", "pointInTime": _rfc3339(point)}
    )

    assert "error" not in lab.wait(op, timeout=120)
    ids = _ids(lab, "ledger-later")
    assert 1001 in ids and 1002 in ids and 1003 not in ids


def test_a_clone_without_a_point_copies_the_current_state(lab: Lab) -> None:
    _sql(lab, NO_PITR, "INSERT INTO entries VALUES (7)")

    op = _clone(lab, NO_PITR, {"destinationInstanceName": "ledger-copy"})

    assert "error" not in lab.wait(op, timeout=120)
    assert _ids(lab, "ledger-copy") == [7]


@pytest.mark.parametrize(
    ("source", "point", "words"),
    [
        (NO_PITR, timedelta(seconds=-1), "pointInTimeRecoveryEnabled"),
        (SOURCE, timedelta(hours=1), "in the future"),
        (SOURCE, timedelta(days=-8), "7-day transaction log retention"),
        (SOURCE, timedelta(hours=-1), "before the earliest recovery time"),
    ],
    ids=["pitr-off", "future", "outside-retention", "before-pitr-was-on"],
)
def test_a_point_google_cannot_restore_is_refused_and_creates_nothing(
    lab: Lab, source: str, point: timedelta, words: str
) -> None:
    body = {"destinationInstanceName": "ledger-refused", "pointInTime": _rfc3339(_now() + point)}

    status, message = _refusal(lab, source, body)

    assert status == 400 and words in message
    with pytest.raises(HttpError) as missing:
        lab.get("ledger-refused")
    assert missing.value.status_code == 404


def test_a_destination_that_exists_is_a_conflict(lab: Lab) -> None:
    body = {"destinationInstanceName": NO_PITR, "pointInTime": _rfc3339(_now())}

    status, message = _refusal(lab, SOURCE, body)

    assert status == 409 and "already exists" in message
    assert lab.get(NO_PITR)["state"] == "RUNNABLE"


def test_a_point_that_is_not_rfc_3339_names_the_field(lab: Lab) -> None:
    body = {"destinationInstanceName": "ledger-bad", "pointInTime": "yesterday"}

    status, message = _refusal(lab, SOURCE, body)

    assert status == 400 and "cloneContext.pointInTime" in message


def test_pitr_turned_on_by_a_patch_reaches_back_to_then_and_off_refuses_again(lab: Lab) -> None:
    def patch(enabled: bool) -> None:
        body = {"settings": {"backupConfiguration": {"pointInTimeRecoveryEnabled": enabled}}}
        op = lab.run(
            lab.api.instances().patch(project=PROJECT, instance="ledger-toggled", body=body),
            "Operation",
        )
        assert "error" not in lab.wait(op, timeout=60)

    lab.backend.create_instance(PROJECT, "ledger-toggled", "us-central1", databases=["ledger"])
    _sql(lab, "ledger-toggled", "CREATE TABLE entries (id int PRIMARY KEY)")
    started = "SELECT pg_postmaster_start_time()"
    [(up_since,)] = _sql(lab, "ledger-toggled", started)
    before_on = _now()
    patch(True)
    # "If you enable PITR on an existing instance, the instance restarts" (configure-pitr).
    [(restarted,)] = _sql(lab, "ledger-toggled", started)
    assert restarted > up_since
    patch(True)  # already on: no second restart
    assert _sql(lab, "ledger-toggled", started) == [(restarted,)]
    _sql(lab, "ledger-toggled", "INSERT INTO entries VALUES (1)")
    time.sleep(0.2)
    point = _now()
    time.sleep(0.2)
    _sql(lab, "ledger-toggled", "INSERT INTO entries VALUES (2)")

    early = {"destinationInstanceName": "ledger-early", "pointInTime": _rfc3339(before_on)}
    assert _refusal(lab, "ledger-toggled", early)[1].find("before the earliest") >= 0
    op = _clone(
        lab,
        "ledger-toggled",
        {"destinationInstanceName": "ledger-on", "pointInTime": _rfc3339(point)},
    )
    assert "error" not in lab.wait(op, timeout=120)
    assert _ids(lab, "ledger-on") == [1]

    patch(False)
    status, message = _refusal(
        lab,
        "ledger-toggled",
        {"destinationInstanceName": "ledger-off", "pointInTime": _rfc3339(point)},
    )
    assert status == 400 and "pointInTimeRecoveryEnabled" in message


def _now() -> datetime:
    return datetime.now(UTC)
