"""Crash sweep (issue 15 §2): SIGKILL a switch at each step boundary, re-run, count repeats.

For each flow swept, a baseline run on a fresh lab gives the side effects a whole run
makes (the lab's request log: every state-changing call it judged a write, less the run
records and leases). The crash points are the boundaries between groups of like calls
(four concurrent scale-ups are one group): for each, on a fresh lab, the run is launched,
the flow's processes are SIGKILLed as soon as the lab has logged the first call of that
group, and the same incident is launched again. A re-run must complete, and no call may
happen more often than in the baseline. CDN purges are counted by Compute operation, not
by call: a repeat carries the first call's requestId, and Compute answers it with the first
operation (the lab does too), so the invalidation happens once.

Figures (``name=value``):
- crash_points: the points tried, over all flows swept;
- duplicate_side_effects: calls beyond the baseline's count, summed (goal 0);
- crash_reruns_incomplete: re-runs that did not complete (goal 0);
- crash_refences_before_promotion: fence updates a re-run made again because the run was
  killed before its promotion, so its crash hook lifted the fence (not duplicates: see
  ``duplicates``);
- crash_rerun_max_s: the slowest re-run, launch to end (it waits out the killed run's
  Prefect slot lease: 60 s, Prefect's minimum);
- crash_<flow>_points: the points tried per flow, and a line per point that went wrong.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

from bench.labctl import BenchLab, bench_lab, figure
from lab.prefect_api import flow_processes
from lifeboat import runtime
from lifeboat.topology import load_topology

BASE_PORT = int(os.environ.get("LIFEBOAT_RELIABILITY_CRASH_PORT", "25780"))
PG_PREFIX = os.environ.get("LIFEBOAT_RELIABILITY_CRASH_PG_PREFIX", "127.0.25.")


FENCE = "(ingress)"  # the suffix of a Run update that sets or lifts a fence


def effect(entry: dict[str, Any]) -> str | None:
    """A logged call as a side effect's key, or None when it changes nothing that matters
    here: reads, refused calls, run records and the region lease (rewritten by design).
    A Run update of the ingress (a fence set or lifted) is told apart from a scaling one."""
    if not entry["write"] or entry["status"] >= 400 or entry["api"] == "webhooks":
        return None
    if entry["api"] == "storage" and "dr-records" in entry["path"]:
        return None
    key = f"{entry['api']} {entry['method']} {entry['path']}"
    mask = ",".join(parse_qs(entry.get("query") or "").get("updateMask", []))
    return f"{key} {FENCE}" if entry["api"] == "run" and "ingress" in mask else key


def purges(lab: BenchLab) -> list[str]:
    """The CDN invalidations Compute holds, one key per operation.

    A purge is sent with a requestId stable per incident and path, and Compute answers a
    repeat with the first request's operation: a re-run may repeat the call, and the
    effect (an invalidation) still happens once. So purges are counted by operation,
    not by call."""
    topo = runtime.topology("lab")
    listing = runtime.clients("lab").global_operations.list(project=topo.cdn.project)
    return [
        f"compute invalidateCache {op.target_link}"
        for op in listing
        if "invalidateCache" in (op.operation_type or "")
    ]


def _by_operation(keys: list[str]) -> list[str]:
    return [k for k in keys if not (k.startswith("compute POST") and "invalidateCache" in k)]


def effects(lab: BenchLab, since: int) -> list[str]:
    """The calls with effect since ``since``, in order (purges as calls)."""
    keys = (effect(e) for e in lab.requests(since=since))
    return [k for k in keys if k is not None]


def outcome(lab: BenchLab, since: int) -> list[str]:
    """What changed since ``since``: the calls with effect, purges counted by operation."""
    return _by_operation(effects(lab, since)) + purges(lab)


def groups(sequence: list[str]) -> list[int]:
    """Indexes where a new group of like calls starts (same API and verb as the one
    before: concurrent calls to several services are one group)."""
    starts = []
    for i, key in enumerate(sequence):
        if i == 0 or _kind(key) != _kind(sequence[i - 1]):
            starts.append(i)
    return starts


def _kind(key: str) -> tuple[str, ...]:
    return (*key.split(" ")[:2], str(key.endswith(FENCE)))


def duplicates(baseline: list[str], seen: list[str], *, promotion_started: bool = True) -> int:
    """Calls beyond the baseline's count of the same call.

    Killed before its promotion started, a run's fence is lifted by its crash hook (its
    database is still the primary, so the region serves again while no run acts) and the
    re-run fences again: those fence updates are the price of not leaving a region dark,
    counted by ``refences``, not here. Once the promotion has started, every one counts.
    """
    extra = Counter(seen) - Counter(baseline)
    return sum(extra.values()) - (0 if promotion_started else refences(baseline, seen))


def refences(baseline: list[str], seen: list[str]) -> int:
    """Fence updates (set or lift) beyond the baseline's count."""
    extra = Counter(seen) - Counter(baseline)
    return sum(n for key, n in extra.items() if key.endswith(FENCE))


# The scenarios swept: a failover after the primary region went down (the fence is best
# effort and finds nothing to fence), a planned failover from a healthy primary (fenced,
# waits for receipt, lifts after the verification), and a failback after a failover.
FLOWS = {"failover": "failover", "failover_graceful": "failover", "failback": "failback"}


def fresh_lab(lab: BenchLab, flow: str) -> None:
    """A lab as the flow needs it: the primary down for a failover, up for a graceful one;
    after a failover, with the primary back, for a failback."""
    lab.reset()
    primary = load_topology("lab").regions.primary.name
    if flow == "failover_graceful":
        return
    lab.outage(primary, True)
    if flow == "failback":
        done = lab.run("failover/lab", {"reason": "before failback", "approve": True})
        if done["state"]["type"] != "COMPLETED":
            raise RuntimeError(f"the failover before the failback failed: {done['state']}")
        lab.outage(primary, False)


def _launch(lab: BenchLab, flow: str, incident: str) -> str:
    parameters: dict[str, Any] = {"reason": "crash sweep", "incident_id": incident}
    if FLOWS[flow] == "failover":
        parameters["approve"] = True  # no pause before the lock: the sweep is unattended
    return str(lab.api.launch(f"{FLOWS[flow]}/lab", parameters)["id"])


def baseline(lab: BenchLab, flow: str) -> tuple[list[str], list[str]]:
    """A whole run's calls with effect, in order (the crash points), and its outcome."""
    fresh_lab(lab, flow)
    since = lab.last_seq()
    final = lab.api.wait(_launch(lab, flow, f"CRASH-{flow}-BASE"), timeout=900)
    if final["state"]["type"] != "COMPLETED":
        raise RuntimeError(f"the baseline {flow} failed: {final['state']}")
    return effects(lab, since), outcome(lab, since)


def crash_at(
    lab: BenchLab, flow: str, point: int, base: list[str], base_outcome: list[str]
) -> dict[str, Any]:
    """Kill the run once the lab has logged effect ``point`` (0-based), then re-run."""
    fresh_lab(lab, flow)
    since = lab.last_seq()
    incident = f"CRASH-{flow}-{point:02d}"
    run_id = _launch(lab, flow, incident)
    deadline = time.monotonic() + 600
    while len(effects(lab, since)) <= point:
        if lab.api.state(run_id) in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            raise RuntimeError(f"{flow} ended before effect {point}: {base[point]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{flow} never reached effect {point}: {base[point]}")
        time.sleep(0.05)
    for pid in flow_processes(run_id):
        os.kill(pid, signal.SIGKILL)
    killed_after = effects(lab, since)
    lab.api.wait(run_id, timeout=300)  # the worker reports the crash
    started = time.monotonic()
    final = lab.api.wait(_launch(lab, flow, incident), timeout=900)
    seen = outcome(lab, since)
    promoting = any("promoteReplica" in key for key in killed_after)
    return {
        "point": point,
        "killed_after": killed_after[-1],
        "completed": final["state"]["type"] == "COMPLETED",
        "message": str(final["state"].get("message") or "")[:300],
        "rerun_s": time.monotonic() - started,
        "duplicates": duplicates(base_outcome, seen, promotion_started=promoting),
        "refences": 0 if promoting else refences(base_outcome, seen),
        "extra": sorted((Counter(seen) - Counter(base_outcome)).elements()),
    }


def sweep(lab: BenchLab, flow: str) -> list[dict[str, Any]]:
    base, base_outcome = baseline(lab, flow)
    figure(f"crash_{flow}_baseline_effects", len(base_outcome))
    results = []
    for point in groups(base):
        result = crash_at(lab, flow, point, base, base_outcome)
        results.append(result)
        if result["duplicates"] or not result["completed"]:
            print(f"# {flow} killed after {result['killed_after']}: {result}", flush=True)
    figure(f"crash_{flow}_points", len(results))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", nargs="*", default=list(FLOWS), choices=list(FLOWS))
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    with bench_lab(base_port=BASE_PORT, pg_prefix=PG_PREFIX) as lab:
        for flow in args.flows:
            results += sweep(lab, flow)
    figure("crash_points", len(results))
    figure("duplicate_side_effects", sum(r["duplicates"] for r in results))
    figure("crash_reruns_incomplete", sum(not r["completed"] for r in results))
    figure("crash_refences_before_promotion", sum(r["refences"] for r in results))
    figure("crash_rerun_max_s", max((r["rerun_s"] for r in results), default=0.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
