"""Lock storm (issue 15 §4): many switches launched together; exactly one may run.

Launched at once through the Prefect server: ``--failovers`` failovers with different
incidents (pre-approved, so none waits in a pause before the lock), a rollback of a
service with a new release, and a failback. The lab's promotion and Cloud Run updates are
slowed so that whichever run wins holds the lock while every other one arrives: a loser
must meet the held lock, not a lock released a moment before.

Then a killed holder: a failover is SIGKILLed once it holds the lock; another incident's
failover is refused naming it; a re-run of the killed incident frees the killed run's
Prefect slot (flows/region_slot.py; it waited out the slot's lease before session 25),
completes, and releases the lock.

Figures (``name=value``):
- storm_launches, storm_winners (goal 1), storm_winner (its incident);
- storm_losers_past_the_lock: losers whose record shows a step after the lock (goal 0);
  storm_promotions, storm_dns_changes: what the cloud saw (goal: at most 1 each);
- storm_refused_naming_holder: losers refused by the lock, naming the winner's incident;
  storm_refused_before_the_lock: losers refused by their own preflight (the failback,
  while there is no failover to undo), before any change;
- storm_refusal_max_s: the slowest refusal, from the run's start to its end;
- storm_lease_released, storm_slot_free: the lock after the storm (goal 1, 1);
- killed_holder_blocks_others, killed_holder_resumed, killed_holder_resume_wait_s,
  killed_holder_lease_released.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from typing import Any

from bench.labctl import BenchLab, bench_lab, figure, seconds_between
from lab.prefect_api import flow_processes
from lifeboat.topology import load_topology
from reliability.cloud import deploy_release, read_record
from tasks.storage import read_lease

BASE_PORT = int(os.environ.get("LIFEBOAT_RELIABILITY_PORT", "24780"))
PG_PREFIX = os.environ.get("LIFEBOAT_RELIABILITY_PG_PREFIX", "127.0.24.")
# Real seconds before the lab's time_scale (0.1): the winner holds the lock for about a
# minute, longer than twelve flow processes take to start on two cores.
SLOW = {"sql.promote": 900.0, "run.update": 600.0}
LOCK_WORDS = "region lock for lab is held"


def _lease_held() -> bool:
    """Whether the lease is held (a released one stays, marked released)."""
    return read_lease("lab") is not None


def _slot_free(lab: BenchLab) -> bool:
    response = lab.api.http.get("/v2/concurrency_limits/dr-region-switch-lab")
    response.raise_for_status()
    return int(response.json()["active_slots"]) == 0


def _launch_together(lab: BenchLab, launches: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Create every flow run at the same moment, one thread each."""
    ids: list[str] = [""] * len(launches)
    start = threading.Barrier(len(launches))

    def launch(i: int) -> None:
        deployment, parameters = launches[i]
        start.wait()
        ids[i] = str(lab.api.launch(deployment, parameters)["id"])

    threads = [threading.Thread(target=launch, args=(i,)) for i in range(len(launches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids


def _changes(lab: BenchLab, since: int) -> list[str]:
    """The changes the cloud saw since ``since`` (Cloud SQL, DNS, Run; not the leases)."""
    return [
        f"{e['api']} {e['method']} {e['path']}"
        for e in lab.requests(since=since)
        if e["write"] and e["status"] < 400 and e["api"] != "storage"
    ]


# Steps a run takes before its first change: a loser's record may hold only these.
BEFORE_CHANGES = {"preflight", "approval", "inspect", "region-lock"}


def storm(lab: BenchLab, failovers: int) -> dict[str, float | int]:
    topo = load_topology("lab")
    deploy_release(topo, "auth-service")
    lab.configure(SLOW)
    since = lab.last_seq()
    incidents = [f"STORM-FO-{n:02d}" for n in range(failovers)]
    launches: list[tuple[str, dict[str, Any]]] = [
        ("failover/lab", {"reason": "storm", "incident_id": i, "approve": True}) for i in incidents
    ]
    launches.append(
        (
            "rollback/lab",
            {"reason": "storm", "incident_id": "STORM-RB", "services": ["auth-service"]},
        )
    )
    launches.append(("failback/lab", {"reason": "storm", "incident_id": "STORM-FB"}))
    ids = _launch_together(lab, launches)
    finals = [lab.api.wait(i, timeout=900) for i in ids]
    names = [str(p["incident_id"]) for _, p in launches]
    winners = [n for n, f in zip(names, finals, strict=True) if f["state"]["type"] == "COMPLETED"]
    losers = [
        (n, f) for n, f in zip(names, finals, strict=True) if f["state"]["type"] != "COMPLETED"
    ]
    holder = winners[0] if len(winners) == 1 else "?"
    named = [n for n, f in losers if LOCK_WORDS in _message(f) and holder in _message(f)]
    preflight = [n for n, f in losers if "refused" in _message(f) and n not in named]
    refusal_s = [
        seconds_between(f["start_time"], f["end_time"])
        for _, f in losers
        if f.get("start_time") and f.get("end_time")
    ]
    for n, f in losers:
        if n not in named and n not in preflight:
            print(f"# {n} neither refused by the lock nor by its preflight: {_message(f)[:300]}")
    lab.configure({"sql.promote": 180.0, "run.update": 45.0})
    records = [
        read_record(topo, d.split("/")[0], n) for (d, _), n in zip(launches, names, strict=True)
    ]
    changed = [
        r["incident_id"]
        for r in records
        if r["incident_id"] not in winners
        and any(s["name"] not in BEFORE_CHANGES for s in r["steps"])
    ]
    changes = _changes(lab, since)
    return {
        "storm_launches": len(launches),
        "storm_winners": len(winners),
        "storm_winner": holder,  # type: ignore[dict-item]
        "storm_losers_past_the_lock": len(changed),
        "storm_promotions": sum("promoteReplica" in c for c in changes),
        "storm_dns_changes": sum(c.startswith("dns POST") for c in changes),
        "storm_refused_naming_holder": len(named),
        "storm_refused_before_the_lock": len(preflight),
        "storm_refusal_max_s": max(refusal_s, default=0.0),
        "storm_lease_released": int(not _lease_held()),
        "storm_slot_free": int(_slot_free(lab)),
    }


def _message(final: dict[str, Any]) -> str:
    return str(final["state"].get("message") or "")


def killed_holder(lab: BenchLab) -> dict[str, float | int]:
    lab.configure({"sql.promote": 600.0})  # time to kill it mid-promotion
    victim = str(
        lab.api.launch(
            "failover/lab", {"reason": "killed", "incident_id": "KILLED", "approve": True}
        )["id"]
    )
    deadline = time.monotonic() + 300
    while not _lease_held():
        if time.monotonic() > deadline:
            raise RuntimeError("the failover never took the lock")
        time.sleep(0.2)
    for pid in flow_processes(victim):
        os.kill(pid, signal.SIGKILL)
    lab.configure({"sql.promote": 180.0})
    other = lab.api.wait(
        str(
            lab.api.launch(
                "failover/lab", {"reason": "next", "incident_id": "NEXT", "approve": True}
            )["id"]
        ),
        timeout=300,
    )
    blocked = other["state"]["type"] == "FAILED" and "KILLED" in _message(other)
    started = time.monotonic()
    rerun = lab.api.wait(
        str(
            lab.api.launch(
                "failover/lab", {"reason": "resume", "incident_id": "KILLED", "approve": True}
            )["id"]
        ),
        timeout=600,
    )
    return {
        "killed_holder_blocks_others": int(blocked),
        "killed_holder_resumed": int(rerun["state"]["type"] == "COMPLETED"),
        "killed_holder_resume_wait_s": time.monotonic() - started,
        "killed_holder_lease_released": int(not _lease_held()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failovers", type=int, default=10)
    args = parser.parse_args(argv)
    with bench_lab(base_port=BASE_PORT, pg_prefix=PG_PREFIX) as lab:
        for name, value in storm(lab, args.failovers).items():
            figure(name, value)
    with bench_lab(base_port=BASE_PORT, pg_prefix=PG_PREFIX) as lab:
        for name, value in killed_holder(lab).items():
            figure(name, value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
