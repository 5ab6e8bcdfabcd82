"""The RPO gate: replica lag beyond the objective holds a failover and turns readiness red.

Real lag, not a fake: WAL replay is paused on the standby (pg_wal_replay_pause) and the
primary takes a write, so the standby holds WAL it has not applied. The lab topology's
critical RPO is cut to a few seconds for the test, because minutes of real lag would
take minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from lab.prefect_api import PrefectApi
from tests.flows.lab_checks import (
    PRIMARY,
    REPLICA,
    TOPOLOGY,
    incident,
    instance_type,
    read_object,
    sql,
)
from tests.flows.readiness_checks import fresh_backups, passed_drill, readiness, red
from tests.labharness import Lab
from tests.polling import wait_for

RPO_S = 3
OLD = TOPOLOGY.cloud_sql.primary
UNREPLAYED = "unreplayed@dr.example"
STANDBY_STATE = (
    "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(),"
    " pg_last_xact_replay_timestamp(), now(), pg_get_wal_replay_pause_state()"
)


def _tight_rpo(topology: dict[str, Any]) -> None:
    for tier in topology["objectives"].values():
        tier["rpo_minutes"] = RPO_S / 60


def _on_replica(lab: Lab, query: str) -> list[tuple]:
    return sql(lab, REPLICA.project, REPLICA.instance, query, database="postgres")


@contextmanager
def _lagging_replica(lab: Lab, replayed_first: bool = True) -> Iterator[None]:
    """A standby holding one write it has received but not applied, older than the RPO.

    With ``replayed_first`` the standby applies a write before the pause, so the lag counts
    from it; without, it has applied nothing since it started (the lab's reset rebuilds
    it), the case where PostgreSQL has no replay timestamp at all.
    """
    if replayed_first:
        sql(lab, OLD.project, OLD.instance, "INSERT INTO users (email) VALUES ('replayed@x.io')")
        [(written,)] = sql(lab, OLD.project, OLD.instance, "SELECT pg_current_wal_insert_lsn()")
        _until(lab, f"SELECT pg_last_wal_replay_lsn() >= '{written}'::pg_lsn")
    else:
        assert _on_replica(lab, "SELECT pg_last_xact_replay_timestamp() IS NULL") == [(True,)]
    _on_replica(lab, "SELECT pg_wal_replay_pause()")
    try:
        sql(lab, OLD.project, OLD.instance, f"INSERT INTO users (email) VALUES ('{UNREPLAYED}')")
        _until(
            lab,
            "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) > 0"
            " AND now() - COALESCE(pg_last_xact_replay_timestamp(), pg_postmaster_start_time())"
            f" > interval '{RPO_S + 1} seconds'",
        )
        yield
    finally:
        # After a promotion the instance is no longer in recovery, and there is no pause.
        _on_replica(lab, "SELECT pg_wal_replay_resume() WHERE pg_is_in_recovery()")


def _until(lab: Lab, condition: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not _on_replica(lab, condition)[0][0]:
        assert time.monotonic() < deadline, str(_on_replica(lab, STANDBY_STATE))
        time.sleep(0.2)


def test_lag_beyond_the_rpo_holds_the_failover_until_approved(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    with fresh_lab.topology_edited(_tight_rpo), _lagging_replica(fresh_lab):
        # The primary is down, so the lag is the only reason to stop and ask.
        fresh_lab.outage(PRIMARY.name, True)
        inc = incident("RPO")
        run_id = api.launch("failover/lab", {"reason": "region outage", "incident_id": inc})["id"]
        api.wait(run_id, states={"PAUSED", "FAILED", "COMPLETED", "CRASHED"})
        assert api.state(run_id) == "PAUSED"
        kind = instance_type(fresh_lab, REPLICA.project, REPLICA.instance)
        assert kind == "READ_REPLICA_INSTANCE"
        api.resume(run_id, {"approved": True, "approver": "sre-lead", "note": "take the loss"})
        final = api.wait(run_id)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]

    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    [reason] = record["approval"]["reasons"]
    assert reason.startswith("replica lag ") and reason.endswith(
        f"exceeds the critical RPO {RPO_S} s"
    ), reason
    assert record["lag"]["bytes"] > 0 and record["lag"]["seconds"] > RPO_S, record["lag"]
    # The promotion applied what the standby had received: the held write was not lost.
    rows = sql(
        fresh_lab,
        REPLICA.project,
        REPLICA.instance,
        f"SELECT count(*) FROM users WHERE email = '{UNREPLAYED}'",
    )
    assert rows == [(1,)]


@pytest.mark.parametrize("replayed_first", [True, False], ids=["after-a-replay", "none-replayed"])
def test_lag_beyond_the_rpo_turns_readiness_red(
    fresh_lab: Lab, api: PrefectApi, replayed_first: bool
) -> None:
    fresh_backups(fresh_lab)
    passed_drill(fresh_lab, timedelta(days=3))
    with fresh_lab.topology_edited(_tight_rpo), _lagging_replica(fresh_lab, replayed_first):
        final, rows = readiness(api, fresh_lab)
    assert final["state"]["type"] == "FAILED"
    assert red(rows) == {("replica", REPLICA.instance)}
    row = rows[("replica", REPLICA.instance)]
    assert row["limit"] == f"{RPO_S} s"
    assert float(row["measured"].split(" s,")[0]) > RPO_S, row


def _restart_replica(lab: Lab) -> None:
    """Restart the standby through Cloud SQL (``instances.restart``) and wait until it
    streams again."""
    sqladmin = lab.clients().sql
    op = sqladmin.call(
        lambda s: s.instances().restart(project=REPLICA.project, instance=REPLICA.instance), 30
    )
    wait_for(
        lambda: (
            sqladmin.call(
                lambda s: s.operations().get(project=REPLICA.project, operation=op["name"]), 30
            )["status"]
            == "DONE"
        ),
        timeout=60,
        what="the replica's restart",
    )
    _until(lab, "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')")


def test_a_restarted_replica_has_received_what_it_replayed(fresh_lab: Lab) -> None:
    """A standby that starts from WAL of its own reports its receive position at the start
    of the segment it streams from, behind what it replayed, until the primary writes again
    (PostgreSQL's RequestXLogStreaming). A fenced primary writes nothing: the wait before a
    promotion must count what the replica replayed as received, not wait out its time for
    bytes the replica holds (a failback did, for 300 s, in CI at stop 30)."""
    # A write, so that what the standby replays ends inside a segment, not at its start.
    sql(fresh_lab, OLD.project, OLD.instance, "INSERT INTO users (email) VALUES ('mid@x.io')")
    [(written,)] = sql(fresh_lab, OLD.project, OLD.instance, "SELECT pg_current_wal_insert_lsn()")
    _until(fresh_lab, f"SELECT pg_last_wal_replay_lsn() >= '{written}'::pg_lsn")
    _restart_replica(fresh_lab)
    [(behind,)] = _on_replica(
        fresh_lab, "SELECT pg_last_wal_receive_lsn() < pg_last_wal_replay_lsn()"
    )
    assert behind, _on_replica(fresh_lab, STANDBY_STATE)  # the case this test is about

    # The task itself, at once: through a failover, the primary wrote WAL before the wait
    # (a planned failover passed with the old query), and any new WAL moves the position.
    from tasks.cloud_sql_wal import sql_wait_received  # prefect: after the lab is up

    got = sql_wait_received.fn("lab", REPLICA.project, REPLICA.instance, timeout_s=10)

    assert got.complete, got.describe()
    assert got.waited_s < 5, got.describe()
