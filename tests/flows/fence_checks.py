"""Reading a planned switch's fence in the lab, and killing the run that holds it.

The lab's request log keeps each call's query string, so an ingress change
(``updateMask=ingress,annotations``) is told apart from a scaling one.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

from lab.prefect_api import PrefectApi, flow_processes
from tests.flows.lab_checks import TOPOLOGY, ingress, sql_requests
from tests.labharness import Lab

SERVICES = [s.name for s in TOPOLOGY.services]
# The product's annotation names (tasks/cloud_run_ingress.py), written again on purpose:
# importing a task module imports prefect, which must not happen before the lab starts.
FENCED_BY = "lifeboat.dev/fenced-by"
INGRESS_BEFORE = "lifeboat.dev/ingress-before"
INTERNAL_ONLY = "INGRESS_TRAFFIC_INTERNAL_ONLY"
SLOT_LEASE_LABEL = "lifeboat.dev/region-slot-lease"  # flows/region_slot.py
# A promotion of 3000 s modelled (30 s at the tests' time scale): the fence holds at
# least that long, time enough to cancel or kill the run in the middle of it.
SLOW_PROMOTION = {"latency": {"sql.promote": 3000}}


def region_ingress(lab: Lab, region: Any) -> dict[str, tuple[str, dict[str, str]]]:
    """Each service's ingress and annotations in a region, read with the real client."""
    return {name: ingress(lab, region, name) for name in SERVICES}


def ingress_updates(lab: Lab, region: Any, since: int) -> Counter[str]:
    """Successful UpdateService calls that set a service's ingress in a region, per service."""
    counts: Counter[str] = Counter()
    for e in lab.requests(api="run", method="PATCH", since=since):
        mask = ",".join(parse_qs(e.get("query", "")).get("updateMask", []))
        if f"/locations/{region.name}/" in e["path"] and e["status"] < 400 and "ingress" in mask:
            counts[e["path"].rsplit("/", 1)[-1]] += 1
    return counts


def fenced_everywhere(lab: Lab, region: Any) -> bool:
    return all(
        got == INTERNAL_ONLY and FENCED_BY in notes
        for got, notes in region_ingress(lab, region).values()
    )


def wait_fence_holds(
    lab: Lab, api: PrefectApi, run_id: str, region: Any, since: int, *, promoting: bool
) -> None:
    """Until every service of the region is fenced (and, if ``promoting``, the slow
    promotion has been asked for). A failback gets there after a roll, an export, a
    delete and a replica's creation: on a loaded 2-core machine that took over 180 s."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        started = "instances.promoteReplica" in sql_requests(lab, since)
        if fenced_everywhere(lab, region) and started == promoting:
            return
        assert not (started and not promoting), "the promotion started before the test acted"
        assert api.state(run_id) not in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, (
            api.flow_run(run_id)["state"]
        )
        time.sleep(0.2)
    raise AssertionError(f"the fence never held as expected: {api.flow_run(run_id)}")


def _signal(run_id: str, sig: signal.Signals) -> None:
    pids = flow_processes(run_id)
    assert pids, "no process of the flow run"
    for pid in pids:
        os.kill(pid, sig)


def kill(run_id: str) -> None:
    """SIGKILL the flow run's process, as an OOM kill or a lost node would."""
    _signal(run_id, signal.SIGKILL)


def freeze(run_id: str) -> None:
    """SIGSTOP the flow run's process: it renews nothing and answers no one, and Prefect
    still has it Running (a hung node, until the process is killed)."""
    _signal(run_id, signal.SIGSTOP)


def wait_crashed(api: PrefectApi, run_id: str) -> None:
    """The worker sees its flow process die, marks the run Crashed, then runs on_crashed."""
    final = api.wait(run_id, timeout=120)
    assert final["state"]["type"] == "CRASHED", final["state"]


def assert_slot_freed(api: PrefectApi, record: dict[str, Any], killed: str) -> None:
    """The re-run took the region slot from the killed run at once, not when its lease
    expired: the killed run names its slot lease in a label, and the re-run's
    region-lock step says it freed that lease because the run had crashed."""
    lease_id = api.flow_run(killed)["labels"].get(SLOT_LEASE_LABEL)
    assert lease_id, api.flow_run(killed)["labels"]
    detail = next(s["detail"] for s in record["steps"] if s["name"] == "region-lock")
    assert f"flow run {killed} is CRASHED: its region slot lease {lease_id} is released" in (
        detail
    ), detail


def recent_logs(api: PrefectApi, run_id: str) -> list[str]:
    """The run's newest log lines first (the worker's hook logs under the run too)."""
    return [entry["message"] for entry in reversed(api.last_log_entries(run_id, 50))]


def assert_stopped_record(record: dict[str, Any], killed: str, **fields: str) -> None:
    """The record a crash hook wrote for the run ``killed`` (flows/stopped_run.py): that
    flow run's, failed, naming Prefect's Crashed; ``fields`` are others it must carry."""
    wanted = {"flow_run_id": killed, "outcome": "failed", **fields}
    assert {key: record.get(key) for key in wanted} == wanted, record
    assert "the run stopped before its end (Crashed: " in record["error"], record["error"]


def hook_finished(api: PrefectApi, run_id: str) -> bool:
    """The crash or cancellation hook has ended (the worker runs it, under the run's logs):
    its last act, the stopped run's record (flows/stopped_run.py), is logged whatever its
    outcome, after the lines saying what it lifted."""
    return any(line.startswith("stopped-run record:") for line in recent_logs(api, run_id))


def assert_lifted(lab: Lab, region: Any, before: dict[str, tuple[str, dict[str, str]]]) -> None:
    """Every service of the region has the ingress it had before the fence, no fence notes."""
    after = region_ingress(lab, region)
    assert after == before, after
    assert not any(FENCED_BY in notes for _, notes in after.values())
