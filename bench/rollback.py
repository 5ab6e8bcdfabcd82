"""A traffic rollback (seed 004's blue/green switch) against the Cloud Run update it waits on.

Every service gets a blue/green release; then the rollback deployment runs through the
Prefect server with ``strategy: traffic``, and its record's ``execution`` gives the switch's
measured time (issue 18 §5).

- rollback_s: the rollback run, start to end (validation period included);
- rollback_switch_s: the switch, as the record measured it against the budget;
- traffic_update_s: the lab's Cloud Run update latency x time_scale, the one call each
  service's switch waits on (the services switch concurrently);
- rollback_switch_over_traffic_update: the two above;
- rollback_budget_s: the seed's 30 s x time_scale, and rollback_within_budget (1 or 0).

Usage: ``python -m bench.rollback``.
"""

from __future__ import annotations

import argparse

from bench.failover import run_record
from bench.labctl import BenchLab, bench_lab, figure
from lifeboat import runtime
from lifeboat.topology import load_topology
from reliability.releases import blue_green_release


def run_rollback(lab: BenchLab) -> dict[str, float]:
    topo = load_topology("lab")
    region = topo.regions.primary
    client = runtime.clients("lab").run_services
    for service in topo.services:
        name = f"projects/{region.project}/locations/{region.name}/services/{service.name}"
        blue_green_release(client, name, "v2")
    incident = "BENCH-ROLLBACK"
    parameters = {
        "reason": "bench",
        "operator": "bench",
        "incident_id": incident,
        "strategy": "traffic",
    }
    final = lab.run("rollback/lab", parameters)
    if final["state"]["type"] != "COMPLETED":
        raise RuntimeError(f"rollback did not complete: {final['state']}")
    execution = run_record("rollbacks", incident)["execution"]
    model = lab.latency()
    scale = float(model["time_scale"])
    update = float(model["real_seconds"]["run.update"]) * scale
    switch = float(execution["measured_s"])
    return {
        "rollback_s": float(final["wall_s"]),
        "rollback_switch_s": switch,
        "traffic_update_s": update,
        "rollback_switch_over_traffic_update": switch / update,
        "rollback_budget_s": float(execution["budget_s"]) * scale,
        "rollback_within_budget": 1.0 if execution["within_budget"] else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    with bench_lab() as lab:
        for name, value in run_rollback(lab).items():
            figure(name, value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
