"""A write whose call timed out is adopted when it lands, not sent twice.

AddSecretVersion and Cloud SQL's mutations take no request id: a call the client gave up
on may still be acted on. The lab, like Google, applies a held call when it answers it,
after the client's deadline (the fault matrix found the failover adding two secret
versions, then patching an instance twice, this way). The failover must end with one new
version naming the promoted replica, and one promotion.
"""

from __future__ import annotations

from lab.prefect_api import PrefectApi
from tests.flows.lab_checks import PRIMARY, TOPOLOGY, incident, instance_address
from tests.labharness import Lab

SECRET = TOPOLOGY.cloud_sql.app_secret.resource
REPLICA = TOPOLOGY.cloud_sql.replica


def _versions(lab: Lab) -> list[str]:
    listed = lab.clients().secret_manager.list_secret_versions(request={"parent": SECRET})
    return [v.name for v in listed]


def _value(lab: Lab, name: str) -> str:
    got = lab.clients().secret_manager.access_secret_version(name=name)
    return bytes(got.payload.data).decode()


def test_a_held_add_that_lands_late_is_adopted_not_sent_again(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    before = set(_versions(fresh_lab))
    fresh_lab.outage(PRIMARY.name, True)
    held = TOPOLOGY.endpoints.call_timeout_s + 3  # past the client's deadline
    fresh_lab.fault(
        api="secretmanager", method="POST", path=":addVersion$", latency_s=held, count=1
    )
    since = fresh_lab.last_seq()

    final = api.wait(
        api.launch("failover/lab", {"reason": "outage", "incident_id": incident("SECAMB")})["id"],
        timeout=300,
    )

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    adds = [
        e
        for e in fresh_lab.requests(api="secretmanager", method="POST", since=since)
        if e["path"].endswith(":addVersion")
    ]
    assert [e["injected"] for e in adds] == [True], adds  # sent once, never again
    [added] = sorted(set(_versions(fresh_lab)) - before)
    # The one version names the promoted replica (the secret's value: compared, not shown).
    assert instance_address(fresh_lab, REPLICA.project, REPLICA.instance) in _value(
        fresh_lab, added
    )


def test_a_held_promotion_that_lands_late_is_joined_not_sent_again(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    held = TOPOLOGY.endpoints.call_timeout_s + 3  # past the client's deadline
    fresh_lab.fault(api="sql", method="POST", path="/promoteReplica$", latency_s=held, count=1)
    since = fresh_lab.last_seq()

    final = api.wait(
        api.launch("failover/lab", {"reason": "outage", "incident_id": incident("SQLAMB")})["id"],
        timeout=300,
    )

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    promotions = [
        e
        for e in fresh_lab.requests(api="sql", method="POST", since=since)
        if e["path"].endswith("/promoteReplica")
    ]
    assert [e["injected"] for e in promotions] == [True], promotions  # sent once, never again
    ops = fresh_lab.clients().sql.pages(
        lambda s, token: s.operations().list(
            project=REPLICA.project, instance=REPLICA.instance, pageToken=token
        ),
        10,
    )
    kinds = [op["operationType"] for op in ops]
    assert kinds.count("PROMOTE_REPLICA") == 1, kinds
