"""rollback: move Cloud Run services back to their previous (or a chosen) revision.

Seed 004's blue/green rollback, in order: validate the request → for each service, read
the revision serving now and the previous one and check that the target is Ready → the
plan (dry run stops here) → region lock → move 100% of traffic, services concurrently →
verify each moved service with its own checks → record, artifacts, event, notifications.

A service that fails does not stop the others; the run reports both lists and fails if
any service failed. A service already on its target is left alone, and re-running an
incident resumes it: the plan is the one that incident first made.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from flows.evidence import publish_run, published
from flows.launch import ENVIRONMENT_FIELD, INCIDENT_FIELD, REASON_FIELD, SwitchRequest
from flows.region_lock import lock_step
from flows.resume import resumable
from flows.rollback_cooldown import COOLDOWN_STATE, recent_automatic_run
from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.topology import RegionRole, Topology
from tasks.cloud_run import RevisionSet, run_list_revisions, run_set_traffic
from tasks.errors import PermanentError
from tasks.health import Target, health_verify_service

# Services rolled back at once: enough for the seeds' four, gentle on the Run API quota.
MAX_PARALLEL = 4
SERVICE_NAME = r"^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$"
REVISION_NAME = r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"

ServiceName = Annotated[str, Field(pattern=SERVICE_NAME)]
RevisionName = Annotated[str, Field(pattern=REVISION_NAME)]


class ServicePlan(BaseModel):
    service: str
    current: str | None
    target: str | None
    action: Literal["switch", "keep", "refuse"]
    why: str = ""

    def line(self) -> str:
        if self.action == "switch":
            return f"traffic {self.service}: {self.current} → {self.target}"
        if self.action == "keep":
            return f"keep {self.service} on {self.target} (already serving 100%)"
        return f"refuse {self.service}: {self.why}"


@flow(
    name="rollback",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL),  # type: ignore[arg-type]
    persist_result=True,
)
def rollback(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    reason: Annotated[str, REASON_FIELD],
    services: Annotated[
        list[ServiceName] | None,
        Field(description="Services to roll back; none means every service in the topology"),
    ] = None,
    target_revisions: Annotated[
        dict[ServiceName, RevisionName] | None,
        Field(description="service → revision to serve; a service left out gets its previous"),
    ] = None,
    incident_id: Annotated[str | None, INCIDENT_FIELD] = None,
    dry_run: Annotated[bool, Field(description="Print the exact plan and change nothing")] = False,
    operator: Annotated[str, Field(max_length=100, description="Who launched it")] = "unknown",
    region: Annotated[
        RegionRole, Field(description="The region whose services serve users now")
    ] = RegionRole.primary,
    automatic: Annotated[
        bool, Field(description="Started by the watch automation; honours the minimum delay")
    ] = False,
) -> dict[str, Any] | State:
    request = SwitchRequest.validate_launch(environment, reason, incident_id, operator, "rb")
    topo = runtime.topology(request.environment)
    names = _chosen_services(topo, services, target_revisions)
    record = request.record("rollback", "automatic" if automatic else "manual", dry_run)
    if automatic and not dry_run:
        why = recent_automatic_run(topo.environment, topo.rollback_triggers.min_interval_s)
        if why:
            get_run_logger().warning("standing down: %s", why)
            record.finish("refused", why)
            publish_run(record, notify=False)
            return Completed(name=COOLDOWN_STATE, message=why)
    with published(record):
        _run(topo, record, names, target_revisions or {}, region, dry_run)
    return record.model_dump(mode="json")


def _chosen_services(
    topo: Topology, services: list[str] | None, targets: dict[str, str] | None
) -> list[str]:
    """The services to roll back, in topology order; unknown names fail before any change."""
    known = [s.name for s in topo.services]
    chosen = list(dict.fromkeys(services)) if services else known
    for field, names in (("services", chosen), ("target_revisions", list(targets or {}))):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise PermanentError(
                f"{field}: unknown service(s) {', '.join(unknown)} in environment "
                f"{topo.environment!r}; known: {', '.join(known)}"
            )
    outside = [n for n in targets or {} if n not in chosen]
    if outside:
        raise PermanentError(
            f"target_revisions: {', '.join(outside)} not among the services rolled back"
        )
    return [n for n in known if n in chosen]


def _plan(state: RevisionSet, wanted: str | None) -> ServicePlan:
    current = state.current()
    target = wanted or state.previous()
    if target is None:
        return ServicePlan(
            service=state.service,
            current=current,
            target=None,
            action="refuse",
            why=f"no revision older than {current} to roll back to",
        )
    info = state.get(target)
    if info is None:
        return ServicePlan(
            service=state.service,
            current=current,
            target=target,
            action="refuse",
            why=f"target revision {target} does not exist",
        )
    if not info.ready:
        return ServicePlan(
            service=state.service,
            current=current,
            target=target,
            action="refuse",
            why=f"target revision {target} is not Ready ({info.reason})",
        )
    action: Literal["switch", "keep"] = "keep" if state.serving == {target: 100} else "switch"
    return ServicePlan(service=state.service, current=current, target=target, action=action)


def _run(
    topo: Topology,
    record: RunRecord,
    names: list[str],
    targets: dict[str, str],
    role: RegionRole,
    dry_run: bool,
) -> None:
    logger = get_run_logger()
    env = topo.environment
    region = topo.regions.by_role(role)

    with record.step("inspect") as step:
        # Cached per incident: a re-run of the incident plans from the state it first saw,
        # so it resumes (every service already on its target: no change) instead of
        # rolling back one revision further.
        inspect = resumable(run_list_revisions, record, "inspect")
        futures = [inspect.submit(env, region.project, region.name, name) for name in names]
        plans = []
        for future, name in zip(futures, names, strict=True):
            try:
                plans.append(_plan(future.result(), targets.get(name)))
            except Exception as exc:
                plans.append(
                    ServicePlan(
                        service=name, current=None, target=None, action="refuse", why=str(exc)
                    )
                )
        step.detail = "; ".join(p.line() for p in plans)
    record.before = {p.service: {"serving": p.current, "target": p.target} for p in plans}
    record.plan = [p.line() for p in plans]
    logger.info("plan:\n%s", "\n".join(record.plan))
    if dry_run:
        record.finish("planned")
        return

    failed = {p.service: p.why for p in plans if p.action == "refuse"}
    rolled_back: list[str] = []
    unchanged = [p.service for p in plans if p.action == "keep"]
    moving = [p for p in plans if p.action == "switch"]
    with ExitStack() as held:
        lock_step(held, record)
        with record.step("traffic") as step:
            switches = {
                p.service: run_set_traffic.submit(
                    env, region.project, region.name, p.service, str(p.target)
                )
                for p in moving
            }
            moved: list[str] = []
            for service, switch in switches.items():
                try:
                    result = switch.result()
                except Exception as exc:
                    failed[service] = f"traffic: {exc}"[:500]
                    continue
                (moved if result.changed else unchanged).append(service)
            step.detail = f"moved {len(moved)}/{len(moving)}" + (
                f"; failed: {', '.join(s for s in switches if s in failed)}" if failed else ""
            )
            if not moving:
                step.outcome = "unchanged"
        with record.step("verify") as step:
            checks = {
                service: health_verify_service.submit(
                    env, Target(role.value), service, topo.health.verify_timeout_s
                )
                for service in moved
            }
            for service, check in checks.items():
                try:
                    check.result()
                    rolled_back.append(service)
                except Exception as exc:
                    failed[service] = f"verify: {exc}"[:500]
            step.detail = f"verified {len(rolled_back)}/{len(checks)}"
            if not checks:
                step.outcome = "skipped"
    record.after = {
        "rolled_back": rolled_back,
        "unchanged": unchanged,
        "failed": failed,
        "serving": {p.service: p.target for p in plans if p.service not in failed},
    }
    if failed:
        message = (
            f"rolled back: {', '.join(rolled_back) or 'none'}; "
            f"failed: {'; '.join(f'{s}: {why}' for s, why in failed.items())}"
        )
        record.finish("failed", message[:1000])
        raise PermanentError(f"rollback: {message}"[:2000])
    record.finish("completed")
