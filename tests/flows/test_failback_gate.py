"""The failback's gate rolls primary services that started with a database URL that no
longer works, then judges the region again (flows/failback_gate.py).

A failback repoints such services itself before it deletes the stale primary; the gate
covers a URL broken some other way. Here an operator's bad secret version did it: the
orders service started with it, and the fixed version that followed reached no running
instance, since the service reads the URL as an env var at instance start.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

from lab.prefect_api import PrefectApi
from tests.flows.lab_checks import (
    PRIMARY,
    TOPOLOGY,
    app_secret_value,
    front_region,
    incident,
    read_object,
    service_name,
    set_app_secret,
    side_effects,
    take_secret_as_env_var,
)
from tests.labharness import Lab

ORDERS = "recommendation-service"  # the lab's env-var reader (lab/seed.py)


def _broken_url(url: str) -> str:
    """The same database URL on a port nothing listens on."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{host}:1"))


def _orders_started_with_a_broken_url(lab: Lab) -> None:
    good = app_secret_value(lab)
    set_app_secret(lab, _broken_url(good))
    take_secret_as_env_var(lab, PRIMARY.name, ORDERS, "latest")  # new instances read it
    set_app_secret(lab, good)  # the fix: no running instance has it


def test_the_gate_rolls_the_readers_of_a_broken_url_then_judges_the_region(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    assert front_region(fresh_lab) == PRIMARY.name
    _orders_started_with_a_broken_url(fresh_lab)
    inc = incident("FBGATE")
    record_name = f"failback/{inc}.json"

    # A dry run changes nothing, even where a run would roll first (the plan line is
    # tests/unit/test_gates.py's); with no failover to undo, it is refused.
    since = fresh_lab.last_seq()
    dry = api.wait(
        api.launch("failback/lab", {"reason": "plan", "incident_id": inc, "dry_run": True})["id"]
    )
    assert dry["state"]["type"] == "FAILED"
    assert "there is no failover to undo" in dry["state"]["message"], dry["state"]["message"]
    assert side_effects(fresh_lab, since) == []

    since = fresh_lab.last_seq()
    run = api.wait(api.launch("failback/lab", {"reason": "gate", "incident_id": inc})["id"])
    # Healthy once rolled; then refused, as there was no failover to undo.
    assert run["state"]["type"] == "FAILED"
    assert "there is no failover to undo" in run["state"]["message"], run["state"]["message"]
    changes = side_effects(fresh_lab, since)
    assert [(a, m) for a, m, _ in changes] == [("run", "PATCH")], changes
    assert changes[0][2].endswith(service_name(PRIMARY, ORDERS))
    record = json.loads(read_object(fresh_lab, TOPOLOGY.backups.records_bucket, record_name))
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["roll-primary-readers"]["outcome"] == "done"
    assert "/health=200" in steps["roll-primary-readers"]["detail"], steps["roll-primary-readers"]
