"""A failback killed after its promotion began and before it pointed the apps at the
instance it promotes (flows/failback_promotion.py rolls the apps once Cloud SQL shows
the promotion begun). The old primary stays fenced once a promotion has started, so the
apps, still naming it, can write nowhere: the primary region fails its checks. The
re-run's gate (flows/failback_gate.py) points them at the promoted instance under the
region lock, then finishes the switch; before, it refused (session 25's stop note, §0).
"""

from __future__ import annotations

import json

from lab.prefect_api import PrefectApi
from tests.flows.failback_fence_checks import (
    OLD,
    assert_secondary_kept,
    assert_secondary_lifted,
    failback_record,
    failed_over,
    launch_failback,
    secondary_ingress,
)
from tests.flows.fence_checks import (
    assert_slot_freed,
    assert_stopped_record,
    hook_finished,
    kill,
    wait_crashed,
)
from tests.flows.lab_checks import (
    PRIMARY,
    REPLICA,
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
    sql_instance,
)
from tests.labharness import Lab
from tests.polling import wait_for

RECORDS = TOPOLOGY.backups.records_bucket
REBUILT = "lifeboat-rebuilt-by"  # flows/rebuilt_label.py: the tests read the lab, not the product


def _add_refused(lab: Lab, since: int) -> bool:
    """The run asked to add the apps' secret version, and the lab refused it."""
    return any(
        e["path"].endswith(":addVersion") and e["injected"]
        for e in lab.requests(api="secretmanager", method="POST", since=since)
    )


def _plan(lab: Lab, api: PrefectApi, inc: str) -> list[str]:
    """A dry run's plan for the incident (the dry run completes)."""
    dry = api.wait(
        api.launch("failback/lab", {"reason": "plan", "incident_id": inc, "dry_run": True})["id"]
    )
    assert dry["state"]["type"] == "COMPLETED", dry["state"]["message"]
    return list(json.loads(read_object(lab, RECORDS, f"failback/{inc}.plan.json"))["plan"])


def _relabel(lab: Lab, value: str) -> str:
    """Set the rebuilt instance's lifeboat-rebuilt-by label to ``value``; returns the old."""
    labels = sql_instance(lab, OLD.project, OLD.instance)["settings"]["userLabels"]
    old = str(labels[REBUILT])
    client = lab.clients().sql
    body = {"settings": {"userLabels": {**labels, REBUILT: value}}}
    op = client.call(
        lambda s: s.instances().patch(project=OLD.project, instance=OLD.instance, body=body),
        timeout=10,
    )
    wait_for(
        lambda: (
            client.call(
                lambda s: s.operations().get(project=OLD.project, operation=op["name"]), timeout=10
            )["status"]
            == "DONE"
        ),
        timeout=60,
        what=f"the label {REBUILT}={value}",
        interval=0.5,
    )
    return old


def test_a_failback_killed_before_its_repoint_is_repointed_and_finished_by_the_rerun(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    failed_over(fresh_lab, api)
    before = secondary_ingress(fresh_lab)
    secondary_address = instance_address(fresh_lab, REPLICA.project, REPLICA.instance)
    rebuilt_address = instance_address(fresh_lab, OLD.project, OLD.instance)
    # Every add of a secret version fails until the kill: the run is held between the
    # promotion's start and the repoint, where a kill found it by chance in two runs of
    # session 25.
    fresh_lab.fault(api="secretmanager", method="POST", path=":addVersion$", status=503)
    since = fresh_lab.last_seq()
    inc = incident("FBKILLREPOINT")
    first = launch_failback(api, inc)
    wait_for(lambda: _add_refused(fresh_lab, since), timeout=300, what="the refused repoint")
    kill(first)
    wait_crashed(api, first)
    wait_for(lambda: hook_finished(api, first), timeout=60, what="the crash hook's end")
    fresh_lab.clear_faults()
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert ("sql", "instances.promoteReplica") in kinds  # the promotion had begun
    assert f"@{secondary_address}:" in app_secret_value(fresh_lab)  # not repointed
    assert_secondary_kept(fresh_lab, f"failback/{inc}/{first}")
    # The killed run could not write its record; its crash hook did.
    stopped = failback_record(fresh_lab, inc)
    assert_stopped_record(stopped, first, reason="fence")
    # The database fence: the apps' role may not log in on the secondary they still name.
    can_login, mark = app_role(fresh_lab, REPLICA.project, REPLICA.instance)
    assert not can_login and mark.startswith(f"lifeboat-fence: failback/{inc}/"), mark
    wait_for(
        lambda: instance_type(fresh_lab, OLD.project, OLD.instance) == "CLOUD_SQL_INSTANCE",
        timeout=120,
        what="the killed run's promotion to end",
    )

    # The apps are pointed only at an instance this incident rebuilt (its label): an
    # instance some other incident labelled is not one the dry run would point them at.
    ours = _relabel(fresh_lab, "another-incident")
    assert not any(line.startswith("point the apps") for line in _plan(fresh_lab, api, inc))
    _relabel(fresh_lab, ours)

    # A dry run of the incident plans the repair and changes nothing.
    dry_since = fresh_lab.last_seq()
    plan = _plan(fresh_lab, api, inc)
    assert side_effects(fresh_lab, dry_since) == []
    # The promoted instance inherited the fence through replication, and the killed run
    # did not reach its opening: the re-run opens it, then points the apps at it.
    assert plan[:3] == [
        f"lift the database fence a killed run of the incident left on {OLD.instance}",
        f"point the apps at the promoted {OLD.instance}: the secret names "
        f"{REPLICA.instance}, fenced since that promotion began",
        f"then probe {PRIMARY.name} again, and refuse if it is still unhealthy",
    ], plan[:4]
    # The plan is beside the incident's record, not over it: the record is still the
    # killed run's, which its crash hook wrote (the run could not).
    assert stopped == failback_record(fresh_lab, inc)
    rerun_since = fresh_lab.last_seq()

    final = api.wait(launch_failback(api, inc), timeout=400)

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    record = failback_record(fresh_lab, inc)
    assert_slot_freed(api, record, first)
    names = [s["name"] for s in record["steps"]]
    assert names.index("region-lock") < names.index("point-apps-at-promoted"), names
    assert names.index("point-apps-at-promoted") < names.index("promote"), names
    preflight = next(s["detail"] for s in record["steps"] if s["name"] == "preflight")
    assert f"the apps were pointed at the promoted {OLD.instance}" in preflight, preflight
    kinds = [(a, m) for a, m, _ in side_effects(fresh_lab, since)]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1  # never asked twice
    # The gate's repoint added the one version; the run's own step found it there.
    adds = [
        e
        for e in fresh_lab.requests(api="secretmanager", method="POST", since=rerun_since)
        if e["path"].endswith(":addVersion")
    ]
    assert [e["status"] for e in adds] == [200], adds
    assert f"@{rebuilt_address}:" in app_secret_value(fresh_lab)
    assert_secondary_lifted(fresh_lab, before)
    assert front_region(fresh_lab) == PRIMARY.name
    order = post_order(fresh_lab, f"order-{inc}")
    assert order.status_code == 201, order.text
    assert order.json()["database"].startswith(f"{rebuilt_address}:"), order.json()
