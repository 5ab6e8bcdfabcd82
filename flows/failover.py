"""failover: move an environment from its primary region to its secondary region.

The runbook, in order: preflight (primary health, secondary readiness, replica lag) →
approval when the primary looks healthy or the lag exceeds the RPO → region lock →
graceful only: fence the primary's services (ingress internal-only: public traffic, and
so every write, stops), then the apps' database role on the primary (NOLOGIN, its sessions
ended: the requests already admitted), and wait for the replica to receive the WAL the
primary wrote →
promote the replica, while the apps' database secret names it, the services that need it
are refreshed and the secondary scales up → let the apps' role log in to the promoted
replica (the fence replicated to it) → switch DNS, purge the CDN → verify through
the public path → lift the primary's fence → record, artifacts, event, notifications.

Why the fence: a promotion stops replication, and any write the primary takes after that
is in no database the apps will use again. A planned failover lost 21 of 99 acknowledged
writes without it (reliability/lost_writes.py). The price is a planned outage, from the
fence to the verification, which the record states as ``outage_seconds``. An ungraceful
failover (the primary region is gone) skips it; a graceful one whose primary looks down
tries it once per service and goes on without what it could not set.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from enum import StrEnum
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.context import get_run_context
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.futures import PrefectFuture, wait
from prefect.input import RunInput
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.database_connection import connection_detail, point_apps_at, point_back
from flows.database_fence import database_fenced, open_promoted
from flows.evidence import published
from flows.fence import Fence, fenced
from flows.launch import ENVIRONMENT_FIELD, INCIDENT_FIELD, REASON_FIELD, SwitchRequest
from flows.new_primary import backups_on_new_primary
from flows.plans import RECEIVE_WAIT_S, PrimaryFence, failover_plan
from flows.region_lock import lock_step
from flows.resume import refuse_a_completed_incident, request_id, resumable
from flows.secret_refresh import Refreshed, reader_lines
from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.topology import RegionRole, SqlInstanceRef, Tier, Topology
from tasks.cdn import cdn_invalidate
from tasks.cloud_run import ScaleResult, ServiceState, run_describe_service, run_scale_service
from tasks.cloud_run_secrets import ReaderState, run_describe_secret_reader
from tasks.cloud_sql import (
    PromoteResult,
    ReplicaLag,
    sql_describe_instance,
    sql_promote_replica,
    sql_replica_lag,
)
from tasks.cloud_sql_wal import sql_wait_received
from tasks.dns import dns_get_record, dns_switch_record
from tasks.errors import PermanentError, PreflightRefused
from tasks.health import HealthReport, Target, health_probe, health_verify


class Mode(StrEnum):
    graceful = "graceful"
    ungraceful = "ungraceful"  # the primary region is gone: skip every step that needs it


class FailoverApproval(RunInput):
    approved: bool = Field(description="Go ahead with the failover")
    approver: str = Field(min_length=1, description="Who approves")
    note: str = Field("", description="Why")


def _lift_fences_on_exit(flow: Any, flow_run: Any, state: Any) -> None:
    """Cancellation/crash hook: lift the fence this run (or its incident) set on the
    primary, unless the promotion of the replica has started; then write the run's
    record if it could not."""
    from flows.database_fence import open_database_of_run
    from flows.fence import lift_fences_of_run
    from flows.stopped_run import record_stopped_run

    def promoted(topo: Topology) -> SqlInstanceRef:
        return topo.cloud_sql.replica

    open_database_of_run(flow_run, "failover", lambda t: t.cloud_sql.primary, promoted)
    lift_fences_of_run(flow_run, "failover", RegionRole.primary, promoted)
    # After the lifts: traffic comes first, the evidence a moment later.
    record_stopped_run(flow_run, "failover", state, Mode.graceful.value)


@flow(
    name="failover",
    # Up to 64 calls at once: 100 services scale in two rounds, about one promotion's
    # time; each service is one update, so the Run API sees 100 writes, not a storm
    # (bench/scale.py counts the 429s: none).
    task_runner=ThreadPoolTaskRunner(max_workers=64),  # type: ignore[arg-type]
    persist_result=True,
    on_cancellation=[_lift_fences_on_exit],
    on_crashed=[_lift_fences_on_exit],
)
def failover(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    reason: Annotated[str, REASON_FIELD],
    incident_id: Annotated[str | None, INCIDENT_FIELD] = None,
    dry_run: Annotated[bool, Field(description="Print the exact plan and change nothing")] = False,
    mode: Annotated[
        Mode, Field(description="ungraceful skips steps that need the failed region")
    ] = Mode.graceful,
    operator: Annotated[str, Field(max_length=100, description="Who launched it")] = "unknown",
    approve: Annotated[
        bool, Field(description="Approve in advance (break-glass); skips the pause")
    ] = False,
    approval_timeout_s: Annotated[int, Field(ge=10, le=86400)] = 1800,
) -> dict[str, Any]:
    request = SwitchRequest.validate_launch(environment, reason, incident_id, operator)
    topo = runtime.topology(request.environment)
    record = request.record("failover", mode.value, dry_run)
    refuse_a_completed_incident(record, incident_id)
    started = time.perf_counter()
    # The lock outlives the evidence: a duplicate launch waiting for it then reads the
    # record this run wrote (flows.region_lock.lock_step).
    with ExitStack() as held, published(record):
        _run(topo, record, mode, dry_run, approve, approval_timeout_s, started, held)
    return record.model_dump(mode="json")


def _run(
    topo: Topology,
    record: RunRecord,
    mode: Mode,
    dry_run: bool,
    approve: bool,
    approval_timeout_s: int,
    started: float,
    held: ExitStack,
) -> None:
    """The failover; the region lock, once taken, is held on ``held`` until it ends."""
    logger = get_run_logger()
    env = topo.environment
    secondary = topo.regions.secondary
    replica = topo.cloud_sql.replica

    with record.step("preflight") as step:
        pre = _preflight(topo, mode)
        step.detail = pre.summary()
    record.lag = pre.lag.model_dump(mode="json")
    record.before = pre.state()
    fence = (
        None
        if pre.primary_services is None
        else PrimaryFence(pre.primary_services, required=not pre.primary_down(topo))
    )
    record.plan = failover_plan(
        topo,
        pre.record,
        pre.services,
        pre.replica_type,
        refresh=pre.reader_lines(topo),
        fence=fence,
    )
    logger.info("plan:\n%s", "\n".join(record.plan))
    if dry_run:
        record.finish("planned")
        return

    rpo_s = topo.objectives[Tier.critical].rpo_minutes * 60
    reasons = pre.approval_reasons(rpo_s, topo)
    if reasons:
        with record.step("approval") as step:
            record.approval = _approval(record, reasons, approve, approval_timeout_s)
            step.detail = f"approved by {record.approval['approver']}"
    lock_step(held, record)
    # The fence is lifted (or kept, saying why) once the switch is verified; the
    # lock is held until the new primary has its backups too.
    with ExitStack() as fencing:
        held_fence = None if fence is None else _fence_primary(topo, record, fencing, fence)
        # The promotion is the longest step and needs nothing below, so it starts now:
        # the run waits max(promotion, secret + refresh + scale-up), not their sum. The
        # preflight has just read the secondary's services, so its Run API answers.
        if held_fence is not None:
            held_fence.promotion_started = True
        promote = resumable(sql_promote_replica, record, "promote").submit(
            env, replica.project, replica.instance
        )
        try:
            results, promoted, refreshed = _connect_scale_and_promote(topo, record, mode, promote)
            open_promoted(topo, record, replica)
            if held_fence is not None:
                names = [s.name for s in topo.services]
                held_fence.repointed = refreshed.repointed(topo.regions.primary, names)
        except Exception:
            # Never release the region lock while the promotion runs, and say how it
            # ended in the failed step, where an operator looks first.
            record.steps[-1].detail += f"; {_settled(promote)}"
            if held_fence is not None:
                # Planned: the primary's fence is lifted on the way out, so its apps
                # must not be left naming a replica whose promotion never began.
                point_back(
                    topo,
                    record,
                    promote,
                    replica,
                    topo.cloud_sql.primary,
                    required=[topo.regions.primary],  # DNS still sends users there
                    optional=[secondary],
                )
            raise
        with record.step("dns-switch") as step:
            # Record sets switch concurrently: 50 of them one by one would take 50 changes.
            switches = [
                resumable(dns_switch_record, record, "dns").submit(
                    env, rec.name, rec.rrdatas[RegionRole.secondary], rec.failover_ttl, rec.type
                )
                for rec in topo.dns.records
            ]
            wait(switches)
            switched = [f.result() for f in switches]
            step.detail = "; ".join(
                f"{s.after.name} → {','.join(s.after.rrdatas)} ttl {s.after.ttl}"
                + ("" if s.changed else " (already)")
                for s in switched
            )
        with record.step("cdn-purge") as step:
            purges = [
                cdn_invalidate(env, topo.cdn.host, path, request_id=request_id(record, path))
                for path in topo.cdn.paths
            ]
            step.detail = ", ".join(f"{p.path} ({p.operation})" for p in purges)
        with record.step("verify") as step:
            verified = health_verify(
                env,
                Target.public,
                timeout_s=topo.health.verify_timeout_s,
                expect_region=secondary.name,
            )
            step.detail = verified.summary()
        record.rto_seconds = time.perf_counter() - started
        if held_fence is not None and held_fence.results:  # a fence set: a planned outage
            record.outage_seconds = held_fence.seconds_held()
    record.after = {
        "dns": [s.after.model_dump() for s in switched],
        "replica": promoted.after.model_dump(),
        "services": [r.model_dump() for r in results],
    }
    _backups_on_new_primary(topo, record)
    record.finish("completed")


def _backups_on_new_primary(topo: Topology, record: RunRecord) -> None:
    """After the verification, outside the RTO: the new primary serves already, but until
    this it cannot be restored to any moment (a replica keeps no backups). A failure here
    fails the run, saying that the switch itself is done: a re-run of the incident resumes
    at this step alone."""
    replica, old = topo.cloud_sql.replica, topo.cloud_sql.primary
    try:
        backups_on_new_primary(topo, record, replica, old)
    except Exception as exc:
        raise PermanentError(
            f"the switch is done and verified (RTO {record.rto_seconds or 0:.1f} s), but "
            f"{replica.instance} has no backups or point-in-time recovery yet: {exc}. "
            "Re-run the incident to retry that step alone"
        ) from exc


def _fence_primary(topo: Topology, record: RunRecord, held: ExitStack, plan: PrimaryFence) -> Fence:
    """Fence the primary's services until the switch is verified (``held`` lifts them, or
    keeps them saying why), then wait for the replica to receive what the primary wrote."""
    replica = topo.cloud_sql.replica
    try:
        fence = held.enter_context(
            fenced(
                topo,
                record,
                RegionRole.primary,
                replica,
                required=plan.required,
                skip=_unreachable(plan),
            )
        )
        # The ingress fence stops new requests; this ends the ones already admitted. Not
        # when the primary looks down: its apps admit nothing, a try would cost the
        # recovery a connection timeout, and a fence left on the stale primary would fail
        # the primary region's checks until a failback (its stale readers are repointed).
        if plan.required:
            held.enter_context(database_fenced(topo, record, topo.cloud_sql.primary, replica))
    except Exception as exc:
        if not plan.required:
            raise
        raise PermanentError(
            f"{exc}; the primary looks healthy, so the failover does not promote while it "
            "can still take writes (they would be lost): nothing else was changed. Mend "
            "the cause and re-run, or, if the primary region is failing after all, re-run "
            "with mode=ungraceful"
        ) from exc
    with record.step("wait-received") as step:
        received = sql_wait_received(
            topo.environment, replica.project, replica.instance, timeout_s=RECEIVE_WAIT_S
        )
        record.lag = {**(record.lag or {}), "at_promotion": received.model_dump(mode="json")}
        step.detail = received.describe()
        if received.bytes:
            # Approved with the lag estimated at preflight: go on, and say what is missing.
            get_run_logger().warning("promoting anyway: %s", received.describe())
    return fence


def _unreachable(plan: PrimaryFence) -> dict[str, str]:
    """The primary services a best-effort fence does not try: the preflight could not read
    them (their region's Run API did not answer), and a try would cost the recovery the
    client's retries (about 10 s in the lab's outage) for a fence it cannot set."""
    if plan.required:
        return {}
    return {
        st.service: "its Run API did not answer the preflight's read"
        for st in plan.states
        if not st.exists
    }


def _connect_scale_and_promote(
    topo: Topology, record: RunRecord, mode: Mode, promote: PrefectFuture[PromoteResult]
) -> tuple[list[ScaleResult], PromoteResult, Refreshed]:
    """The steps that run while the promotion does; returns the scale-ups, the promotion
    and what the refresh of the secret's readers did."""
    env = topo.environment
    secondary = topo.regions.secondary
    replica = topo.cloud_sql.replica
    with record.step("database-connection") as step:
        # Before the scale-up: instances that start from zero read the secret as they
        # start, so they must find the new version. The replica keeps its IP when
        # promoted, so the URL is known now.
        # Instances already running keep an env-var URL until they restart: each
        # service gets what its configuration needs. The primary's, best effort: its
        # region may be down, and a failover must not wait on it.
        update, refreshed = point_apps_at(
            topo,
            record,
            replica,
            required=[secondary],
            optional=[] if mode is Mode.ungraceful else [topo.regions.primary],
        )
        step.detail = connection_detail(update, refreshed)
    with record.step("scale-and-promote") as step:
        scales = [
            resumable(run_scale_service, record, "scale").submit(
                env,
                secondary.project,
                secondary.name,
                svc.name,
                svc.active_scaling.min,
                svc.active_scaling.max,
            )
            for svc in topo.services
        ]
        wait([*scales, promote])
        results = [f.result() for f in scales]
        promoted = promote.result()
        scaled = sum(r.changed for r in results)
        step.detail = (
            f"scaled {scaled}/{len(results)} at service level; "
            + "; ".join(r.describe() for r in results)
            + f"; promote changed={promoted.changed}"
        )
    return results, promoted, refreshed


def _settled(promote: PrefectFuture[PromoteResult]) -> str:
    """Wait for the promotion a failed step ran beside, and say how it ended."""
    promote.wait()  # keeps the final state: ``state`` read from the API may lag
    if promote.state.is_completed():
        return "the promotion, started first, completed: a re-run of the incident resumes"
    return f"the promotion, started first, failed: {promote.state.message}"


class Preflight:
    def __init__(
        self,
        primary: HealthReport | None,
        services: list[ServiceState],
        replica_type: str,
        replica_state: str,
        lag: ReplicaLag,
        record: Any,
        primary_readers: list[ReaderState] | None = None,
        primary_services: list[ServiceState] | None = None,
    ):
        self.primary_readers = primary_readers  # None: not read (ungraceful)
        self.primary_services = primary_services  # None: not read (ungraceful)
        self.primary = primary
        self.services = services
        self.replica_type = replica_type
        self.replica_state = replica_state
        self.lag = lag
        self.record = record

    def reader_lines(self, topo: Topology) -> list[str]:
        """Per service: how it reads the apps' secret, and what the failover does about it."""
        primary = topo.regions.primary.name
        lines = reader_lines(topo.regions.secondary.name, self.services)
        if self.primary_readers is None:
            return [*lines, f"skip the services of {primary} (ungraceful)"]
        return lines + reader_lines(primary, self.primary_readers)

    def primary_down(self, topo: Topology) -> bool:
        return self.primary is None or self.primary.failed >= topo.health.down_after_failures

    def approval_reasons(self, rpo_s: float, topo: Topology) -> list[str]:
        reasons = []
        if not self.primary_down(topo):
            assert self.primary is not None
            reasons.append(f"the primary looks healthy ({self.primary.failed} failed check(s))")
        if self.lag.seconds > rpo_s:
            reasons.append(
                f"replica lag {self.lag.seconds:.0f} s exceeds the critical RPO {rpo_s:.0f} s"
            )
        return reasons

    def summary(self) -> str:
        primary = (
            "skipped (ungraceful)"
            if self.primary is None
            else f"{self.primary.failed} failed check(s)"
        )
        return (
            f"primary: {primary}; replica {self.replica_type} {self.replica_state}; "
            f"lag {self.lag.seconds:.1f} s / {self.lag.bytes} B"
        )

    def state(self) -> dict[str, Any]:
        return {
            "dns": self.record.model_dump() if self.record else None,
            "services": [s.model_dump() for s in self.services],
            "replica": {"type": self.replica_type, "state": self.replica_state},
            "primary_health": self.primary.model_dump() if self.primary else None,
        }


def _preflight(topo: Topology, mode: Mode) -> Preflight:
    """Probe the primary, check the secondary is ready, estimate lag; all at once."""
    env = topo.environment
    secondary = topo.regions.secondary
    replica = topo.cloud_sql.replica
    primary_f = None if mode is Mode.ungraceful else health_probe.submit(env, Target.primary)
    primary = topo.regions.primary
    reader_fs = (
        []
        if mode is Mode.ungraceful
        else [
            run_describe_secret_reader.submit(env, primary.project, primary.name, svc.name)
            for svc in topo.services
        ]
    )
    service_fs = [
        run_describe_service.submit(env, secondary.project, secondary.name, svc.name)
        for svc in topo.services
    ]
    replica_f = sql_describe_instance.submit(env, replica.project, replica.instance)
    lag_f = sql_replica_lag.submit(env, replica.project, replica.instance)
    record_f = dns_get_record.submit(env, topo.dns.records[0].name, topo.dns.records[0].type)
    services = [f.result() for f in service_fs]
    readers = [f.result() for f in reader_fs]
    replica_state = replica_f.result()
    missing = [s.service for s in services if not s.exists]
    if missing:
        raise PreflightRefused(
            f"preflight: services missing in {secondary.name}: {', '.join(missing)}"
        )
    if replica_state.state != "RUNNABLE":
        raise PreflightRefused(
            f"preflight: replica {replica.instance} is {replica_state.state}, not RUNNABLE"
        )
    return Preflight(
        primary_f.result() if primary_f else None,
        services,
        replica_state.instance_type,
        replica_state.state,
        lag_f.result(),
        record_f.result(),
        None if mode is Mode.ungraceful else readers,
        None if mode is Mode.ungraceful else [_state_of(r) for r in readers],
    )


def _state_of(reader: ReaderState) -> ServiceState:
    """A primary service as the preflight read it; one that could not be read is planned
    with its ingress unknown (its fence is tried anyway, best effort)."""
    return reader.state or ServiceState(service=reader.service, region=reader.region, exists=False)


def _approval(
    record: RunRecord, reasons: list[str], approve: bool, timeout_s: int
) -> dict[str, Any]:
    logger = get_run_logger()
    if approve:
        logger.warning(
            "approval needed (%s); approved in advance by %s", "; ".join(reasons), record.operator
        )
        return {
            "approved": True,
            "approver": record.operator,
            "note": "approved at launch",
            "reasons": reasons,
        }
    context = get_run_context()
    if getattr(getattr(context, "flow_run", None), "deployment_id", None) is None:
        raise PermanentError(
            "approval needed ("
            + "; ".join(reasons)
            + "), but this run has no deployment to pause; "
            "re-run with approve=true (CLI: --approve) to go ahead"
        )
    description = _approval_markdown(record, reasons)
    try:
        answer = pause_flow_run(
            # No default approver: an empty default would make the field optional and let
            # a bare {"approved": true} through with nobody on record.
            wait_for_input=FailoverApproval.with_initial_data(
                description=description, approved=False
            ),
            timeout=timeout_s,
            poll_interval=2,
        )
    except FlowPauseTimeout:
        # The record keeps the decision as well as the outcome: who said no, or that
        # nobody answered, and to what.
        record.approval = {
            "approved": False,
            "approver": None,
            "note": "timed out",
            "reasons": reasons,
        }
        record.finish("rejected", f"no approval within {timeout_s} s; nothing was changed")
        raise PermanentError(
            f"failover not approved within {timeout_s} s; nothing was changed"
        ) from None
    if not answer.approved:
        record.approval = {
            "approved": False,
            "approver": answer.approver,
            "note": answer.note,
            "reasons": reasons,
        }
        record.finish(
            "rejected", f"rejected by {answer.approver}: {answer.note}; nothing was changed"
        )
        raise PermanentError(f"failover rejected by {answer.approver}; nothing was changed")
    return {"approved": True, "approver": answer.approver, "note": answer.note, "reasons": reasons}


def _approval_markdown(record: RunRecord, reasons: list[str]) -> str:
    lag = record.lag or {}
    lines = [
        f"## Approve failover of `{record.environment}`?",
        f"Incident **{record.incident_id}**: {record.reason}",
        "",
        "Approval is needed because:",
        *[f"- {r}" for r in reasons],
        "",
        f"Estimated data at risk: **{lag.get('seconds', 0):.1f} s** "
        f"({lag.get('bytes', 0)} bytes of WAL).",
        "",
        "Planned changes:",
        *[f"- {p}" for p in record.plan],
    ]
    return "\n".join(lines)
