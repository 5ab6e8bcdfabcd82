"""watch: sample each service's health, error rate and latency; say when a rollback is due.

Seed 004's automatic rollback triggers, each on its own window and with its own strategy
(topology ``rollback_triggers``): 3 health-check failures in 5 min → traffic rollback, an
error rate above 5% over 10 min → service rollback, a p95 latency above 5 s over 15 min →
traffic rollback, availability under 99% over 30 min → service rollback
(lifeboat/rollback_rules.py decides). When any is crossed, the flow emits one
``lifeboat.watch.threshold-crossed`` event for the environment naming the services, the
strategy, and the trigger that decided it with its figure against the threshold; the
automation on the rollback deployment (deployments/prefect.yaml) starts ``rollback`` with
that strategy.

It watches the region that serves users. Unless told, it reads the DNS records and takes
the region whose ``rrdatas`` they hold: after a failover, the secondary. Error rate,
availability and latency come from Cloud Monitoring (tasks/metrics.py); failed health
checks from its own probes of that region (tasks/health.py ``health_count_failures`` says
why).

It runs on a one-minute schedule rather than as a long-lived loop: each sample is a
short run the UI shows, a crash loses one sample instead of the whole watch, and no
worker slot stays taken.

A sample that crosses a threshold, or fails, writes a run record: it is the evidence for
the rollback it starts. A quiet sample writes none; its Prefect run is its trace, and
1,440 quiet records a day would bury the ones that matter.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.events import emit_event
from pydantic import Field

from flows.evidence import publish_run
from flows.launch import ENVIRONMENT_FIELD, SwitchRequest
from lifeboat import runtime
from lifeboat.rollback_rules import Breach, chosen_action, find_breaches, windows
from lifeboat.topology import RegionRole, Topology
from tasks.dns import RecordState, dns_get_record
from tasks.errors import PermanentError
from tasks.health import Target, health_count_failures
from tasks.metrics import ServiceMetrics, metrics_sample_services

EVENT = "lifeboat.watch.threshold-crossed"


@flow(name="watch")
def watch(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    region: Annotated[
        RegionRole | None,
        Field(description="The region whose services serve users now; unset: read from DNS"),
    ] = None,
) -> dict[str, Any]:
    request = SwitchRequest.validate_launch(
        environment, "rollback-threshold watch", None, "schedule", prefix="watch"
    )
    topo = runtime.topology(request.environment)
    record = request.record("watch", "scheduled", False)
    try:
        with record.step("serving-region") as step:
            role = region if region is not None else serving_role(topo, _read_records(topo))
            region_name = topo.regions.by_role(role).name
            step.detail = f"{role.value} ({region_name})"
        with record.step("sample") as step:
            breaches = _breaches(topo, region_name, role)
            step.detail = f"{len(breaches)} threshold(s) crossed in {region_name}"
    except BaseException as exc:
        record.finish("failed", str(exc)[:1000])
        publish_run(record)
        raise
    logger = get_run_logger()
    if not breaches:
        logger.info("all services of %s within thresholds", environment)
        return {"environment": environment, "breaches": []}
    strategy, decisive = chosen_action(breaches)
    dumped = [b.model_dump(mode="json") for b in breaches]
    record.after = {
        "region": region_name,
        "breaches": dumped,
        "strategy": strategy.value,
        "trigger": decisive.describe(),
    }
    record.finish("completed")
    publish_run(record, notify=False)
    summary = "; ".join(b.describe() for b in breaches)
    services = list(dict.fromkeys(b.service for b in breaches))
    logger.warning(
        "rollback thresholds crossed: %s; %s rollback for %s",
        summary,
        strategy.value,
        decisive.describe(),
    )
    emit_event(
        event=EVENT,
        resource={
            "prefect.resource.id": f"lifeboat.environment.{environment}",
            "lifeboat.environment": environment,
        },
        related=[
            {
                "prefect.resource.id": f"lifeboat.service.{environment}.{name}",
                "prefect.resource.role": "service",
            }
            for name in services
        ],
        payload={
            "services": services,
            "region": role.value,
            "summary": summary,
            "strategy": strategy.value,
            "trigger": decisive.describe(),
            "breaches": dumped,
        },
    )
    return {
        "environment": environment,
        "breaches": dumped,
        "strategy": strategy.value,
        "trigger": decisive.describe(),
    }


def _read_records(topo: Topology) -> dict[str, list[str]]:
    """The live rrdatas of every record the topology switches, read in parallel."""
    env = topo.environment
    futures = {r.name: dns_get_record.submit(env, r.name, r.type) for r in topo.dns.records}
    states: dict[str, RecordState | None] = {name: f.result() for name, f in futures.items()}
    return {name: state.rrdatas for name, state in states.items() if state is not None}


def serving_role(topo: Topology, live: dict[str, list[str]]) -> RegionRole:
    """The region every record points users at, by its rrdatas in the topology.

    Raises:
        PermanentError: a record is missing, matches neither region, or the records
            disagree (a switch half done): no region can be said to serve users.
    """
    roles: set[RegionRole] = set()
    for record in topo.dns.records:
        rrdatas = live.get(record.name)
        if rrdatas is None:
            raise PermanentError(f"watch: DNS record {record.name} {record.type} is missing")
        matching = [r for r, want in record.rrdatas.items() if sorted(want) == sorted(rrdatas)]
        if not matching:
            raise PermanentError(
                f"watch: {record.name} points at {', '.join(rrdatas)}, "
                "the addresses of neither region"
            )
        roles.update(matching)
    if len(roles) != 1:
        raise PermanentError("watch: the DNS records point at different regions")
    return roles.pop()


def _breaches(topo: Topology, region: str, role: RegionRole) -> list[Breach]:
    """Sample every window the triggers need (in parallel) and the checks, then judge."""
    rules = topo.rollback_triggers
    env = topo.environment
    futures = {w: metrics_sample_services.submit(env, region, w) for w in windows(rules)}
    probes = health_count_failures.submit(env, Target(role.value), rules.health_check_failures)
    samples: dict[float, dict[str, ServiceMetrics]] = {w: f.result() for w, f in futures.items()}
    return find_breaches(rules, [s.name for s in topo.services], probes.result(), samples)
