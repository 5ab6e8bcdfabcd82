"""A writer through the front door during a failback: no acknowledged write is lost.

Numbered writes go to the public path at a fixed rate for the whole failback. A 201 is an
acknowledged write (the region app answers it only after the commit); the fence answers
404 (ingress internal-only) and a database that cannot take writes answers 503. Every
acknowledged id must be on the final primary, and the fence must be gone.
"""

from __future__ import annotations

import time

from google.cloud import run_v2

from lab.prefect_api import PrefectApi
from reliability.writer import Writer, lost
from tests.flows.lab_checks import (
    PRIMARY,
    SECONDARY,
    TOPOLOGY,
    app_role,
    front_region,
    incident,
    run_records,
    sql,
)
from tests.labharness import Lab

OLD = TOPOLOGY.cloud_sql.primary


def test_every_write_acknowledged_during_a_failback_is_on_the_final_primary(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    failover = api.launch("failover/lab", {"reason": "outage", "incident_id": incident("FOW")})
    assert api.wait(failover["id"])["state"]["type"] == "COMPLETED"
    fresh_lab.outage(PRIMARY.name, False)
    writer = Writer(fresh_lab.endpoints["front_door"], TOPOLOGY.health.host, incident("W").lower())
    writer.start()
    try:
        time.sleep(1.0)  # writes land on the promoted secondary before the failback starts
        final = api.wait(
            api.launch("failback/lab", {"reason": "primary back", "incident_id": incident("FBW")})[
                "id"
            ],
            timeout=400,
        )
        time.sleep(1.0)  # and on the new primary after it
    finally:
        writer.stop()
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert front_region(fresh_lab) == PRIMARY.name

    acked = writer.acknowledged
    print(f"writer: {len(acked)} acknowledged, refused {writer.refused}, {writer.errors} errors")
    rows = sql(fresh_lab, OLD.project, OLD.instance, "SELECT id, region FROM orders")
    on_primary = {order_id: region for order_id, region in rows}
    missing = lost(acked, on_primary)
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged writes lost: {missing[:5]}"
    # The writer saw both sides of the switch, and the fence in between.
    regions = {on_primary[order_id] for order_id in acked}
    assert regions == {SECONDARY.name, PRIMARY.name}, regions
    assert writer.refused.get(404, 0) > 0, writer.refused  # the fence held for a while
    # The database fence on the promoted secondary reached the rebuilt primary-region
    # instance through replication; the run let the apps' role in again once it promoted it.
    assert app_role(fresh_lab, OLD.project, OLD.instance) == (True, "")
    (record,) = run_records(fresh_lab, "failback", final["id"])
    steps = [s["name"] for s in record["steps"]]
    assert steps.index("fence-database") < steps.index("promote") < steps.index("open-database")
    # The fence is gone: every secondary service has its ingress back.
    services = fresh_lab.clients().run_services
    for service in TOPOLOGY.services:
        name = f"projects/{SECONDARY.project}/locations/{SECONDARY.name}/services/{service.name}"
        got = services.get_service(name=name)
        assert got.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL, service.name
