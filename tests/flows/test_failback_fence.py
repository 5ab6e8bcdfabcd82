"""The failback's fence when its run is stopped and the incident re-run: kept once the
promotion has started, until the run (or a re-run of the incident) has repointed the
secondary's services; cancellation, a kill while promoting, a kill while lifting.

Each test fails over first, then starts a failback through its deployment and acts on it
while the fence holds (the secondary's services at ingress internal-only, their
annotations naming the run). The refusals and failures are in
test_failback_fence_refusals.py (two modules, so that two workers share them).
"""

from __future__ import annotations

from collections import Counter

from lab.prefect_api import PrefectApi
from tests.flows.failback_fence_checks import (
    OLD,
    assert_secondary_kept,
    assert_secondary_lifted,
    failback_record,
    failed_over,
    fence_lines,
    kill_while_promoting,
    launch_failback,
    rerun_adopts_and_lifts,
    secondary_ingress,
    secondary_ingress_updates,
    secret_version_added,
)
from tests.flows.fence_checks import (
    SERVICES,
    SLOW_PROMOTION,
    assert_slot_freed,
    hook_finished,
    kill,
    recent_logs,
    wait_crashed,
    wait_fence_holds,
)
from tests.flows.lab_checks import (
    PRIMARY,
    SECONDARY,
    app_secret_value,
    front_region,
    incident,
    instance_address,
    instance_type,
    post_order,
)
from tests.labharness import Lab
from tests.polling import wait_for


def test_a_failback_cancelled_while_promoting_keeps_its_fence_and_the_rerun_lifts_it(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Cancelled once the promotion runs: the secondary's services still name the database
    the promotion is replacing, so the fence stays (the run's own exit and the cancellation
    hook both say so); a re-run of the incident adopts it, finishes, and restores exactly
    the ingress each service had (one admits only internal load balancers)."""
    from google.cloud import run_v2
    from google.protobuf import field_mask_pb2

    failed_over(fresh_lab, api)
    services = fresh_lab.clients().run_services
    ai = services.get_service(
        name=f"projects/{SECONDARY.project}/locations/{SECONDARY.name}/services/ai-service"
    )
    ai.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER
    services.update_service(
        service=ai, update_mask=field_mask_pb2.FieldMask(paths=["ingress"])
    ).result(timeout=30, polling=fresh_lab.clients().polling)
    before = secondary_ingress(fresh_lab)
    assert before["ai-service"][0] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    fresh_lab.post("config", SLOW_PROMOTION)
    since = fresh_lab.last_seq()
    inc = incident("FBCANCEL")
    run_id = launch_failback(api, inc)
    wait_fence_holds(fresh_lab, api, run_id, SECONDARY, since, promoting=True)

    api.http.post(
        f"/flow_runs/{run_id}/set_state", json={"state": {"type": "CANCELLING"}, "force": True}
    ).raise_for_status()
    final = api.wait(run_id, timeout=120)

    assert final["state"]["type"] == "CANCELLED", final["state"]
    assert_secondary_kept(fresh_lab, f"failback/{inc}/{run_id}")
    wait_for(lambda: hook_finished(api, run_id), timeout=60, what="the cancellation hook's end")
    logs = recent_logs(api, run_id)
    assert any(line.startswith(f"kept the fence on {SECONDARY.name}/") for line in logs), logs
    record = failback_record(fresh_lab, inc)
    assert sorted(record["fence"]["kept"]) == sorted(SERVICES)
    assert record["fence"]["lifted"] == []

    rerun_adopts_and_lifts(fresh_lab, api, inc, before, since)
    record = failback_record(fresh_lab, inc)
    # A cancelled run unwinds: it released its lock and its slot itself, and the re-run
    # took both anew (a killed run cannot: the tests below).
    lock = next(s["detail"] for s in record["steps"] if s["name"] == "region-lock")
    assert "slot lease" not in lock and "held by" in lock, lock
    assert fence_lines(record["plan"]) == [
        f"keep the fence on {SECONDARY.name}/{name} (set by failback/{inc}/{run_id}; "
        f"ingress {before[name][0]} before it)"
        for name in SERVICES
    ]
    assert [f["changed"] for f in record["fence"]["set"]] == [False] * len(SERVICES)
    assert {f["after"] for f in record["fence"]["lifted"]} == {before[n][0] for n in SERVICES}


def test_a_failback_killed_while_promoting_keeps_its_fence_and_the_rerun_lifts_it(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """SIGKILL of the flow's process: the process worker survives it, marks the run
    Crashed and runs the flow's on_crashed hook in its own process. The promotion has
    started, so the hook keeps the fence and says why; the re-run adopts it and lifts it.
    (Before, the hook lifted it and the re-run fenced again: until then, stale clients
    wrote to a database that was no longer the primary.)"""
    failed_over(fresh_lab, api)
    before = secondary_ingress(fresh_lab)
    inc = incident("FBKILL")
    first, since = kill_while_promoting(fresh_lab, api, inc)
    assert_secondary_kept(fresh_lab, f"failback/{inc}/{first}")
    logs = recent_logs(api, first)
    assert any(line.startswith(f"kept the fence on {SECONDARY.name}/") for line in logs), logs
    assert "lifted the fence on nothing after the run ended early" in logs

    kinds = rerun_adopts_and_lifts(fresh_lab, api, inc, before, since)
    assert kinds.count(("sql", "instances.export")) == 2  # old primary (once), then secondary
    assert kinds.count(("dns", "POST")) == 1
    record = failback_record(fresh_lab, inc)
    assert record["outcome"] == "completed"
    assert_slot_freed(api, record, first)
    assert all(line.startswith("keep the fence ") for line in fence_lines(record["plan"]))
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)


def test_a_failback_killed_while_lifting_its_fence_is_not_fenced_again_by_the_rerun(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Killed once the lift has begun (DNS is back, the promotion long done): a lifted
    service was repointed first, so the re-run adopts whatever fence is left and sets no
    new one. Before, it fenced all four again and lifted them (the failback crash sweep's
    point 18: 8 Run updates more, and a second outage for nothing)."""
    failed_over(fresh_lab, api)
    before = secondary_ingress(fresh_lab)
    since = fresh_lab.last_seq()
    inc = incident("FBLIFT")
    first = launch_failback(api, inc)
    wait_for(
        lambda: sum(secondary_ingress_updates(fresh_lab, since).values()) > len(SERVICES),
        timeout=300,
        what="the first lift of the fence",
    )
    kill(first)
    wait_crashed(api, first)
    wait_for(lambda: hook_finished(api, first), timeout=60, what="the crash hook's end")

    final = api.wait(launch_failback(api, inc), timeout=400)

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert_secondary_lifted(fresh_lab, before)
    assert front_region(fresh_lab) == PRIMARY.name
    assert secondary_ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 2))
    record = failback_record(fresh_lab, inc)
    assert_slot_freed(api, record, first)
    assert not any(f["changed"] for f in record["fence"]["set"]), record["fence"]


def test_a_killed_run_whose_promotion_then_failed_is_pointed_back_and_finished_by_the_rerun(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Killed after its roll, while the promotion runs; the promotion then fails, the
    instance still a replica, and the apps still name it: every write fails, and the
    primary region fails its checks. The re-run waits for that promotion, points the apps
    back at the promoted secondary under the lock, and only then goes on to finish."""
    failed_over(fresh_lab, api)
    fresh_lab.post("config", SLOW_PROMOTION)
    fresh_lab.fail_sql_operations("PROMOTE_REPLICA", "lab: the promotion failed")
    since = fresh_lab.last_seq()
    inc = incident("FBKILLFAIL")
    first = launch_failback(api, inc)

    wait_for(
        lambda: secret_version_added(fresh_lab, since),
        timeout=300,
        what="the roll's secret version",
    )
    kill(first)
    wait_crashed(api, first)
    wait_for(lambda: hook_finished(api, first), timeout=60, what="the crash hook's end")
    address = instance_address(fresh_lab, OLD.project, OLD.instance)
    assert f"@{address}:" in app_secret_value(fresh_lab)  # the apps name the replica
    fresh_lab.configure({"sql.promote": 180.0})  # the re-run's own promotion: Google's usual

    final = api.wait(launch_failback(api, inc), timeout=400)

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    record = failback_record(fresh_lab, inc)
    assert_slot_freed(api, record, first)
    names = [s["name"] for s in record["steps"]]
    assert names.index("wait-running-promotion") < names.index("point-apps-back"), names
    assert names.index("point-apps-back") < names.index("promote"), names
    assert instance_type(fresh_lab, OLD.project, OLD.instance) == "CLOUD_SQL_INSTANCE"
    assert front_region(fresh_lab) == PRIMARY.name
    assert f"@{address}:" in app_secret_value(fresh_lab)  # and now it is the primary
    order = post_order(fresh_lab, f"order-{inc}")
    assert order.status_code == 201, order.text
    assert order.json()["database"].startswith(f"{address}:"), order.json()
