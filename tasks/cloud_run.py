"""Cloud Run: scale a region's services (service level), read revisions and move traffic."""

from __future__ import annotations

from google.cloud import run_v2
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from tasks.retrying import calling, cloud_task
from tasks.run_capacity import Capacity, Scaling
from tasks.run_rollout import update_and_wait, wait_settled
from tasks.run_secret_readers import ROLLED_FOR, SecretReader, read_secret_reader

SERVICE_SCALING_MASK = ["scaling.min_instance_count", "scaling.max_instance_count"]
TRAFFIC_MASK = ["traffic"]


class ScaleResult(BaseModel):
    service: str
    region: str
    changed: bool
    before: Capacity
    after: Capacity
    target: Scaling

    def describe(self) -> str:
        text = f"{self.region}/{self.service} {self.after.describe()}"
        if self.after.effective != self.target:
            text += f" (a revision-level bound keeps it from {self.target.describe()})"
        return text


def service_path(project: str, region: str, service: str) -> str:
    return f"projects/{project}/locations/{region}/services/{service}"


@cloud_task(timeout_seconds=900, task_run_name="scale-{service}-{region}")
def run_scale_service(
    environment: str,
    project: str,
    region: str,
    service: str,
    min_instances: int,
    max_instances: int,
) -> ScaleResult:
    """Set a service's service-level instance bounds and wait for the rollout.

    Service-level scaling (``Service.scaling``, sent with an update mask that names only
    its two fields) applies without creating a revision, as Google recommends
    (run/docs/configuring/min-instances); ``template.scaling`` would deploy one.

    Args:
        environment: the topology to use.
        project: the service's project.
        region: the service's region.
        service: the Cloud Run service name.
        min_instances: minimum instances to keep warm.
        max_instances: maximum instances.

    Returns:
        The capacity at both levels before and after, and whether this call changed it.

    Idempotent: reads the service first (waiting out a rollout in progress, as a resumed
    run may find); when its service-level bounds already are these it changes nothing.
    """
    logger = get_run_logger()
    name = service_path(project, region, service)
    target = Scaling(min=min_instances, max=max_instances)
    with calling("scale-service", name):
        current = wait_settled(environment, name)
        before = Capacity.of(current)
        if before.service == target:
            logger.info("%s already at service-level %s", name, target.describe())
            return ScaleResult(
                service=service,
                region=region,
                changed=False,
                before=before,
                after=before,
                target=target,
            )
        current.scaling = run_v2.ServiceScaling(
            min_instance_count=min_instances, max_instance_count=max_instances
        )
        logger.info(
            "scaling %s at service level: %s → %s", name, before.describe(), target.describe()
        )
        done = update_and_wait(environment, current, SERVICE_SCALING_MASK)
    result = ScaleResult(
        service=service,
        region=region,
        changed=True,
        before=before,
        after=Capacity.of(done),
        target=target,
    )
    if result.after.effective != target:
        logger.warning("%s: %s", name, result.describe())
    return result


class ServiceState(BaseModel):
    service: str
    region: str
    exists: bool
    scaling: Scaling | None = None  # effective bounds
    capacity: Capacity | None = None
    ready: bool = False
    serving: dict[str, int] = {}
    ingress: str = ""
    fenced_by: str = ""  # the run whose ingress fence is on the service, if any
    ingress_before: str = ""  # the ingress that fence found, which lifting it restores
    # How it reads the apps' database secret (env var, volume; at latest or pinned).
    secret_reader: SecretReader | None = None

    @classmethod
    def of(cls, got: run_v2.Service, service: str, region: str, secret: str) -> ServiceState:
        """What a service read from Cloud Run says of it; ``secret`` is the apps' database
        secret (``projects/P/secrets/S``). Pure: no call."""
        from tasks.cloud_run_ingress import FENCED_BY, INGRESS_BEFORE

        capacity = Capacity.of(got)
        return cls(
            service=service,
            region=region,
            exists=True,
            scaling=capacity.effective,
            capacity=capacity,
            ready=got.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED,
            serving={t.revision: t.percent for t in got.traffic_statuses if t.percent},
            ingress=run_v2.IngressTraffic(got.ingress).name,
            fenced_by=got.annotations.get(FENCED_BY, ""),
            ingress_before=got.annotations.get(INGRESS_BEFORE, ""),
            secret_reader=read_secret_reader(got, secret),
        )


@cloud_task(timeout_seconds=60, task_run_name="describe-{service}-{region}")
def run_describe_service(environment: str, project: str, region: str, service: str) -> ServiceState:
    """Read a service's capacity (both levels), readiness, traffic split, ingress, and how
    it reads the apps' database secret.

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
    secret = runtime.topology(environment).cloud_sql.app_secret.resource
    return ServiceState.of(got, service, region, secret)


class RevisionInfo(BaseModel):
    name: str  # short name, e.g. auth-service-00002-abc
    created: str  # RFC 3339
    ready: bool
    reason: str = ""
    image: str = ""
    rolled_for: str = ""  # the secret version Lifeboat rolled it for (tasks/cloud_run_secrets)


BLUE_GREEN = ("blue", "green")


class RevisionSet(BaseModel):
    service: str
    region: str
    serving: dict[str, int]  # revision → percent of traffic it serves now
    revisions: list[RevisionInfo]  # newest first
    tags: dict[str, str] = {}  # traffic tag → the revision it addresses (blue, green, ...)

    def current(self) -> str | None:
        """The revision serving the most traffic (100% after a completed rollout)."""
        if not self.serving:
            return None
        return max(self.serving.items(), key=lambda item: item[1])[0]

    def previous(self) -> str | None:
        """Seed 004's service rollback target: the newest revision created before the
        current one that runs another image, the release before this one.

        A revision that runs the current image is no release to go back to: a scaling or
        configuration change, or a revision Lifeboat rolled so that new instances read a
        new secret version (tasks/cloud_run_secrets.py), copies the release it follows.
        """
        current = self.current()
        names = [r.name for r in self.revisions]
        if current not in names:
            return None
        image = self.revisions[names.index(current)].image
        older = self.revisions[names.index(current) + 1 :]
        return next((r.name for r in older if r.image != image), None)

    def blue_green_partner(self) -> tuple[str | None, str]:
        """Seed 004's traffic rollback target: the revision under the other colour.

        The seed's blue/green deploy keeps two revisions addressed by the traffic tags
        ``blue`` and ``green`` (its ``-blue-`` and ``-green-`` revisions); the one that
        serves is live, the other the way back. Returns (target, why not) where the
        target is None when the tags do not make a pair around the serving revision.
        """
        current = self.current()
        colours = {tag: rev for tag, rev in self.tags.items() if tag in BLUE_GREEN}
        live = [tag for tag, rev in colours.items() if rev == current]
        if not live:
            tagged = ", ".join(f"{t}={r}" for t, r in sorted(colours.items()))
            return None, (
                f"no blue/green pair: {current} carries neither tag blue nor green"
                + (f" ({tagged})" if tagged else "")
            )
        other = "green" if live[0] == "blue" else "blue"
        if other not in colours:
            return None, f"no blue/green pair: {current} is {live[0]} and no revision is {other}"
        return colours[other], ""

    def get(self, name: str) -> RevisionInfo | None:
        return next((r for r in self.revisions if r.name == name), None)


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


@cloud_task(timeout_seconds=60, task_run_name="revisions-{service}-{region}")
def run_list_revisions(environment: str, project: str, region: str, service: str) -> RevisionSet:
    """Read which revision serves a service now and every revision it has, newest first.

    A revision counts as ready when its Ready condition has succeeded, as Cloud Run
    reports it; that is the health a rollback target must have. Traffic tags come from
    ``trafficStatuses`` (run v2 ``TrafficTargetStatus.tag``), which resolve a tag on
    LATEST to the revision it reaches.

    Idempotent: a read.
    """
    factory = runtime.clients(environment)
    name = service_path(project, region, service)
    timeout = runtime.call_timeout(environment)
    with calling("list-revisions", name):
        got = factory.run_services.get_service(name=name, timeout=timeout)
        listed = list(factory.run_revisions.list_revisions(parent=name, timeout=timeout))
    serving: dict[str, int] = {}
    tags: dict[str, str] = {}
    for status in got.traffic_statuses:
        if status.percent and status.revision:
            key = _short(status.revision)
            serving[key] = serving.get(key, 0) + status.percent
        if status.tag and status.revision:
            tags[status.tag] = _short(status.revision)
    revisions = []
    for rev in listed:
        ready = next((c for c in rev.conditions if c.type_ == "Ready"), None)
        revisions.append(
            RevisionInfo(
                name=_short(rev.name),
                created=rev.create_time.isoformat() if rev.create_time else "",
                ready=ready is not None
                and ready.state == run_v2.Condition.State.CONDITION_SUCCEEDED,
                reason=(ready.message or ready.reason.name) if ready is not None else "no Ready",
                image=rev.containers[0].image if rev.containers else "",
                rolled_for=rev.annotations.get(ROLLED_FOR, ""),
            )
        )
    # Newest first by creation time; the name (it carries the generation) breaks ties.
    revisions.sort(key=lambda r: (r.created, r.name), reverse=True)
    return RevisionSet(
        service=service, region=region, serving=serving, revisions=revisions, tags=tags
    )


class TrafficResult(BaseModel):
    service: str
    region: str
    changed: bool
    before: dict[str, int]
    after: dict[str, int]


@cloud_task(timeout_seconds=900, task_run_name="traffic-{service}-{revision}")
def run_set_traffic(
    environment: str, project: str, region: str, service: str, revision: str
) -> TrafficResult:
    """Send 100% of a service's traffic to one revision and wait for the rollout.

    Tags stay on their revisions at 0%, so blue/green addresses keep working.

    Idempotent: reads the service first; when ``revision`` already serves 100% it only
    waits for a rollout still in progress (a resumed run) and changes nothing.
    """
    logger = get_run_logger()
    name = service_path(project, region, service)

    with calling("set-traffic", name):
        current = wait_settled(environment, name)
        before = {_short(t.revision): t.percent for t in current.traffic_statuses if t.percent}
        if before == {revision: 100}:
            logger.info("%s already serves 100%% from %s", name, revision)
            return TrafficResult(
                service=service, region=region, changed=False, before=before, after=before
            )
        revision_type = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
        tags = {_short(t.revision) or t.type_.name: t.tag for t in current.traffic if t.tag}
        targets = [
            run_v2.TrafficTarget(
                type_=revision_type, revision=revision, percent=100, tag=tags.pop(revision, "")
            )
        ]
        for target in current.traffic:
            if target.tag and target.tag in tags.values():
                targets.append(
                    run_v2.TrafficTarget(
                        type_=target.type_, revision=target.revision, percent=0, tag=target.tag
                    )
                )
        current.traffic = targets
        logger.info("moving %s traffic %s → %s=100%%", name, before, revision)
        update_and_wait(environment, current, TRAFFIC_MASK)
    return TrafficResult(
        service=service, region=region, changed=True, before=before, after={revision: 100}
    )
