"""Failover against its critical path, and the orchestration overhead around it.

- critical_path_s: from the running lab's latency model x time_scale, the longest chain
  of necessary operations: max(Cloud Run roll + update, replica promotion) + DNS change + the
  CDN purge's effect (verification through the front door proves it; the purge's
  operation, RUNNING for 10 min at Google, is not waited for).
- failover_s: the real failover deployment through the Prefect server (a us-central1
  outage first, so no approval pause), from the flow run's start to the end of its
  verification (the record's step); after_verified_s: the rest of the run (the new
  primary's backups and PITR, which restart it), not part of the recovery.
- overhead_s: failover_s - critical_path_s: orchestration, polling granularity, checks.
- launch_to_end_s and launch_to_end_over_critical_path: from the API call that launches
  the run to its verification, what an operator or incident tool waits; and its parts:
  launch_to_pickup_s (the worker's poll: Scheduled to Pending), pickup_to_running_s (the
  process spawn, the imports, the engine: Pending to Running) and running_to_first_task_s,
  measured after a dry run has warmed the worker up (first_launch_to_pickup_s: its
  pick-up).
- purge_operation_running_at_end: the purge operation was still RUNNING when the
  failover completed (recovery waited for the effect, not for DONE), and
  purge_operation_done_s: when it was DONE, measured after the run.

Usage: ``python -m bench.failover`` (PostgreSQL-backed server) or ``--sqlite``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from google.cloud import compute_v1

from bench.labctl import BenchLab, bench_lab, figure, records_bucket, seconds_between
from lifeboat import runtime
from lifeboat.topology import load_topology


def critical_path_s(lab: BenchLab) -> float:
    model = lab.latency()
    real: dict[str, float] = model["real_seconds"]
    scale = float(model["time_scale"])
    # Services scale concurrently: one update's time, after the roll (one update) that gives
    # the env-var service the new secret. The promotion runs beside both.
    connect_and_scale = 2 * real["run.update"]
    # The promotion queues (PENDING) before it runs. After the DNS change is done, users'
    # resolvers (the lab's front door) keep the old answer for up to their cache time,
    # while the purge takes effect: the longer of the two, at worst.
    promotion = real["sql.pending"] + real["sql.promote"]
    return (
        max(connect_and_scale, promotion)
        + real["dns.change"]
        + max(real["cdn.invalidate_effect"], real["dns.resolver_cache"])
    ) * scale


def _purge_operations(environment: str) -> list[compute_v1.Operation]:
    topo = runtime.topology(environment)
    listing = runtime.clients(environment).global_operations.list(
        request=compute_v1.ListGlobalOperationsRequest(project=topo.cdn.project)
    )
    return [op for op in listing if "invalidateCache" in (op.operation_type or "")]


def launch_parts(lab: BenchLab, run: dict[str, Any]) -> dict[str, float]:
    """Where the time from the launch to the first task goes, from the server's states."""
    at = {s["type"]: s["timestamp"] for s in reversed(lab.api.states(run["id"]))}
    first_task = min(t["start_time"] for t in lab.api.task_runs(run["id"]) if t["start_time"])
    return {
        "launch_to_pickup_s": seconds_between(run["created"], at["PENDING"]),
        "pickup_to_running_s": seconds_between(at["PENDING"], at["RUNNING"]),
        "running_to_first_task_s": seconds_between(at["RUNNING"], first_task),
    }


def run_failover(lab: BenchLab, label: str = "") -> dict[str, Any]:
    """One failover after a primary outage; returns its figures (also printed)."""
    topo = load_topology("lab")
    lab.outage(topo.regions.primary.name, True)
    launched = time.monotonic()
    # Pre-approved: with checks reduced to /health and /version (the scale bench) the
    # outage fails only one, and a human approval is no part of the critical path.
    incident = f"BENCH-FO-{time.time_ns()}"
    parameters = {
        "reason": f"bench {label}".strip(),
        "operator": "bench",
        "approve": True,
        "incident_id": incident,
    }
    final = lab.run("failover/lab", parameters)
    if final["state"]["type"] != "COMPLETED":
        raise RuntimeError(f"failover did not complete: {final['state']}")
    ended = time.monotonic()
    ops = _purge_operations("lab")
    running_at_end = bool(ops) and all(op.status != compute_v1.Operation.Status.DONE for op in ops)
    critical = critical_path_s(lab)
    # Recovery ends with the verification; what follows (the new primary's backups, the
    # restart PITR needs) is not part of it, and is shown apart.
    steps = run_record("failover", incident)["steps"]
    verified = next(s for s in steps if s["name"] == "verify")["ended_at"]
    after = seconds_between(verified, final["end_time"])
    recovery = float(final["wall_s"]) - after
    figures = {
        "failover_s": recovery,
        "critical_path_s": critical,
        "failover_over_critical_path": recovery / critical,
        "overhead_s": recovery - critical,
        "launch_to_end_s": ended - launched - after,
        "launch_to_end_over_critical_path": (ended - launched - after) / critical,
        **launch_parts(lab, final),
        "after_verified_s": after,
        "purge_operation_running_at_end": int(running_at_end),
    }
    return figures


def run_record(flow: str, incident: str) -> dict[str, Any]:
    """A run's record, as the flow wrote it to the records bucket."""
    blob = records_bucket().blob(f"{flow}/{incident}.json")
    record: dict[str, Any] = json.loads(blob.download_as_bytes())
    return record


def wait_purge_done(lab: BenchLab, since: float, timeout: float = 900) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ops = _purge_operations("lab")
        if ops and all(op.status == compute_v1.Operation.Status.DONE for op in ops):
            return time.monotonic() - since
        time.sleep(1)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", action="store_true", help="Prefect server on SQLite")
    parser.add_argument("--no-purge-wait", action="store_true")
    args = parser.parse_args(argv)
    db = "sqlite" if args.sqlite else "postgresql"
    with bench_lab(prefect_db=db) as lab:
        suffix = "_sqlite" if args.sqlite else ""
        # A worker in service has polled for days; a new one's first poll waits for its
        # start-up (2.5-3.2 s here). A dry run first, so the launch figures are a running
        # worker's; the first pick-up is printed too.
        warmup = lab.run("failover/lab", {"reason": "bench warm-up", "dry_run": True})
        figure("first_launch_to_pickup_s" + suffix, launch_parts(lab, warmup)["launch_to_pickup_s"])
        started = time.monotonic()
        figures = run_failover(lab, db)
        for name, value in figures.items():
            figure(name + suffix, value)
        if not args.no_purge_wait:
            done = wait_purge_done(lab, started)
            figure("purge_operation_done_s" + suffix, done if done is not None else "never")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
