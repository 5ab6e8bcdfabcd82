"""The failback's fence when a run is refused or fails: a refused re-run keeps the fence
of a killed promotion and lifts one left before the promotion; a failure inside the fence
lifts it. The stopped-and-resumed runs are in test_failback_fence.py.
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
    secondary_ingress,
    secondary_ingress_updates,
)
from tests.flows.fence_checks import (
    FENCED_BY,
    INGRESS_BEFORE,
    SERVICES,
)
from tests.flows.lab_checks import (
    PRIMARY,
    REPLICA,
    SECONDARY,
    app_secret_value,
    front_region,
    incident,
    instance_address,
    instance_type,
    post_order,
    service_name,
    side_effects,
)
from tests.labharness import Lab
from tests.polling import wait_for


def test_a_refused_rerun_keeps_the_fence_of_a_killed_promotion(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """The re-run is refused (the primary region is down again). The killed run's
    promotion had started: lifting its fence would send writes to a database that is no
    longer the primary, so the refusal keeps it and says so.

    The re-run is launched once that promotion has ended: a re-run that waits for it
    gives the region a minute to settle before refusing (test_failback_fence.py's kill
    test covers that wait), and this test is about the refusal."""
    failed_over(fresh_lab, api)
    inc = incident("FBREFUSE")
    first, since = kill_while_promoting(fresh_lab, api, inc)
    wait_for(
        lambda: instance_type(fresh_lab, OLD.project, OLD.instance) == "CLOUD_SQL_INSTANCE",
        timeout=120,
        what="the killed run's promotion to end",
    )
    fresh_lab.outage(PRIMARY.name, True)

    final = api.wait(launch_failback(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert f"the primary region {PRIMARY.name} is unhealthy" in message
    assert "the fence a killed run left is kept: kept the fence on" in message, message
    assert_secondary_kept(fresh_lab, f"failback/{inc}/{first}")
    assert secondary_ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 1))
    record = failback_record(fresh_lab, inc)
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
    failed_over(fresh_lab, api)
    before = secondary_ingress(fresh_lab)
    inc = incident("FBSTALE")
    fresh_lab.fault(
        api="run", method="PATCH", path=f"locations/{SECONDARY.name}/services/", status=403, count=1
    )
    first = api.wait(launch_failback(api, inc), timeout=400)
    assert first["state"]["type"] == "FAILED" and "fence" in first["state"]["message"], first
    assert instance_type(fresh_lab, OLD.project, OLD.instance) == "READ_REPLICA_INSTANCE"
    assert_secondary_lifted(fresh_lab, before)
    _leave_fence(fresh_lab, f"failback/{inc}/killed-with-its-worker")
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()

    final = api.wait(launch_failback(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert f"the primary region {PRIMARY.name} is unhealthy" in message
    assert "the fence a killed run left was lifted" in message, message
    assert_secondary_lifted(fresh_lab, before)
    assert secondary_ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 1))
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert ("sql", "instances.promoteReplica") not in kinds
    record = failback_record(fresh_lab, inc)
    assert record["outcome"] == "failed"
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)
    fresh_lab.outage(PRIMARY.name, False)


def test_a_permanent_failure_inside_the_fence_lifts_it(fresh_lab: Lab, api: PrefectApi) -> None:
    failed_over(fresh_lab, api)
    before = secondary_ingress(fresh_lab)
    # The promotion is refused for good (403): after the fence is set, before DNS moves.
    fresh_lab.fault(api="sql", method="POST", path="/promoteReplica$", status=403, count=5)
    since = fresh_lab.last_seq()
    inc = incident("FBDENY")

    final = api.wait(launch_failback(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    assert "403" in final["state"]["message"]
    assert_secondary_lifted(fresh_lab, before)
    assert secondary_ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 2))
    assert front_region(fresh_lab, "/auth/status") == SECONDARY.name
    record = failback_record(fresh_lab, inc)
    assert record["outcome"] == "failed"
    steps = {s["name"]: s["outcome"] for s in record["steps"]}
    assert steps["promote"] == "failed" and steps["lift-fence"] == "done"
    assert len(fence_lines(record["plan"])) == len(SERVICES)
    assert sorted(f["service"] for f in record["fence"]["set"]) == sorted(SERVICES)
    assert sorted(f["service"] for f in record["fence"]["lifted"]) == sorted(SERVICES)
    assert {f["after"] for f in record["fence"]["lifted"]} == {"INGRESS_TRAFFIC_ALL"}


def test_a_promotion_that_fails_after_it_began_points_the_apps_back_before_the_lift(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """Cloud SQL accepts the promotion, the apps' roll runs beside it, then the operation
    ends in error with the instance still a replica. Lifting the fence then would send the
    secondary's writes to a replica: the secret names the promoted secondary again and its
    readers roll back to it first."""
    failed_over(fresh_lab, api)
    before = secondary_ingress(fresh_lab)
    fresh_lab.fail_sql_operations("PROMOTE_REPLICA", "lab: the promotion failed")
    since = fresh_lab.last_seq()
    inc = incident("FBOPFAIL")

    final = api.wait(launch_failback(api, inc), timeout=300)

    assert final["state"]["type"] == "FAILED"
    assert "lab: the promotion failed" in final["state"]["message"], final["state"]["message"]
    assert instance_type(fresh_lab, OLD.project, OLD.instance) == "READ_REPLICA_INSTANCE"
    assert_secondary_lifted(fresh_lab, before)
    record = failback_record(fresh_lab, inc)
    steps = [(s["name"], s["outcome"]) for s in record["steps"]]
    names = [name for name, _ in steps]
    assert ("promote", "failed") in steps and ("database-connection", "done") in steps, steps
    assert ("database-connection-back", "done") in steps, steps
    assert names.index("database-connection-back") < names.index("lift-fence"), names
    # The apps name the promoted secondary again, and a write through the front door
    # lands there, acknowledged.
    address = instance_address(fresh_lab, REPLICA.project, REPLICA.instance)
    assert f"@{address}:" in app_secret_value(fresh_lab)
    order = post_order(fresh_lab, f"order-{inc}")
    assert order.status_code == 201, order.text
    assert order.json()["database"].startswith(f"{address}:"), order.json()
    # The promotion, then the roll beside it (the secret, then the env-var reader of each
    # region), the roll back, and only then the fence's lift.
    kinds = [
        (a, m) for a, m, _ in side_effects(fresh_lab, since) if a in ("run", "sql", "secretmanager")
    ]
    promote = ("sql", "instances.promoteReplica")
    roll = [("secretmanager", "POST"), ("run", "PATCH"), ("run", "PATCH")]
    lift = [("run", "PATCH")] * len(SERVICES)
    assert kinds[kinds.index(promote) :] == [promote, *roll, *roll, *lift], kinds
    assert secondary_ingress_updates(fresh_lab, since) == Counter(dict.fromkeys(SERVICES, 2))
