"""Cloud Run: scale a region's services, read revisions and move traffic."""

from __future__ import annotations

from google.cloud import run_v2
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from tasks.polling import wait_until
from tasks.retrying import calling, cloud_task


class Scaling(BaseModel):
    min: int
    max: int


class ScaleResult(BaseModel):
    service: str
    region: str
    changed: bool
    before: Scaling
    after: Scaling


def service_path(project: str, region: str, service: str) -> str:
    return f"projects/{project}/locations/{region}/services/{service}"


def _scaling(service: run_v2.Service) -> Scaling:
    scaling = service.template.scaling
    return Scaling(min=scaling.min_instance_count, max=scaling.max_instance_count)


@cloud_task(timeout_seconds=900, task_run_name="scale-{service}-{region}")
def run_scale_service(
    environment: str,
    project: str,
    region: str,
    service: str,
    min_instances: int,
    max_instances: int,
) -> ScaleResult:
    """Set a service's instance bounds and wait for the rollout.

    Args:
        environment: the topology to use.
        project: the service's project.
        region: the service's region.
        service: the Cloud Run service name.
        min_instances: minimum instances to keep warm.
        max_instances: maximum instances.

    Returns:
        The scaling before and after, and whether this call changed it.

    Idempotent: reads the service first; when it already has these bounds it only waits
    for a rollout still in progress (a resumed run) and changes nothing.
    """
    logger = get_run_logger()
    factory = runtime.clients(environment)
    name = service_path(project, region, service)
    target = Scaling(min=min_instances, max=max_instances)
    with calling("scale-service", name):
        current = factory.run_services.get_service(
            name=name, timeout=runtime.call_timeout(environment)
        )
        before = _scaling(current)
        if before == target:
            if current.reconciling:
                wait_until(
                    lambda: (
                        None
                        if factory.run_services.get_service(
                            name=name, timeout=runtime.call_timeout(environment)
                        ).reconciling
                        else True
                    ),
                    timeout=800,
                    interval=factory.poll_interval,
                    what=f"rollout of {name}",
                )
            logger.info("%s already scaled to %s..%s", name, target.min, target.max)
            return ScaleResult(
                service=service, region=region, changed=False, before=before, after=before
            )
        current.template.scaling.min_instance_count = min_instances
        current.template.scaling.max_instance_count = max_instances
        operation = factory.run_services.update_service(
            service=current, timeout=runtime.call_timeout(environment)
        )
        logger.info(
            "scaling %s from %s..%s to %s..%s", name, before.min, before.max, target.min, target.max
        )
        operation.result(timeout=800, polling=factory.polling)  # type: ignore[no-untyped-call]
    return ScaleResult(service=service, region=region, changed=True, before=before, after=target)


class ServiceState(BaseModel):
    service: str
    region: str
    exists: bool
    scaling: Scaling | None = None
    ready: bool = False
    serving: dict[str, int] = {}


@cloud_task(timeout_seconds=60, task_run_name="describe-{service}-{region}")
def run_describe_service(environment: str, project: str, region: str, service: str) -> ServiceState:
    """Read a service's scaling, readiness and traffic split.

    Idempotent: a read.
    """
    from google.api_core import exceptions as gexc

    factory = runtime.clients(environment)
    name = service_path(project, region, service)
    with calling("describe-service", name):
        try:
            got = factory.run_services.get_service(
                name=name, timeout=runtime.call_timeout(environment)
            )
        except gexc.NotFound:
            return ServiceState(service=service, region=region, exists=False)
    ready = got.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    serving = {t.revision: t.percent for t in got.traffic_statuses if t.percent}
    return ServiceState(
        service=service,
        region=region,
        exists=True,
        scaling=_scaling(got),
        ready=ready,
        serving=serving,
    )
