"""watch: sample each service's health, error rate and latency; say when a rollback is due.

Seed 004's automatic rollback triggers: 3 health-check failures in 5 min, an error rate
above 5% over 10 min, a p95 latency above 5 s over 15 min (topology
``rollback_triggers``). When any is crossed, the flow emits one
``lifeboat.watch.threshold-crossed`` event for the environment naming the services; the
automation on the rollback deployment (deployments/prefect.yaml) starts ``rollback``.

It watches the region that serves users. Unless told, it reads the DNS records and takes
the region whose ``rrdatas`` they hold: after a failover, the secondary. Error rate and
latency come from Cloud Monitoring (tasks/metrics.py); failed health checks from its own
probes of that region (tasks/health.py ``health_count_failures`` says why).

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
from pydantic import BaseModel, Field

from flows.evidence import publish_run
from flows.launch import ENVIRONMENT_FIELD, SwitchRequest
from lifeboat import runtime
from lifeboat.topology import RegionRole, Topology
from tasks.dns import RecordState, dns_get_record
from tasks.errors import PermanentError
from tasks.health import Target, health_count_failures
from tasks.metrics import ServiceMetrics, metrics_sample_services

EVENT = "lifeboat.watch.threshold-crossed"


class Breach(BaseModel):
    service: str
    metric: str
    value: float
    threshold: float
    window_s: float

    def describe(self) -> str:
        return (
            f"{self.service} {self.metric} {self.value:g} > {self.threshold:g} "
            f"over {self.window_s:.0f} s"
        )


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
    record.after = {"region": region_name, "breaches": [b.model_dump() for b in breaches]}
    record.finish("completed")
    publish_run(record, notify=False)
    summary = "; ".join(b.describe() for b in breaches)
    services = list(dict.fromkeys(b.service for b in breaches))
    logger.warning("rollback thresholds crossed: %s", summary)
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
            "breaches": [b.model_dump() for b in breaches],
        },
    )
    return {"environment": environment, "breaches": [b.model_dump() for b in breaches]}


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
    rules = topo.rollback_triggers
    env = topo.environment
    windows = sorted({rules.error_rate_window_s, rules.p95_latency_window_s})
    futures = {w: metrics_sample_services.submit(env, region, w) for w in windows}
    probes = health_count_failures.submit(env, Target(role.value), rules.health_check_failures)
    samples: dict[float, dict[str, ServiceMetrics]] = {w: f.result() for w, f in futures.items()}
    failed_checks = probes.result()
    found: list[Breach] = []
    for service in topo.services:
        failures = failed_checks.get(service.name, 0)
        if failures >= rules.health_check_failures:
            found.append(
                Breach(
                    service=service.name,
                    metric="health_check_failures",
                    value=failures,
                    threshold=rules.health_check_failures,
                    window_s=rules.health_check_window_s,
                )
            )
        errors = samples[rules.error_rate_window_s].get(service.name)
        if (
            errors is not None
            and errors.requests >= rules.min_requests
            and errors.error_rate > rules.error_rate
        ):
            found.append(
                Breach(
                    service=service.name,
                    metric="error_rate",
                    value=round(errors.error_rate, 4),
                    threshold=rules.error_rate,
                    window_s=rules.error_rate_window_s,
                )
            )
        latency = samples[rules.p95_latency_window_s].get(service.name)
        if (
            latency is not None
            and latency.requests >= rules.min_requests
            and latency.p95_s > rules.p95_latency_s
        ):
            found.append(
                Breach(
                    service=service.name,
                    metric="p95_latency_s",
                    value=round(latency.p95_s, 3),
                    threshold=rules.p95_latency_s,
                    window_s=rules.p95_latency_window_s,
                )
            )
    return found
