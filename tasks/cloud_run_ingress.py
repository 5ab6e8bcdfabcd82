"""Cloud Run ingress: fence a service from public traffic, and lift the fence.

A service at min 0 still serves (it scales from zero), so scaling is no fence. Ingress
is: with ``INGRESS_TRAFFIC_INTERNAL_ONLY`` neither the internet nor the external load
balancer reaches the service (run/docs/securing/ingress). It is a service-level field,
so setting it creates no revision.

The fence is written on the service itself: two annotations name the run that set it
and the ingress it found. Whoever lifts it (the run, its failure or cancellation hook, a
resumed run) restores exactly that value, and a second fence never overwrites it.
"""

from __future__ import annotations

from google.cloud import run_v2
from prefect import get_run_logger
from pydantic import BaseModel

from tasks.cloud_run import service_path
from tasks.retrying import calling, cloud_task
from tasks.run_rollout import update_and_wait, wait_settled

FENCE_INGRESS = "INGRESS_TRAFFIC_INTERNAL_ONLY"
FENCED_BY = "lifeboat.dev/fenced-by"
INGRESS_BEFORE = "lifeboat.dev/ingress-before"
INGRESS_MASK = ["ingress", "annotations"]


class FenceResult(BaseModel):
    service: str
    region: str
    changed: bool
    before: str  # ingress before this call
    after: str  # ingress after it
    fenced_by: str = ""  # who holds the fence now ("" once lifted)

    def describe(self) -> str:
        text = f"{self.region}/{self.service} ingress {self.before} → {self.after}"
        return text if self.changed else text + " (already)"


def _ingress_name(service: run_v2.Service) -> str:
    return str(run_v2.IngressTraffic(service.ingress).name)


def _apply(environment: str, service: run_v2.Service) -> run_v2.Service:
    return update_and_wait(environment, service, INGRESS_MASK)


@cloud_task(timeout_seconds=900, task_run_name="fence-{service}-{region}")
def run_fence_ingress(
    environment: str, project: str, region: str, service: str, owner: str
) -> FenceResult:
    """Refuse public traffic to a service: ingress internal-only, and wait for the rollout.

    Args:
        environment: the topology to use.
        project: the service's project.
        region: the service's region.
        service: the Cloud Run service name.
        owner: who sets the fence (``failback/<incident>/<flow run>``), kept on the service.

    Returns:
        The ingress before and after, and whether this call changed it.

    Idempotent: a service already fenced (by this run or by a killed run of the same
    incident) keeps its fence and the ingress recorded when it was first set.
    """
    logger = get_run_logger()
    name = service_path(project, region, service)
    with calling("fence-ingress", name):
        current = wait_settled(environment, name)
        before = _ingress_name(current)
        holder = current.annotations.get(FENCED_BY, "")
        if holder:
            logger.info("%s already fenced by %s (ingress %s)", name, holder, before)
            return FenceResult(
                service=service,
                region=region,
                changed=False,
                before=current.annotations.get(INGRESS_BEFORE, before),
                after=before,
                fenced_by=holder,
            )
        current.annotations[FENCED_BY] = owner
        current.annotations[INGRESS_BEFORE] = before
        current.ingress = run_v2.IngressTraffic.__members__[FENCE_INGRESS]
        logger.info("fencing %s: ingress %s → %s", name, before, FENCE_INGRESS)
        done = _apply(environment, current)
    return FenceResult(
        service=service,
        region=region,
        changed=True,
        before=before,
        after=_ingress_name(done),
        fenced_by=owner,
    )


@cloud_task(timeout_seconds=900, task_run_name="lift-fence-{service}-{region}")
def run_lift_ingress_fence(
    environment: str, project: str, region: str, service: str
) -> FenceResult:
    """Lift a Lifeboat fence: put back the ingress recorded when it was set.

    Returns:
        The ingress before and after, and whether this call changed it.

    Idempotent: a service with no Lifeboat fence is left alone; the fence's own record
    (its annotations) says which ingress to restore, so a resumed run or a hook restores
    the same value the fencing run found.
    """
    logger = get_run_logger()
    name = service_path(project, region, service)
    with calling("lift-ingress-fence", name):
        current = wait_settled(environment, name)
        before = _ingress_name(current)
        if FENCED_BY not in current.annotations:
            return FenceResult(
                service=service, region=region, changed=False, before=before, after=before
            )
        restore = current.annotations.get(INGRESS_BEFORE) or "INGRESS_TRAFFIC_ALL"
        del current.annotations[FENCED_BY]
        if INGRESS_BEFORE in current.annotations:
            del current.annotations[INGRESS_BEFORE]
        current.ingress = run_v2.IngressTraffic.__members__[restore]
        logger.info("lifting the fence of %s: ingress %s → %s", name, before, restore)
        done = _apply(environment, current)
    return FenceResult(
        service=service, region=region, changed=True, before=before, after=_ingress_name(done)
    )
