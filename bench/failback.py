"""A failback's planned outage against the promotion it cannot do without.

After a failover (a us-central1 outage, then the region back), the failback deployment
runs through the Prefect server. Public traffic gets nothing from the moment its fence
holds until verification passes through the public path: the record's outage_seconds.

- failback_s: the failback run, start to end (it also rebuilds both replicas, outside
  the outage);
- failback_outage_s: the record's outage_seconds;
- promotion_s: the lab's promotion latency x time_scale, the one step the outage must hold;
- failback_outage_over_promotion: the two above (issue 19's goal: <= 1.2);
- outage_<step>_s: the seconds of each step inside the outage, where the rest goes.

Usage: ``python -m bench.failback``.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from bench.failover import run_failover, run_record
from bench.labctl import BenchLab, bench_lab, figure
from lifeboat.topology import load_topology


def failback_record(incident: str) -> dict[str, Any]:
    return run_record("failback", incident)


def _at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def run_failback(lab: BenchLab) -> dict[str, float]:
    """A failover, the primary region back, then the measured failback."""
    run_failover(lab, "before failback")
    lab.outage(load_topology("lab").regions.primary.name, False)
    incident = "BENCH-FAILBACK"
    parameters = {"reason": "bench", "operator": "bench", "incident_id": incident}
    final = lab.run("failback/lab", parameters)
    if final["state"]["type"] != "COMPLETED":
        raise RuntimeError(f"failback did not complete: {final['state']}")
    record = failback_record(incident)
    model = lab.latency()
    real = model["real_seconds"]
    # The promotion as Cloud SQL runs it: queued (PENDING), then promoting.
    promotion = float(real["sql.pending"] + real["sql.promote"]) * float(model["time_scale"])
    steps = record["steps"]
    held = _at(next(s for s in steps if s["name"] == "fence-secondary")["ended_at"])
    verified = _at(next(s for s in steps if s["name"] == "verify")["ended_at"])
    inside = {
        s["name"]: float(s["seconds"]) for s in steps if held <= _at(s["started_at"]) <= verified
    }
    figures = {
        "failback_s": float(final["wall_s"]),
        "failback_outage_s": float(record["outage_seconds"]),
        "promotion_s": promotion,
        "failback_outage_over_promotion": float(record["outage_seconds"]) / promotion,
    }
    for name, seconds in inside.items():
        figures[f"outage_{name.replace('-', '_')}_s"] = seconds
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    with bench_lab() as lab:
        for name, value in run_failback(lab).items():
            figure(name, value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
