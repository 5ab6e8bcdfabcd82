"""Region slots that runs a test killed still hold, released before the next test.

A run killed with SIGKILL keeps its region slot until its lease lapses: 60 s, then the
server's repossessor (flows/region_slot.py). A re-run of its incident frees it at once,
but a test that fails between the kill and its re-run leaves it held, and the next test
on that lab waits for the slot and fails with LockHeld: one failure read as two. The
lab's reset cannot free it (the slot is Prefect's, not the lab's), so ``fresh_lab`` does,
for runs Prefect has already ended. A run still going is left alone: its own test
decides how it ends. (The tests cancel through CANCELLING, so the worker marks a run
CANCELLED only once its process has ended; a run forced straight to CANCELLED while its
process lived would lose its slot here, and end at its next lease renewal.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flows.region_slot import SLOT_LEASE_LABEL
from lab.prefect_api import PrefectApi

# How far back a run's end matters: a lease outlives its run by the lease (60 s) and the
# repossessor's loop, never this long.
ENDED_WITHIN = timedelta(minutes=3)
# The states of a run whose process may not have released its slot: killed (Crashed, once
# the worker has seen it end) or cancelled. A run that completes or fails releases it.
KILLED = ["CRASHED", "CANCELLED"]


def release_leftover_slots(api: PrefectApi) -> list[str]:
    """Release the slot lease of every run killed in the last ``ENDED_WITHIN`` that names
    one; returns the runs' ids. Releasing a lease that is gone is a no-op on the server
    (``decrement-with-lease``)."""
    after = (datetime.now(UTC) - ENDED_WITHIN).isoformat()
    response = api.http.post(
        "/flow_runs/filter",
        json={
            "flow_runs": {
                "state": {"type": {"any_": KILLED}},
                "end_time": {"after_": after},
            },
            "limit": 200,
        },
    )
    response.raise_for_status()
    released: list[str] = []
    for run in response.json():
        lease = (run.get("labels") or {}).get(SLOT_LEASE_LABEL)
        if not lease:
            continue
        api.http.post(
            "/v2/concurrency_limits/decrement-with-lease", json={"lease_id": lease}
        ).raise_for_status()
        released.append(run["id"])
    return released
