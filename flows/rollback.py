"""rollback: move Cloud Run services back, by one of seed 004's two strategies.

- ``traffic`` (seed 004 ``traffic_rollback``, blue_green_switch, budget 30 s): 100% of
  traffic to the revision under the other colour tag (``blue`` ↔ ``green``);
- ``service`` (``service_rollback``, previous_revision, budget 2 min): 100% to the newest
  older revision that runs another image.

In order: validate the request → for each service, read the revision serving now and the
strategy's target and check that the target is Ready → the plan (dry run stops here) →
region lock → move 100% of traffic, services concurrently, timed against the strategy's
budget → verify each moved service with its own checks → release the lock → purge the
CDN, run the integrity queries, watch the validation period against the success criteria
(flows/rollback_checks.py) → record, artifacts, event, notifications.

A service that fails does not stop the others; the run reports both lists and fails if
any service failed, or if the validation period fails. A service already on its target is
left alone, and re-running an incident that stopped resumes it: the plan is the one that
incident first made. A completed incident is not run again (flows/resume.py).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from flows.evidence import publish_run, published
from flows.launch import ENVIRONMENT_FIELD, INCIDENT_FIELD, REASON_FIELD, SwitchRequest
from flows.region_lock import lock_step
from flows.resume import refuse_a_completed_incident, resumable
from flows.rollback_checks import check_integrity, purge_cdn, validate
from flows.rollback_cooldown import COOLDOWN_STATE, recent_automatic_run
from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.rollback_rules import Validation
from lifeboat.topology import RegionRole, RollbackStrategy, Topology
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


def run_name() -> str:
    """``rollback-<strategy>``, and the watch's trigger when one started it: the UI's run
    list then says why each automatic rollback ran."""
    params = flow_run.get_parameters()
    strategy = params.get("strategy", RollbackStrategy.service)
    name = f"rollback-{RollbackStrategy(strategy).value}"
    trigger = params.get("trigger")
    return f"{name}: {trigger}" if trigger else name


@flow(
    name="rollback",
    flow_run_name=run_name,
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
    strategy: Annotated[
        RollbackStrategy,
        Field(
            description="traffic: switch to the other blue/green tagged revision (budget 30 s); "
            "service: to the previous revision that runs another image (budget 2 min)"
        ),
    ] = RollbackStrategy.service,
    trigger: Annotated[
        str | None,
        Field(
            max_length=300,
            description="The watch's trigger that fired, with its figure against the threshold",
        ),
    ] = None,
) -> dict[str, Any] | State:
    request = SwitchRequest.validate_launch(environment, reason, incident_id, operator, "rb")
    topo = runtime.topology(request.environment)
    names = _chosen_services(topo, services, target_revisions)
    strategy = RollbackStrategy(strategy)
    record = request.record("rollback", "automatic" if automatic else "manual", dry_run)
    refuse_a_completed_incident(record, incident_id)
    record.cause = trigger
    if automatic and not dry_run:
        why = recent_automatic_run(topo.environment, topo.rollback_triggers.min_interval_s)
        if why:
            get_run_logger().warning("standing down: %s", why)
            record.finish("refused", why)
            publish_run(record, notify=False)
            return Completed(name=COOLDOWN_STATE, message=why)
    with published(record):
        _run(topo, record, names, target_revisions or {}, region, strategy, dry_run)
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


def _plan(
    state: RevisionSet, wanted: str | None, strategy: RollbackStrategy = RollbackStrategy.service
) -> ServicePlan:
    """What to do with one service: its target (the one asked for, else the strategy's)
    and whether to switch, keep or refuse. Pure."""
    current = state.current()
    if wanted:
        target: str | None = wanted
    elif strategy is RollbackStrategy.traffic:
        target, why = state.blue_green_partner()
        if target is None:
            return ServicePlan(
                service=state.service, current=current, target=None, action="refuse", why=why
            )
    else:
        target = state.previous()
    if target is None:
        return ServicePlan(
            service=state.service,
            current=current,
            target=None,
            action="refuse",
            why=f"no revision older than {current} runs another image",
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
    strategy: RollbackStrategy,
    dry_run: bool,
) -> None:
    logger = get_run_logger()
    env = topo.environment
    region = topo.regions.by_role(role)

    with record.step("inspect") as step:
        # Cached per incident: a re-run of a run that stopped plans from the state it
        # first saw, so it resumes instead of rolling back one revision further. A
        # completed incident is not run again (`refuse_a_completed_incident`): its cached
        # targets would roll back whatever was released since.
        inspect = resumable(run_list_revisions, record, "inspect")
        futures = [inspect.submit(env, region.project, region.name, name) for name in names]
        plans = []
        for future, name in zip(futures, names, strict=True):
            try:
                plans.append(_plan(future.result(), targets.get(name), strategy))
            except Exception as exc:
                plans.append(
                    ServicePlan(
                        service=name, current=None, target=None, action="refuse", why=str(exc)
                    )
                )
        step.detail = f"{strategy.value} rollback: " + "; ".join(p.line() for p in plans)
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
            switch_started = time.perf_counter()
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
            record.execution = _against_budget(
                topo, strategy, time.perf_counter() - switch_started, moved
            )
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
    verdict: Validation | None = None
    if rolled_back:
        # The lock is released: none of these changes what serves.
        purge_cdn(topo, record)
        check_integrity(topo, record)
        verdict = validate(topo, record, role, strategy, rolled_back)
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
    if verdict is not None and not verdict.passed:
        message = (
            f"validation failed after the {strategy.value} rollback of "
            f"{', '.join(rolled_back)}: {'; '.join(verdict.failures())}"
        )
        record.finish("failed", message[:1000])
        raise PermanentError(f"rollback: {message}"[:2000])
    record.finish("completed")


def _against_budget(
    topo: Topology, strategy: RollbackStrategy, seconds: float, moved: list[str]
) -> dict[str, Any]:
    """The switch's measured time against the strategy's budget (seed 004 execution_time).

    Measured in wall seconds; a lab's clock runs ``time_scale`` times faster than the
    world its delays model, so its budget shrinks by that factor too.
    """
    budget_s = topo.rollback_strategies.of(strategy).execution_s
    scale = runtime.clock_scale(topo.environment)
    within = seconds <= budget_s * scale
    if not within and moved:
        get_run_logger().warning(
            "%s rollback took %.2f s, over its budget of %g s (time scale %g)",
            strategy.value,
            seconds,
            budget_s,
            scale,
        )
    return {
        "strategy": strategy.value,
        "budget_s": budget_s,
        "measured_s": round(seconds, 3),
        "time_scale": scale,
        "within_budget": within,
        "services": moved,
    }
