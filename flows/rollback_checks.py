"""What a rollback does after its switch: seed 004's ``post_rollback`` checks.

- ``cdn-purge``: the CDN paths the services serve, as the failover purges them, so users
  get the rolled-back release and not a cached reply of the bad one;
- ``integrity``: the topology's integrity queries (seed 004 ``data_integrity_checks``) on
  the instance that takes writes now, as backups and drills run them;
- ``validation``: the strategy's validation period (seed 004: 5 min traffic, 10 min
  service) judged against ``success_criteria`` (lifeboat/rollback_rules.py).

They run after the region lock is released: a 10-minute watch must not keep a failover
waiting, and none of them changes what serves.
"""

from __future__ import annotations

import time

from prefect import get_run_logger

from flows.resume import request_id
from lifeboat import monitoring, runtime
from lifeboat.record import RunRecord
from lifeboat.rollback_rules import Validation, judge_validation
from lifeboat.topology import RegionRole, RollbackStrategy, Topology
from tasks.cdn import cdn_invalidate
from tasks.cloud_sql import sql_live_primary
from tasks.cloud_sql_backups import sql_integrity_counts
from tasks.health import Target, health_probe_rounds
from tasks.metrics import metrics_sample_services

# Monitoring shows a 60-second sample up to 180 s after it ends (tasks/metrics.py): after
# the period, wait this long so that the period's last sample is in the reply.
MONITORING_SETTLE_S = monitoring.MIN_ALIGNMENT_S + 180


def purge_cdn(topo: Topology, record: RunRecord) -> None:
    with record.step("cdn-purge") as step:
        purges = [
            cdn_invalidate(
                topo.environment, topo.cdn.host, path, request_id=request_id(record, path)
            )
            for path in topo.cdn.paths
        ]
        step.detail = ", ".join(f"{p.path} ({p.operation})" for p in purges)


def check_integrity(topo: Topology, record: RunRecord) -> dict[str, int]:
    """Every integrity query answers on the live primary; the counts go to the record."""
    with record.step("integrity") as step:
        if not topo.cloud_sql.integrity_queries:
            step.outcome = "skipped"
            step.detail = "no integrity queries in the topology"
            return {}
        live = sql_live_primary(topo.environment)
        counts = sql_integrity_counts(
            topo.environment, live.project, live.name, topo.cloud_sql.databases[0]
        )
        step.detail = f"{live.name}: " + ", ".join(f"{k}={v}" for k, v in counts.items())
    return counts


def validate(
    topo: Topology,
    record: RunRecord,
    role: RegionRole,
    strategy: RollbackStrategy,
    moved: list[str],
) -> Validation:
    """Watch the moved services for the strategy's validation period and judge it.

    The checks and journeys are probed in rounds spread over the period; error rate and
    p95 come from Monitoring over the period once Monitoring shows all of it. The period
    is in the world's seconds; on a lab its clock runs ``time_scale`` times faster.
    """
    env = topo.environment
    criteria = topo.rollback_validation
    period_s = topo.rollback_strategies.of(strategy).validation_period_s
    scale = runtime.clock_scale(env)
    region = topo.regions.by_role(role).name
    with record.step("validation") as step:
        started = time.monotonic()
        rounds = criteria.rounds
        tally = health_probe_rounds(
            env,
            Target(role.value),
            moved,
            [(j.path, j.expected_status) for j in criteria.journeys],
            rounds,
            period_s * scale / max(1, rounds - 1),
        )
        # The rounds end at the period's end; Monitoring shows it a while later.
        settle_s = MONITORING_SETTLE_S * scale
        get_run_logger().info("waiting %.1f s for Monitoring to show the period", settle_s)
        time.sleep(settle_s)
        # The time since the period began, in the world's seconds, less one sample
        # period: Monitoring counts a 60-s sample in a window when the sample ends inside
        # it, so the sample the period began in (with the errors that started the
        # rollback, or the verify step's cold start) stays out.
        elapsed_s = (time.monotonic() - started) / scale
        window_s = round(max(monitoring.MIN_ALIGNMENT_S, elapsed_s - monitoring.MIN_ALIGNMENT_S), 1)
        figures = metrics_sample_services(env, region, window_s)
        verdict = judge_validation(
            criteria,
            period_s,
            tally.checks_passed,
            tally.checks_run,
            {name: figures[name] for name in moved if name in figures},
            tally.journeys_passed,
            tally.journeys_run,
        )
        record.validation = verdict.model_dump(mode="json")
        record.validation["failures"] = tally.failures
        step.detail = f"{period_s:.0f} s: " + (
            "passed" if verdict.passed else "; ".join(verdict.failures())
        )
    return verdict
