"""The seeds' failover (seed 004's disaster-recovery.sh), step by step, against Lifeboat's.

The same tasks, in the script's order and strictly one after another: DNS, each service
scaled and waited for in turn, the promotion, the CDN purge, then the script's check
loop with its fixed 30 s (x time_scale) sleep between attempts. Figures:
- sequential_s and lifeboat_failover_s, measured in the same lab one after the other;
- sequential_over_lifeboat: their ratio;
- sequential_bound: the most that ratio can be under the latency model: the sequential
  sum (DNS + n x Run update + promotion + purge effect) ÷ the critical path;
- ratio_over_bound: goal ≥ 0.95.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_ALLOW_EPHEMERAL_MODE,
    temporary_settings,
)

from bench.failover import critical_path_s, run_failover
from bench.labctl import BenchLab, bench_lab, figure
from lifeboat.topology import RegionRole, load_topology
from tasks.cdn import cdn_invalidate
from tasks.cloud_run import run_scale_service
from tasks.cloud_sql import sql_promote_replica
from tasks.dns import dns_switch_record
from tasks.health import Target, probe

SEED_SLEEP_S = 30
SEED_ATTEMPTS = 10


@flow(name="seed-sequential-failover")
def seed_failover(time_scale: float) -> float:
    env = "lab"
    topo = load_topology(env)
    secondary, replica = topo.regions.secondary, topo.cloud_sql.replica
    started = time.monotonic()
    for rec in topo.dns.records:
        dns_switch_record(
            env, rec.name, rec.rrdatas[RegionRole.secondary], rec.failover_ttl, rec.type
        )
    for svc in topo.services:
        run_scale_service(
            env,
            secondary.project,
            secondary.name,
            svc.name,
            svc.active_scaling.min,
            svc.active_scaling.max,
        )
    sql_promote_replica(env, replica.project, replica.instance)
    for path in topo.cdn.paths:
        cdn_invalidate(env, topo.cdn.host, path, request_id=f"seed-{time.time_ns()}")
    for _ in range(SEED_ATTEMPTS):
        if probe(env, Target.public).all_ok:
            return time.monotonic() - started
        time.sleep(SEED_SLEEP_S * time_scale)
    raise RuntimeError("the seed's verification never passed")


def bound(lab: BenchLab, services: int) -> float:
    model = lab.latency()
    real: dict[str, float] = model["real_seconds"]
    scale = float(model["time_scale"])
    promotion = real["sql.pending"] + real["sql.promote"]
    total = real["dns.change"] + services * real["run.update"] + promotion
    edge = max(real["cdn.invalidate_effect"], real["dns.resolver_cache"])
    return (total + edge) * scale / critical_path_s(lab)


def main() -> int:
    topo = load_topology("lab")
    with bench_lab() as lab:
        lifeboat = run_failover(lab, "vs seed")["failover_s"]
        lab.reset()
        lab.outage(topo.regions.primary.name, True)
        scale = float(lab.latency()["time_scale"])
        # Settings are read when prefect is imported, before the bench lab existed.
        with temporary_settings(
            updates={
                PREFECT_API_URL: lab.endpoints["prefect_api_url"],
                PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: False,
            }
        ):
            sequential = seed_failover(scale)
        ratio, most = sequential / lifeboat, bound(lab, len(topo.services))
        figure("lifeboat_failover_s", lifeboat)
        figure("sequential_s", sequential)
        figure("sequential_over_lifeboat", ratio)
        figure("sequential_bound", most)
        figure("ratio_over_bound", ratio / most)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
