"""The failback's fence is lifted in every outcome: cancellation, a kill then a resumed
run, a kill then a refused run, a failure inside the fence.

Each test fails over first, then starts a failback through its deployment and acts on it
while the fence holds (the secondary's services at ingress internal-only, their
annotations naming the run). The lab's request log keeps each call's query string, so an
ingress change (``updateMask=ingress,annotations``) is told apart from a scaling one.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

from lab.prefect_api import PrefectApi, flow_processes
from tests.flows.lab_checks import (
    PRIMARY,
    SECONDARY,
    TOPOLOGY,
    front_region,
    incident,
    ingress,
    read_object,
    side_effects,
    sql_requests,
)
from tests.labharness import Lab
from tests.polling import wait_for

OLD = TOPOLOGY.cloud_sql.primary
SERVICES = [s.name for s in TOPOLOGY.services]
FENCED_BY = "lifeboat.dev/fenced-by"
INTERNAL_ONLY = "INGRESS_TRAFFIC_INTERNAL_ONLY"
# A promotion of 3000 s modelled (30 s at the tests' time scale): the fence holds at
# least that long, time enough to cancel or kill the run in the middle of it.
SLOW_PROMOTION = {"latency": {"sql.promote": 3000}}


def _failed_over(lab: Lab, api: PrefectApi) -> None:
    lab.outage(PRIMARY.name, True)
    run = api.launch("failover/lab", {"reason": "outage", "incident_id": incident("FO")})
    assert api.wait(run["id"])["state"]["type"] == "COMPLETED"
    lab.outage(PRIMARY.name, False)


def _failback(api: PrefectApi, inc: str) -> str:
    return str(api.launch("failback/lab", {"reason": "fence", "incident_id": inc})["id"])


def _secondary_ingress(lab: Lab) -> dict[str, tuple[str, dict[str, str]]]:
    """Each secondary service's ingress and annotations, read with the real client."""
    return {name: ingress(lab, SECONDARY, name) for name in SERVICES}


def _ingress_updates(lab: Lab, since: int) -> Counter[str]:
    """Successful UpdateService calls that set a secondary service's ingress, per service."""
    counts: Counter[str] = Counter()
    for e in lab.requests(api="run", method="PATCH", since=since):
        mask = ",".join(parse_qs(e.get("query", "")).get("updateMask", []))
        if f"/locations/{SECONDARY.name}/" in e["path"] and e["status"] < 400 and "ingress" in mask:
            counts[e["path"].rsplit("/", 1)[-1]] += 1
    return counts


def _wait_fence_holds(lab: Lab, api: PrefectApi, run_id: str, since: int) -> None:
    """Until every secondary service is fenced and the (slow) promotion has started."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        fenced = all(
            got == INTERNAL_ONLY and FENCED_BY in notes
            for got, notes in _secondary_ingress(lab).values()
        )
        if fenced and "instances.promoteReplica" in sql_requests(lab, since):
            return
        assert api.state(run_id) not in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, (
            api.flow_run(run_id)["state"]
        )
        time.sleep(0.2)
    raise AssertionError(f"the fence never held with the promotion started: {api.flow_run(run_id)}")


def _kill(run_id: str) -> None:
    pids = flow_processes(run_id)
    assert pids, "no process of the flow run"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def _record(lab: Lab, inc: str) -> dict[str, Any]:
    return dict(
        json.loads(read_object(lab, TOPOLOGY.backups.records_bucket, f"failback/{inc}.json"))
    )


def _fence_lines(plan: list[str]) -> list[str]:
    return [line for line in plan if line.startswith(("fence ", "keep the fence "))]


def _assert_lifted(lab: Lab, before: dict[str, tuple[str, dict[str, str]]]) -> None:
    """Every secondary service has the ingress it had before the fence, and no fence notes."""
    after = _secondary_ingress(lab)
    assert after == before, after
    assert not any(FENCED_BY in notes for _, notes in after.values())


def test_a_cancelled_failback_lifts_the_fence(fresh_lab: Lab, api: PrefectApi) -> None:
    from google.cloud import run_v2
    from google.protobuf import field_mask_pb2

    _failed_over(fresh_lab, api)
    # One service admits only internal load balancers before the failback: the lift must
    # restore exactly that, not a default.
    services = fresh_lab.clients().run_services
    ai = services.get_service(
        name=f"projects/{SECONDARY.project}/locations/{SECONDARY.name}/services/ai-service"
    )
    ai.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER
    services.update_service(
        service=ai, update_mask=field_mask_pb2.FieldMask(paths=["ingress"])
    ).result(timeout=30, polling=fresh_lab.clients().polling)
    before = _secondary_ingress(fresh_lab)
    assert before["ai-service"][0] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    fresh_lab.post("config", SLOW_PROMOTION)
    since = fresh_lab.last_seq()
    inc = incident("FBCANCEL")
    run_id = _failback(api, inc)
    _wait_fence_holds(fresh_lab, api, run_id, since)
    assert {name: got for name, (got, _) in _secondary_ingress(fresh_lab).items()} == dict.fromkeys(
        SERVICES, INTERNAL_ONLY
    )

    api.http.post(
        f"/flow_runs/{run_id}/set_state", json={"state": {"type": "CANCELLING"}, "force": True}
    ).raise_for_status()
    final = api.wait(run_id, timeout=120)

    assert final["state"]["type"] == "CANCELLED", final["state"]
    _assert_lifted(fresh_lab, before)
    # The flow's own finally lifted it as the worker's SIGTERM unwound the run; the
    # on_cancellation hook (run by the worker, in its process, once the flow's process
    # ended) found nothing left to lift, and said so.
    wait_for(lambda: _hook_finished(api, run_id), timeout=60, what="the cancellation hook's end")
    assert "lifted the fence on nothing after the run ended early" in _recent_logs(api, run_id)
    # One fence and one lift per service: nothing lifted twice, nothing fenced again.
    assert _ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 2))
    assert front_region(fresh_lab, "/auth/status") == SECONDARY.name  # public path open again
    record = _record(fresh_lab, inc)
    assert len(_fence_lines(record["plan"])) == len(SERVICES)
    assert sorted(f["service"] for f in record["fence"]["set"]) == sorted(SERVICES)
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)


def _wait_crashed(api: PrefectApi, run_id: str) -> None:
    """The worker sees its flow process die, marks the run Crashed, then runs on_crashed."""
    final = api.wait(run_id, timeout=120)
    assert final["state"]["type"] == "CRASHED", final["state"]


def _recent_logs(api: PrefectApi, run_id: str) -> list[str]:
    """The run's newest log lines first (the worker's hook logs under the run too)."""
    response = api.http.post(
        "/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_DESC", "limit": 50},
    )
    response.raise_for_status()
    return [entry["message"] for entry in response.json()]


def _hook_finished(api: PrefectApi, run_id: str) -> bool:
    """The fence hook has logged what it lifted (the worker runs it, under the run's logs)."""
    return any("after the run ended early" in line for line in _recent_logs(api, run_id))


def _clear_faults(lab: Lab) -> None:
    lab.clear_faults()


def _kill_while_fenced(lab: Lab, api: PrefectApi, inc: str, block_hook: bool) -> tuple[str, int]:
    """Start a failback, SIGKILL its process while the fence holds; returns (run, since).

    ``block_hook``: Cloud Run refuses the crash hook's lifts (a 403 on each service), as
    when the hook cannot reach it; what a resumed or refused run must then lift.
    """
    lab.post("config", SLOW_PROMOTION)
    since = lab.last_seq()
    run_id = _failback(api, inc)
    _wait_fence_holds(lab, api, run_id, since)
    if block_hook:
        lab.fault(
            api="run",
            method="PATCH",
            path=f"/locations/{SECONDARY.name}/services/",
            status=403,
            count=len(SERVICES),
        )
    _kill(run_id)
    _wait_crashed(api, run_id)
    return run_id, since


def test_a_killed_failback_has_its_fence_lifted_by_the_crash_hook_then_resumes(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """SIGKILL of the flow's process: the process worker survives it, marks the run
    Crashed and runs the flow's on_crashed hook in its own process, which lifts the fence.
    A re-run of the incident fences again (the promotion may not be done), then lifts."""
    _failed_over(fresh_lab, api)
    before = _secondary_ingress(fresh_lab)
    inc = incident("FBKILL")
    first, since = _kill_while_fenced(fresh_lab, api, inc, block_hook=False)
    wait_for(
        lambda: _secondary_ingress(fresh_lab) == before, timeout=60, what="the crash hook's lift"
    )
    _assert_lifted(fresh_lab, before)
    assert _ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 2))
    wait_for(lambda: _hook_finished(api, first), timeout=60, what="the crash hook's end")
    assert any(
        line.startswith("lifted the fence on ['auth-service'") for line in _recent_logs(api, first)
    ), _recent_logs(api, first)

    fresh_lab.post("config", {"latency": {"sql.promote": 180}})
    final = api.wait(_failback(api, inc), timeout=400)

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    _assert_lifted(fresh_lab, before)
    assert front_region(fresh_lab) == PRIMARY.name
    # Fenced, lifted by the hook, fenced again by the resumed run, lifted at its end.
    assert _ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 4))
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1  # the resumed run waited
    record = _record(fresh_lab, inc)
    assert record["outcome"] == "completed"
    assert all(line.startswith("fence ") for line in _fence_lines(record["plan"]))
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)


def test_a_fence_a_killed_run_left_is_adopted_and_lifted_by_the_resumed_run(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    _failed_over(fresh_lab, api)
    before = _secondary_ingress(fresh_lab)
    inc = incident("FBADOPT")
    first, since = _kill_while_fenced(fresh_lab, api, inc, block_hook=True)
    wait_for(lambda: _hook_finished(api, first), timeout=60, what="the crash hook's end")
    # Nothing could lift it: the fence a killed run left is still in place.
    for got, notes in _secondary_ingress(fresh_lab).values():
        assert got == INTERNAL_ONLY and notes[FENCED_BY] == f"failback/{inc}/{first}"
    _clear_faults(fresh_lab)
    fresh_lab.post("config", {"latency": {"sql.promote": 180}})

    final = api.wait(_failback(api, inc), timeout=400)

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    _assert_lifted(fresh_lab, before)
    assert front_region(fresh_lab) == PRIMARY.name
    # Set once by the killed run, adopted, lifted once: no service was fenced twice.
    assert _ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 2))
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1
    assert kinds.count(("sql", "instances.export")) == 2  # old primary (once), then secondary
    assert kinds.count(("dns", "POST")) == 1
    record = _record(fresh_lab, inc)
    assert _fence_lines(record["plan"]) == [
        f"keep the fence on {SECONDARY.name}/{name} (set by failback/{inc}/{first}; "
        f"ingress {before[name][0]} before it)"
        for name in SERVICES
    ]
    assert [f["changed"] for f in record["fence"]["set"]] == [False] * len(SERVICES)
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)
    assert {f["after"] for f in record["fence"]["lifted"]} == {before[n][0] for n in SERVICES}


def test_a_refused_rerun_lifts_the_fence_a_killed_run_left(fresh_lab: Lab, api: PrefectApi) -> None:
    _failed_over(fresh_lab, api)
    before = _secondary_ingress(fresh_lab)
    inc = incident("FBREFUSE")
    first, since = _kill_while_fenced(fresh_lab, api, inc, block_hook=True)
    wait_for(lambda: _hook_finished(api, first), timeout=60, what="the crash hook's end")
    assert all(FENCED_BY in notes for _, notes in _secondary_ingress(fresh_lab).values())
    _clear_faults(fresh_lab)
    fresh_lab.outage(PRIMARY.name, True)

    final = api.wait(_failback(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert f"the primary region {PRIMARY.name} is unhealthy" in message
    assert "but the fence a killed run left was lifted" in message, message
    _assert_lifted(fresh_lab, before)
    assert _ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 2))
    record = _record(fresh_lab, inc)
    assert record["outcome"] == "failed"
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)
    fresh_lab.outage(PRIMARY.name, False)


def test_a_permanent_failure_inside_the_fence_lifts_it(fresh_lab: Lab, api: PrefectApi) -> None:
    _failed_over(fresh_lab, api)
    before = _secondary_ingress(fresh_lab)
    # The promotion is refused for good (403): after the fence is set, before DNS moves.
    fresh_lab.fault(api="sql", method="POST", path="/promoteReplica$", status=403, count=5)
    since = fresh_lab.last_seq()
    inc = incident("FBDENY")

    final = api.wait(_failback(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    assert "403" in final["state"]["message"]
    _assert_lifted(fresh_lab, before)
    assert _ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 2))
    assert front_region(fresh_lab, "/auth/status") == SECONDARY.name
    record = _record(fresh_lab, inc)
    assert record["outcome"] == "failed"
    steps = {s["name"]: s["outcome"] for s in record["steps"]}
    assert steps["promote"] == "failed" and steps["lift-fence"] == "done"
    assert len(_fence_lines(record["plan"])) == len(SERVICES)
    assert sorted(f["service"] for f in record["fence"]["set"]) == sorted(SERVICES)
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)
    assert {f["after"] for f in record["fence"]["lifted"]} == {"INGRESS_TRAFFIC_ALL"}
