"""A failback's fence in the lab: the steps the failback fence tests share (fail over first,
launch the failback, read the secondary's ingress, kill a run while it promotes, re-run).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from lab.prefect_api import PrefectApi
from tests.flows.fence_checks import (
    FENCED_BY,
    INTERNAL_ONLY,
    SERVICES,
    SLOW_PROMOTION,
    assert_lifted,
    hook_finished,
    ingress_updates,
    kill,
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
    read_object,
    side_effects,
)
from tests.labharness import Lab
from tests.polling import wait_for

OLD = TOPOLOGY.cloud_sql.primary


def failed_over(lab: Lab, api: PrefectApi) -> None:
    lab.outage(PRIMARY.name, True)
    run = api.launch("failover/lab", {"reason": "outage", "incident_id": incident("FO")})
    assert api.wait(run["id"])["state"]["type"] == "COMPLETED"
    lab.outage(PRIMARY.name, False)


def launch_failback(api: PrefectApi, inc: str) -> str:
    return str(api.launch("failback/lab", {"reason": "fence", "incident_id": inc})["id"])


def secondary_ingress(lab: Lab) -> dict[str, tuple[str, dict[str, str]]]:
    return region_ingress(lab, SECONDARY)


def secondary_ingress_updates(lab: Lab, since: int) -> Counter[str]:
    return ingress_updates(lab, SECONDARY, since)


def failback_record(lab: Lab, inc: str) -> dict[str, Any]:
    return dict(
        json.loads(read_object(lab, TOPOLOGY.backups.records_bucket, f"failback/{inc}.json"))
    )


def fence_lines(plan: list[str]) -> list[str]:
    """The plan's lines for the ingress fence (not the database's, which says NOLOGIN)."""
    return [
        line
        for line in plan
        if line.startswith(("fence ", "keep the fence ")) and "NOLOGIN" not in line
    ]


def assert_secondary_lifted(lab: Lab, before: dict[str, tuple[str, dict[str, str]]]) -> None:
    assert_lifted(lab, SECONDARY, before)


def assert_secondary_kept(lab: Lab, holder: str) -> None:
    for got, notes in secondary_ingress(lab).values():
        assert got == INTERNAL_ONLY and notes[FENCED_BY] == holder


def rerun_adopts_and_lifts(
    lab: Lab, api: PrefectApi, inc: str, before: dict[str, tuple[str, dict[str, str]]], since: int
) -> list[tuple[str, str]]:
    """Re-run the incident of a run that kept its fence while promoting: it completes, with
    the ingress each service had before, one fence and one lift per service in all (set
    by the first run, adopted, lifted once) and one promotion (the re-run waited for it);
    returns the side effects' kinds since ``since``."""
    lab.post("config", {"latency": {"sql.promote": 180}})
    final = api.wait(launch_failback(api, inc), timeout=400)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert_secondary_lifted(lab, before)
    assert front_region(lab) == PRIMARY.name
    assert secondary_ingress_updates(lab, since) == Counter(dict.fromkeys(SERVICES, 2))
    kinds = [(a, m) for a, m, _ in side_effects(lab, since)]
    assert kinds.count(("sql", "instances.promoteReplica")) == 1
    return kinds


def secret_version_added(lab: Lab, since: int) -> bool:
    """A version of the apps' secret was added since ``since``: the run's repoint."""
    return any(
        e["api"] == "secretmanager" and e["path"].endswith(":addVersion") and e["status"] < 400
        for e in lab.requests(since=since)
    )


def kill_while_promoting(lab: Lab, api: PrefectApi, inc: str) -> tuple[str, int]:
    """Start a failback, SIGKILL its process once the fence holds, the (slow) promotion
    has been asked for and the apps' secret names the instance it promotes; returns
    (run, since).

    After the repoint: these tests are about the fence kept while promoting, so they
    kill where the run has done all it does before waiting. A kill between the
    promotion's start and the repoint is test_failback_killed_before_repoint.py's."""
    lab.post("config", SLOW_PROMOTION)
    since = lab.last_seq()
    run_id = launch_failback(api, inc)
    wait_fence_holds(lab, api, run_id, SECONDARY, since, promoting=True)
    wait_for(
        lambda: secret_version_added(lab, since),
        timeout=120,
        what="the apps' secret naming the instance being promoted",
    )
    kill(run_id)
    wait_crashed(api, run_id)
    wait_for(lambda: hook_finished(api, run_id), timeout=60, what="the crash hook's end")
    return run_id, since
