"""The failback's fence: lifted when the run ends before its promotion, kept once the
promotion has started until the run (or a re-run of the incident) has repointed the
secondary's services: cancellation, a kill then a resumed run, a kill then a refused run
(during the promotion, or before it with no crash hook), a failure inside the fence.

Each test fails over first, then starts a failback through its deployment and acts on it
while the fence holds (the secondary's services at ingress internal-only, their
annotations naming the run).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from lab.prefect_api import PrefectApi
from tests.flows.fence_checks import (
    FENCED_BY,
    INGRESS_BEFORE,
    INTERNAL_ONLY,
    SERVICES,
    SLOW_PROMOTION,
    assert_lifted,
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
    SECONDARY,
    TOPOLOGY,
    front_region,
    incident,
    instance_type,
    read_object,
    service_name,
    side_effects,
)
from tests.labharness import Lab
from tests.polling import wait_for

OLD = TOPOLOGY.cloud_sql.primary


def _failed_over(lab: Lab, api: PrefectApi) -> None:
    lab.outage(PRIMARY.name, True)
    run = api.launch("failover/lab", {"reason": "outage", "incident_id": incident("FO")})
    assert api.wait(run["id"])["state"]["type"] == "COMPLETED"
    lab.outage(PRIMARY.name, False)


def _failback(api: PrefectApi, inc: str) -> str:
    return str(api.launch("failback/lab", {"reason": "fence", "incident_id": inc})["id"])


def _secondary_ingress(lab: Lab) -> dict[str, tuple[str, dict[str, str]]]:
    return region_ingress(lab, SECONDARY)


def _ingress_updates(lab: Lab, since: int) -> Counter[str]:
    return ingress_updates(lab, SECONDARY, since)


def _record(lab: Lab, inc: str) -> dict[str, Any]:
    return dict(
        json.loads(read_object(lab, TOPOLOGY.backups.records_bucket, f"failback/{inc}.json"))
    )


def _fence_lines(plan: list[str]) -> list[str]:
    return [line for line in plan if line.startswith(("fence ", "keep the fence "))]


def _assert_lifted(lab: Lab, before: dict[str, tuple[str, dict[str, str]]]) -> None:
    assert_lifted(lab, SECONDARY, before)


def _assert_kept(lab: Lab, holder: str) -> None:
    for got, notes in _secondary_ingress(lab).values():
        assert got == INTERNAL_ONLY and notes[FENCED_BY] == holder


def _rerun_adopts_and_lifts(
    lab: Lab, api: PrefectApi, inc: str, before: dict[str, tuple[str, dict[str, str]]], since: int
) -> list[tuple[str, str]]:
    """Re-run the incident of a run that kept its fence while promoting: it completes, with
    the ingress each service had before, one fence and one lift per service in all (set
    by the first run, adopted, lifted once) and one promotion (the re-run waited for it);
    returns the side effects' kinds since ``since``."""
    lab.post("config", {"latency": {"sql.promote": 180}})
    final = api.wait(_failback(api, inc), timeout=400)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    _assert_lifted(lab, before)
    assert front_region(lab) == PRIMARY.name
    assert _ingress_updates(lab, since) == Counter(dict.fromkeys(SERVICES, 2))
    kinds = [(a, m) for a, m, _ in side_effects(lab, since)]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1
    return kinds


def test_a_failback_cancelled_while_promoting_keeps_its_fence_and_the_rerun_lifts_it(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Cancelled once the promotion runs: the secondary's services still name the database
    the promotion is replacing, so the fence stays (the run's own exit and the cancellation
    hook both say so); a re-run of the incident adopts it, finishes, and restores exactly
    the ingress each service had (one admits only internal load balancers)."""
    from google.cloud import run_v2
    from google.protobuf import field_mask_pb2

    _failed_over(fresh_lab, api)
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
    wait_fence_holds(fresh_lab, api, run_id, SECONDARY, since, promoting=True)

    api.http.post(
        f"/flow_runs/{run_id}/set_state", json={"state": {"type": "CANCELLING"}, "force": True}
    ).raise_for_status()
    final = api.wait(run_id, timeout=120)

    assert final["state"]["type"] == "CANCELLED", final["state"]
    _assert_kept(fresh_lab, f"failback/{inc}/{run_id}")
    wait_for(lambda: hook_finished(api, run_id), timeout=60, what="the cancellation hook's end")
    logs = recent_logs(api, run_id)
    assert any(line.startswith(f"kept the fence on {SECONDARY.name}/") for line in logs), logs
    record = _record(fresh_lab, inc)
    assert sorted(record["fence"]["kept"]) == sorted(SERVICES)
    assert record["fence"]["lifted"] == []

    _rerun_adopts_and_lifts(fresh_lab, api, inc, before, since)
    record = _record(fresh_lab, inc)
    assert _fence_lines(record["plan"]) == [
        f"keep the fence on {SECONDARY.name}/{name} (set by failback/{inc}/{run_id}; "
        f"ingress {before[name][0]} before it)"
        for name in SERVICES
    ]
    assert [f["changed"] for f in record["fence"]["set"]] == [False] * len(SERVICES)
    assert {f["after"] for f in record["fence"]["lifted"]} == {before[n][0] for n in SERVICES}


def _kill_while_promoting(lab: Lab, api: PrefectApi, inc: str) -> tuple[str, int]:
    """Start a failback, SIGKILL its process once the fence holds and the (slow)
    promotion has been asked for; returns (run, since)."""
    lab.post("config", SLOW_PROMOTION)
    since = lab.last_seq()
    run_id = _failback(api, inc)
    wait_fence_holds(lab, api, run_id, SECONDARY, since, promoting=True)
    kill(run_id)
    wait_crashed(api, run_id)
    wait_for(lambda: hook_finished(api, run_id), timeout=60, what="the crash hook's end")
    return run_id, since


def test_a_failback_killed_while_promoting_keeps_its_fence_and_the_rerun_lifts_it(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """SIGKILL of the flow's process: the process worker survives it, marks the run
    Crashed and runs the flow's on_crashed hook in its own process. The promotion has
    started, so the hook keeps the fence and says why; the re-run adopts it and lifts it.
    (Before, the hook lifted it and the re-run fenced again: until then, stale clients
    wrote to a database that was no longer the primary.)"""
    _failed_over(fresh_lab, api)
    before = _secondary_ingress(fresh_lab)
    inc = incident("FBKILL")
    first, since = _kill_while_promoting(fresh_lab, api, inc)
    _assert_kept(fresh_lab, f"failback/{inc}/{first}")
    logs = recent_logs(api, first)
    assert any(line.startswith(f"kept the fence on {SECONDARY.name}/") for line in logs), logs
    assert "lifted the fence on nothing after the run ended early" in logs

    kinds = _rerun_adopts_and_lifts(fresh_lab, api, inc, before, since)
    assert kinds.count(("sql", "instances.export")) == 2  # old primary (once), then secondary
    assert kinds.count(("dns", "POST")) == 1
    record = _record(fresh_lab, inc)
    assert record["outcome"] == "completed"
    assert all(line.startswith("keep the fence ") for line in _fence_lines(record["plan"]))
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)


def test_a_refused_rerun_keeps_the_fence_of_a_killed_promotion(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """The re-run is refused (the primary region is down again). The killed run's
    promotion had started: lifting its fence would send writes to a database that is no
    longer the primary, so the refusal keeps it and says so."""
    _failed_over(fresh_lab, api)
    inc = incident("FBREFUSE")
    first, since = _kill_while_promoting(fresh_lab, api, inc)
    fresh_lab.outage(PRIMARY.name, True)

    final = api.wait(_failback(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert f"the primary region {PRIMARY.name} is unhealthy" in message
    assert "the fence a killed run left is kept: kept the fence on" in message, message
    _assert_kept(fresh_lab, f"failback/{inc}/{first}")
    assert _ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 1))
    record = _record(fresh_lab, inc)
    assert record["outcome"] == "failed"
    assert sorted(record["fence"]["kept"]) == sorted(SERVICES)
    fresh_lab.outage(PRIMARY.name, False)


def _leave_fence(lab: Lab, holder: str) -> None:
    """Fence the secondary's services as a run killed before its promotion leaves them
    when its crash hook never ran (the worker died with it: a lost node): ingress
    internal-only, the holder and the ingress before it on each, with the real client."""
    from google.cloud import run_v2
    from google.protobuf import field_mask_pb2

    services = lab.clients().run_services
    for name in SERVICES:
        got = services.get_service(name=service_name(SECONDARY, name))
        before = run_v2.IngressTraffic(got.ingress).name
        got.annotations[FENCED_BY] = holder
        got.annotations[INGRESS_BEFORE] = before
        got.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY
        mask = field_mask_pb2.FieldMask(paths=["ingress", "annotations"])
        services.update_service(service=got, update_mask=mask).result(timeout=120)


def test_a_refused_rerun_lifts_a_fence_left_before_the_promotion(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """No promotion had started: the secondary's database is still the primary and lifting
    loses nothing, so the refused re-run lifts the fence under the region lock (until then
    the secondary served no one) and says so.

    The state is built as it happens: a first run rebuilds the old primary as a replica and
    fails at its fence (403, lifted at once); then the fence a run killed at that point
    leaves when its crash hook never ran (the worker died with it)."""
    _failed_over(fresh_lab, api)
    before = _secondary_ingress(fresh_lab)
    inc = incident("FBSTALE")
    fresh_lab.fault(
        api="run", method="PATCH", path=f"locations/{SECONDARY.name}/services/", status=403, count=1
    )
    first = api.wait(_failback(api, inc), timeout=400)
    assert first["state"]["type"] == "FAILED" and "fence" in first["state"]["message"], first
    assert instance_type(fresh_lab, OLD.project, OLD.instance) == "READ_REPLICA_INSTANCE"
    _assert_lifted(fresh_lab, before)
    _leave_fence(fresh_lab, f"failback/{inc}/killed-with-its-worker")
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()

    final = api.wait(_failback(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert f"the primary region {PRIMARY.name} is unhealthy" in message
    assert "the fence a killed run left was lifted" in message, message
    _assert_lifted(fresh_lab, before)
    assert _ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 1))
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert ("sql", "instances.promoteReplica") not in kinds
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


def test_a_failback_killed_while_lifting_its_fence_is_not_fenced_again_by_the_rerun(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Killed once the lift has begun (DNS is back, the promotion long done): a lifted
    service was repointed first, so the re-run adopts whatever fence is left and sets no
    new one. Before, it fenced all four again and lifted them (the failback crash sweep's
    point 18: 8 Run updates more, and a second outage for nothing)."""
    _failed_over(fresh_lab, api)
    before = _secondary_ingress(fresh_lab)
    since = fresh_lab.last_seq()
    inc = incident("FBLIFT")
    first = _failback(api, inc)
    wait_for(
        lambda: sum(_ingress_updates(fresh_lab, since).values()) > len(SERVICES),
        timeout=300,
        what="the first lift of the fence",
    )
    kill(first)
    wait_crashed(api, first)
    wait_for(lambda: hook_finished(api, first), timeout=60, what="the crash hook's end")

    final = api.wait(_failback(api, inc), timeout=400)

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    _assert_lifted(fresh_lab, before)
    assert front_region(fresh_lab) == PRIMARY.name
    assert _ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 2))
    record = _record(fresh_lab, inc)
    assert not any(f["changed"] for f in record["fence"]["set"]), record["fence"]
