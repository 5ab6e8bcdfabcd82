"""A graceful failover fences the primary before it promotes the replica.

A promotion stops replication: a write the primary takes after it is in no database the
apps use again (21 of 99 acknowledged writes were lost that way before the fence). So a
planned failover sets its primary's services to ingress internal-only, waits for the
replica to receive what the primary wrote, promotes, and lifts the fence once the
primary's services name the promoted database. It is lifted when the run ends before the
promotion (a refusal, a kill) and kept when the promotion had started and the run could
not finish: lifting it then would send writes to the old primary.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from lab.prefect_api import PrefectApi
from reliability.writer import Writer, lost
from tests.flows.fence_checks import (
    FENCED_BY,
    INTERNAL_ONLY,
    SERVICES,
    SLOW_PROMOTION,
    assert_lifted,
    assert_slot_freed,
    assert_stopped_record,
    freeze,
    hook_finished,
    ingress_updates,
    kill,
    recent_logs,
    region_ingress,
    wait_crashed,
    wait_fence_holds,
)
from tests.flows.lab_checks import (
    PRIMARY,
    REPLICA,
    SECONDARY,
    TOPOLOGY,
    app_role,
    app_secret_value,
    front_region,
    incident,
    instance_address,
    instance_type,
    post_order,
    read_object,
    side_effects,
    sql,
    sql_method,
)
from tests.labharness import Lab
from tests.polling import wait_for

OLD = TOPOLOGY.cloud_sql.primary


def _failover(api: PrefectApi, inc: str) -> str:
    """A planned failover, approved at launch (the primary is healthy)."""
    params = {"reason": "planned", "incident_id": inc, "approve": True}
    return str(api.launch("failover/lab", params)["id"])


def _record(lab: Lab, inc: str) -> dict[str, Any]:
    return dict(
        json.loads(read_object(lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json"))
    )


def _order(lab: Lab, since: int) -> list[str]:
    """The calls that matter to the fence, in the order the lab took them."""
    kinds = []
    for e in lab.requests(since=since):
        if e["status"] >= 400 or not e["write"]:
            continue
        if e["api"] == "run" and f"/locations/{PRIMARY.name}/" in e["path"]:
            kinds.append("primary-ingress" if "ingress" in e.get("query", "") else "primary-run")
        elif e["api"] == "sql":
            kinds.append(sql_method(e["method"], e["path"]))
        elif e["api"] == "secretmanager" and e["path"].endswith(":addVersion"):
            kinds.append("secret")
        elif e["api"] == "dns":
            kinds.append("dns")
    return kinds


def test_every_write_acknowledged_during_a_planned_failover_is_on_the_promoted_primary(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    before = region_ingress(fresh_lab, PRIMARY)
    since = fresh_lab.last_seq()
    inc = incident("FOFENCE")
    writer = Writer(fresh_lab.endpoints["front_door"], TOPOLOGY.health.host, incident("W").lower())
    # A session of the apps' role, mid-transaction when the fence comes: what a pooled
    # connection, or a request admitted just before the ingress fence, looks like.
    in_flight = psycopg.connect(
        host=instance_address(fresh_lab, OLD.project, OLD.instance),
        user=TOPOLOGY.cloud_sql.app_user,
        dbname="varai_prod",
        connect_timeout=5,
    )
    in_flight.execute("INSERT INTO orders (id, region, body) VALUES ('in-flight', 'x', '{}')")
    writer.start()
    try:
        time.sleep(1.0)  # writes land on the primary before the failover starts
        final = api.wait(_failover(api, inc), timeout=300)
        time.sleep(1.0)  # and on the promoted replica after it
    finally:
        writer.stop()
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert front_region(fresh_lab) == SECONDARY.name
    # The database fence ended that session: its commit fails, unacknowledged.
    with pytest.raises(psycopg.OperationalError):
        in_flight.commit()
    in_flight.close()
    # The old primary keeps the apps' role out (a write there would be lost); the promoted
    # replica, which the fence reached through replication, lets it in again.
    assert app_role(fresh_lab, OLD.project, OLD.instance) == (
        False,
        f"lifeboat-fence: failover/{inc}/{final['id']}",
    )
    assert app_role(fresh_lab, REPLICA.project, REPLICA.instance) == (True, "")

    acked = writer.acknowledged
    rows = sql(fresh_lab, REPLICA.project, REPLICA.instance, "SELECT id, region FROM orders")
    on_replica = {order_id: region for order_id, region in rows}
    missing = lost(acked, on_replica)
    assert missing == [], _lost_writes(fresh_lab, writer, missing, inc)
    assert "in-flight" not in on_replica
    assert {on_replica[order_id] for order_id in acked} == {PRIMARY.name, SECONDARY.name}
    assert writer.refused.get(404, 0) > 0, writer.refused  # the fence held for a while

    # Fence every primary service, then the promotion and the secret (side by side); DNS;
    # then the lift.
    order = _order(fresh_lab, since)
    fences = [i for i, kind in enumerate(order) if kind == "primary-ingress"]
    assert len(fences) == 2 * len(SERVICES), order
    held, lifted = fences[: len(SERVICES)], fences[len(SERVICES) :]
    assert max(held) < min(order.index("secret"), order.index("instances.promoteReplica")), order
    assert order.index("instances.promoteReplica") < order.index("dns") < min(lifted), order
    assert ingress_updates(fresh_lab, PRIMARY, since) == Counter(dict.fromkeys(SERVICES, 2))
    assert_lifted(fresh_lab, PRIMARY, before)

    record = _record(fresh_lab, inc)
    steps = [s["name"] for s in record["steps"]]
    assert steps.index("fence-primary") < steps.index("fence-database")
    assert steps.index("fence-database") < steps.index("wait-received") < steps.index("verify")
    assert steps.index("scale-and-promote") < steps.index("open-database") < steps.index("verify")
    database = record["fence"]["database"]
    assert database["set"]["terminated"] >= 1 and database["set"]["changed"], database
    assert database["opened"]["changed"], database
    assert "lift-database-fence" not in steps, steps  # opened once, by the run itself
    assert steps.index("verify") < steps.index("lift-fence"), steps
    assert record["lag"]["at_promotion"]["bytes"] == 0, record["lag"]
    assert 0 < record["outage_seconds"] <= record["rto_seconds"], record
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)
    assert "kept" not in record["fence"]


def _lost_writes(lab: Lab, writer: Writer, missing: list[str], inc: str) -> str:
    """The failure's evidence: where the lost writes are, when they were sent, and when
    each step of the run began and ended."""
    ids = ",".join(f"'{m}'" for m in missing)
    on_old = sql(
        lab,
        OLD.project,
        OLD.instance,
        f"SELECT id, created_at::text FROM orders WHERE id IN ({ids})",
    )
    sent = [a for a in writer.answers if a.order_id in missing]
    steps = [
        (s["name"], s.get("started_at"), s.get("ended_at")) for s in _record(lab, inc)["steps"]
    ]
    return (
        f"{len(missing)} of {len(writer.acknowledged)} acknowledged writes lost: {missing[:5]}; "
        f"on the old primary: {on_old}; sent: {sent[:5]}; steps: {steps}"
    )


def test_a_fence_refused_on_a_healthy_primary_stops_the_failover_before_the_promotion(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """One primary service refuses the fence (403): promoting would lose what it takes, so
    the run fails before the secret and the promotion, and lifts the fences it did set."""
    before = region_ingress(fresh_lab, PRIMARY)
    fresh_lab.fault(
        api="run", method="PATCH", path=f"/locations/{PRIMARY.name}/services/ai-service$",
        status=403, count=1,
    )  # fmt: skip
    since = fresh_lab.last_seq()
    inc = incident("FODENY")

    final = api.wait(_failover(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert "fence-ingress" in message and "ai-service" in message, message
    assert "re-run with mode=ungraceful" in message, message
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert ("sql", "instances.promoteReplica") not in kinds
    assert not any(a == "secretmanager" for a, _ in kinds), kinds
    assert not any(a == "dns" for a, _ in kinds), kinds
    assert_lifted(fresh_lab, PRIMARY, before)
    others = [s for s in SERVICES if s != "ai-service"]
    assert ingress_updates(fresh_lab, PRIMARY, since) == Counter(dict.fromkeys(others, 2))
    assert instance_type(fresh_lab, REPLICA.project, REPLICA.instance) == "READ_REPLICA_INSTANCE"
    assert front_region(fresh_lab) == PRIMARY.name
    record = _record(fresh_lab, inc)
    outcomes = {s["name"]: s["outcome"] for s in record["steps"]}
    assert outcomes["fence-primary"] == "failed" and outcomes["lift-fence"] == "done"


def test_a_monitoring_role_that_may_not_fence_the_apps_stops_the_failover_before_the_promotion(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """The monitoring role lacks CREATEROLE, as it may on a Cloud SQL set up by hand: the
    database fence is refused, and promoting without it could lose a write. The run fails
    before the secret and the promotion, naming the privilege, lifts its ingress fence,
    and the apps' role is as it was."""
    before = region_ingress(fresh_lab, PRIMARY)
    sql(fresh_lab, OLD.project, OLD.instance, "CREATE ROLE lifeboat_weak LOGIN")
    since = fresh_lab.last_seq()
    inc = incident("FOWEAK")

    def weak(data: dict[str, Any]) -> None:
        data["cloud_sql"]["monitor_user"] = "lifeboat_weak"

    with fresh_lab.topology_edited(weak):
        final = api.wait(_failover(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert "the monitoring role may not alter varai_user" in message, message
    assert "it needs CREATEROLE" in message and "does not promote while it can" in message
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert ("sql", "instances.promoteReplica") not in kinds
    assert not any(a == "secretmanager" for a, _ in kinds), kinds
    assert_lifted(fresh_lab, PRIMARY, before)
    assert app_role(fresh_lab, OLD.project, OLD.instance) == (True, "")
    assert front_region(fresh_lab) == PRIMARY.name
    outcomes = {s["name"]: s["outcome"] for s in _record(fresh_lab, inc)["steps"]}
    assert outcomes["fence-database"] == "failed" and outcomes["lift-fence"] == "done"
    # The exit looked (a failed try may have set it) and found nothing of its own.
    assert outcomes["lift-database-fence"] == "unchanged", outcomes


def test_a_promotion_that_fails_after_it_began_points_the_primary_apps_back_before_the_lift(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Planned: the secret and the rolls run beside the promotion, which Cloud SQL accepts,
    then ends in error with the replica still one. The primary's fence is lifted on the way
    out, so first the secret names the primary again and its readers roll back to it: a
    write through the front door lands on the primary, acknowledged."""
    before = region_ingress(fresh_lab, PRIMARY)
    fresh_lab.fail_sql_operations("PROMOTE_REPLICA", "lab: the promotion failed")
    since = fresh_lab.last_seq()
    inc = incident("FOOPFAIL")

    final = api.wait(_failover(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    assert "lab: the promotion failed" in final["state"]["message"], final["state"]["message"]
    assert instance_type(fresh_lab, REPLICA.project, REPLICA.instance) == "READ_REPLICA_INSTANCE"
    assert_lifted(fresh_lab, PRIMARY, before)
    assert front_region(fresh_lab) == PRIMARY.name
    address = instance_address(fresh_lab, OLD.project, OLD.instance)
    assert f"@{address}:" in app_secret_value(fresh_lab)
    order = post_order(fresh_lab, f"order-{inc}")
    assert order.status_code == 201, order.text
    assert order.json()["database"].startswith(f"{address}:"), order.json()
    # The secret named the replica, then the primary again, before any fence was lifted.
    order_of = _order(fresh_lab, since)
    secrets = [i for i, kind in enumerate(order_of) if kind == "secret"]
    lifts = [i for i, kind in enumerate(order_of) if kind == "primary-ingress"][len(SERVICES) :]
    assert len(secrets) == 2 and len(lifts) == len(SERVICES), order_of
    assert secrets[1] < min(lifts), order_of
    record = _record(fresh_lab, inc)
    outcomes = {s["name"]: s["outcome"] for s in record["steps"]}
    assert outcomes["database-connection-back"] == "done", outcomes
    assert outcomes["lift-fence"] == "done", outcomes
    assert "kept" not in record["fence"]


@contextmanager
def _replica_stream_cut(lab: Lab) -> Iterator[None]:
    """The replica stops receiving WAL (its walreceiver stops) while the primary writes:
    the failover's wait for receipt cannot end, so the run is held, fenced, before it
    promotes. The stream is restored afterwards."""
    [(conninfo,)] = sql(lab, REPLICA.project, REPLICA.instance, "SHOW primary_conninfo")
    sql(lab, REPLICA.project, REPLICA.instance, "ALTER SYSTEM SET primary_conninfo = ''")
    sql(lab, REPLICA.project, REPLICA.instance, "SELECT pg_reload_conf()")
    sql(lab, OLD.project, OLD.instance, "CREATE TABLE IF NOT EXISTS held_back (id int)")
    try:
        yield
    finally:
        escaped = conninfo.replace("'", "''")
        sql(
            lab,
            REPLICA.project,
            REPLICA.instance,
            f"ALTER SYSTEM SET primary_conninfo = '{escaped}'",
        )
        sql(lab, REPLICA.project, REPLICA.instance, "SELECT pg_reload_conf()")


def test_a_failover_killed_before_its_promotion_has_its_fence_lifted_by_the_crash_hook(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Held in the wait for receipt, fenced, not promoting: a kill lets the hook lift the
    fence (the primary's database is still the primary), and the primary serves again."""
    before = region_ingress(fresh_lab, PRIMARY)
    inc = incident("FOKILL")
    with _replica_stream_cut(fresh_lab):
        since = fresh_lab.last_seq()
        run_id = _failover(api, inc)
        wait_fence_holds(fresh_lab, api, run_id, PRIMARY, since, promoting=False)
        wait_for(
            lambda: not app_role(fresh_lab, OLD.project, OLD.instance)[0],
            timeout=30,
            what="the database fence",
        )
        kill(run_id)
        wait_crashed(api, run_id)
        wait_for(lambda: hook_finished(api, run_id), timeout=60, what="the crash hook's end")

    assert_lifted(fresh_lab, PRIMARY, before)
    # The database fence too: the primary is still the primary.
    assert app_role(fresh_lab, OLD.project, OLD.instance) == (True, "")
    assert any(
        line.startswith("lifted the fence on ['auth-service'") for line in recent_logs(api, run_id)
    ), recent_logs(api, run_id)
    assert ingress_updates(fresh_lab, PRIMARY, since) == Counter(dict.fromkeys(SERVICES, 2))
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert ("sql", "instances.promoteReplica") not in kinds
    assert front_region(fresh_lab) == PRIMARY.name  # the primary serves again

    # The stream is back: a re-run of the incident (it frees the killed run's Prefect
    # slot) fences again, promotes once and lifts.
    final = api.wait(_failover(api, inc), timeout=400)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert_slot_freed(api, _record(fresh_lab, inc), run_id)
    assert_lifted(fresh_lab, PRIMARY, before)
    assert ingress_updates(fresh_lab, PRIMARY, since) == Counter(dict.fromkeys(SERVICES, 4))
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1


def test_a_failover_killed_while_promoting_keeps_its_fence_and_the_rerun_lifts_it(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Killed once the promotion is asked for: the hook keeps the fence (the primary's
    services still name the old database) and says why; the re-run adopts it, finishes
    and lifts it. Each service's ingress is changed twice in all, the promotion once."""
    before = region_ingress(fresh_lab, PRIMARY)
    fresh_lab.post("config", SLOW_PROMOTION)
    since = fresh_lab.last_seq()
    inc = incident("FOKEEP")
    first = _failover(api, inc)
    wait_fence_holds(fresh_lab, api, first, PRIMARY, since, promoting=True)
    kill(first)
    wait_crashed(api, first)
    wait_for(lambda: hook_finished(api, first), timeout=60, what="the crash hook's end")
    logs = recent_logs(api, first)
    assert any(line.startswith(f"kept the fence on {PRIMARY.name}/") for line in logs), logs
    for got, notes in region_ingress(fresh_lab, PRIMARY).values():
        assert got == INTERNAL_ONLY and notes[FENCED_BY] == f"failover/{inc}/{first}"
    # The killed run could not write its record; its crash hook did.
    assert_stopped_record(_record(fresh_lab, inc), first, mode="graceful")

    fresh_lab.post("config", {"latency": {"sql.promote": 180}})
    final = api.wait(_failover(api, inc), timeout=400)

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert_lifted(fresh_lab, PRIMARY, before)
    assert front_region(fresh_lab) == SECONDARY.name
    assert ingress_updates(fresh_lab, PRIMARY, since) == Counter(dict.fromkeys(SERVICES, 2))
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1
    record = _record(fresh_lab, inc)
    assert_slot_freed(api, record, first)
    assert [f["changed"] for f in record["fence"]["set"]] == [False] * len(SERVICES)
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)


def test_a_rerun_waiting_for_a_hung_run_frees_its_slot_once_it_is_killed(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """The holder hangs while it promotes (SIGSTOP): Prefect has it Running, so the re-run
    of the incident waits for the slot, and asks again every 2 s. Once the hung run is
    killed and Prefect has it Crashed, the re-run frees its slot from that wait, well
    inside the 60 s the slot's own lease would take, and finishes the switch."""
    fresh_lab.post("config", SLOW_PROMOTION)
    since = fresh_lab.last_seq()
    inc = incident("FOHUNG")
    first = _failover(api, inc)
    wait_fence_holds(fresh_lab, api, first, PRIMARY, since, promoting=True)
    freeze(first)
    fresh_lab.post("config", {"latency": {"sql.promote": 180}})
    second = _failover(api, inc)
    waiting = f"the region slot's holder, flow run {first}, is RUNNING: its slot is waited for"
    wait_for(lambda: waiting in recent_logs(api, second), timeout=60, what="the re-run's wait")
    assert api.state(second) == "RUNNING"
    kill(first)
    wait_crashed(api, first)

    final = api.wait(second, timeout=400)

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    record = _record(fresh_lab, inc)
    # Freed by the watch (the first check found the holder Running), not by the slot's
    # lease expiring: that frees it with no word in the step.
    assert_slot_freed(api, record, first)
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1
    assert front_region(fresh_lab) == SECONDARY.name
