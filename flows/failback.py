"""failback: return an environment from its secondary region to its primary region.

Runbook, after a failover: refuse while the primary region is unhealthy → region lock →
roll the primary services that still name the old primary (a failover made while the
region was down could not) → export what the old primary may hold alone, then replace it
with a replica of the promoted database → primary services active (those whose instances
reach a later secret version however they start) → fence the secondary (its services'
ingress internal-only: public traffic, and so every write, stops) → wait for zero lag →
promote, pointing the apps at it while it runs → any other primary services active →
DNS back → purge → verify → lift the fence → secondary to standby → export the
secondary's database, then rebuild it as a replica → record.

Writes are fenced before the promotion so it loses nothing; the price is a short planned
outage (the promotion, with the roll of the services that read the secret at instance
start running beside it), which the record states as ``outage_seconds``. Scaling is no fence: a
Cloud Run service at min 0 still serves. The fence is held only while the database and
DNS move, and it is lifted in every outcome: at the end of the fenced steps, when one of
them fails, by the cancellation and crash hooks, and by a resumed run of the incident
(the fence is recorded on the services themselves).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from flows.database_fence import database_fenced, open_promoted
from flows.evidence import published
from flows.failback_gate import gate_primary, hold, repoint_plan_line, stale_readers
from flows.failback_promotion import promote_and_connect
from flows.fence import describe_services, fence_line, fenced, lift_fences, lift_line
from flows.launch import ENVIRONMENT_FIELD, INCIDENT_FIELD, REASON_FIELD, SwitchRequest
from flows.new_primary import backups_on_new_primary
from flows.plans import backups_line, database_fence_line, database_open_line, scale_line
from flows.rebuilt_label import rebuilt_by, rebuilt_label
from flows.resume import refuse_a_completed_incident, request_id, resumable
from flows.secret_refresh import reader_lines, refresh_secret_readers
from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.topology import RegionRole, SqlInstanceRef, Topology
from tasks.cdn import cdn_invalidate
from tasks.cloud_run import ScaleResult, ServiceState, run_scale_service
from tasks.cloud_sql import (
    InstanceState,
    describe,
    sql_create_replica,
    sql_delete_instance,
    sql_export_database,
)
from tasks.cloud_sql_protection import sql_set_deletion_protection
from tasks.cloud_sql_wal import sql_wait_received
from tasks.dns import dns_switch_record
from tasks.errors import PermanentError, PreflightRefused
from tasks.health import Target, health_verify
from tasks.secret_manager import secret_manager_latest_version
from tasks.storage import storage_require_object


def _lift_fences_on_exit(flow: Any, flow_run: Any, state: Any) -> None:
    """Cancellation/crash hook: lift the fence this run (or its incident) left in place,
    unless the promotion of the rebuilt primary-region instance has started; then write
    the run's record if it could not."""
    from flows.database_fence import open_database_of_run
    from flows.fence import lift_fences_of_run
    from flows.stopped_run import record_stopped_run

    # The rebuilt primary-region instance is the one the failback promotes; the fence is
    # on the promoted secondary's.
    def promoted(topo: Topology) -> SqlInstanceRef:
        return topo.cloud_sql.primary

    open_database_of_run(flow_run, "failback", lambda t: t.cloud_sql.replica, promoted)
    lift_fences_of_run(flow_run, "failback", RegionRole.secondary, promoted)
    # After the lifts: traffic comes first, the evidence a moment later.
    record_stopped_run(flow_run, "failback", state, "planned")


@flow(
    name="failback",
    persist_result=True,
    on_cancellation=[_lift_fences_on_exit],
    on_crashed=[_lift_fences_on_exit],
)
def failback(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    reason: Annotated[str, REASON_FIELD] = "planned failback",
    incident_id: Annotated[str | None, INCIDENT_FIELD] = None,
    dry_run: Annotated[bool, Field(description="Print the exact plan and change nothing")] = False,
    operator: Annotated[str, Field(max_length=100, description="Who launched it")] = "unknown",
) -> dict[str, Any]:
    request = SwitchRequest.validate_launch(environment, reason, incident_id, operator, prefix="fb")
    topo = runtime.topology(request.environment)
    record = request.record("failback", "planned", dry_run)
    refuse_a_completed_incident(record, incident_id)
    # The lock outlives the evidence: a duplicate launch waiting for it then reads the
    # record this run wrote (flows.region_lock.lock_step).
    with ExitStack() as held, published(record):
        _run(topo, record, dry_run, held)
    return record.model_dump(mode="json")


EARLY = " (before the fence, outside the outage: its instances reach the new secret version)"


def scales_early(state: ServiceState) -> bool:
    """Whether a primary service may scale up before the fence, so that its scale-up is
    no part of the outage: whatever instances it starts reach the secret version the
    failback adds later. A service whose reader is unknown waits for the version."""
    return state.secret_reader is not None and state.secret_reader.follows_a_later_version


def failback_plan(
    topo: Topology,
    old_primary: InstanceState | None,
    promoted_protected: bool,
    export_uri: str,
    secondary_states: list[ServiceState],
    primary_states: list[ServiceState],
    secondary_export_uri: str,
    repoint: list[str] | None = None,
    version: str | None = None,
    rebuilt: InstanceState | None = None,
) -> list[str]:
    """The failback's steps as lines. ``old_primary``: the stale primary to export and
    delete, if it is still there; ``rebuilt``: the primary-region instance an earlier run
    of this incident created in its place (its label says so): kept, its creation waited
    for, or checked (one failed or suspended stops the run, ``sql_create_replica``)."""
    primary, secondary = topo.regions.primary, topo.regions.secondary
    old, promoted = topo.cloud_sql.primary, topo.cloud_sql.replica
    lines = []
    if repoint and version:
        lines.append(repoint_plan_line(primary.name, repoint, version, old.instance))
    protect = old_primary is not None and old_primary.deletion_protection
    if old_primary is not None:
        lines.append(f"export {old.project}:{old.instance} (stale primary) to {export_uri}")
        if protect:
            lines.append(f"lift deletion protection on {old.instance} (it is exported first)")
        lines.append(f"delete {old.project}:{old.instance}")
    lines += [
        _rebuild_line(old, primary.name, promoted.instance, protect, rebuilt),
        # Outside the outage: the services whose instances reach the new version however
        # they start scale up now; the others only once it exists.
        *[
            scale_line(primary.name, s.name, st, s.active_scaling) + EARLY
            for s, st in zip(topo.services, primary_states, strict=True)
            if scales_early(st)
        ],
        *[fence_line(secondary.name, st) for st in secondary_states],
        database_fence_line(topo, promoted),
        f"wait for {old.instance} to receive all the WAL {promoted.instance} wrote, then "
        "promote it",
        database_open_line(topo, old),
        f"add a version of secret {topo.cloud_sql.app_secret.resource} naming {old.instance}"
        " (apps reading it from a volume at latest follow at once; instances that start"
        " read it as they start)",
        # Before the fence is lifted: stale-DNS clients still reach the secondary after.
        *reader_lines(primary.name, primary_states),
        *reader_lines(secondary.name, secondary_states),
        # A failover that could not repoint them kept its fence on the primary's services.
        *[
            f"lift the fence a failover kept: {primary.name}/{st.service} ingress → "
            f"{st.ingress_before or 'unknown'}"
            for st in primary_states
            if st.fenced_by
        ],
        *[
            scale_line(primary.name, s.name, st, s.active_scaling)
            for s, st in zip(topo.services, primary_states, strict=True)
            if not scales_early(st)
        ],
        *[
            f"DNS {r.name} {r.type} → {','.join(r.rrdatas[RegionRole.primary])} (ttl {r.ttl})"
            for r in topo.dns.records
        ],
        *[f"invalidate {topo.cdn.url_map} {topo.cdn.host}{p}" for p in topo.cdn.paths],
        f"verify {len(topo.health.checks)} health check(s) reach {primary.name}",
        backups_line(topo, old.instance, promoted.instance),
        *[lift_line(secondary.name, st) for st in secondary_states],
        *[
            scale_line(secondary.name, s.name, st, s.standby_scaling)
            for s, st in zip(topo.services, secondary_states, strict=True)
        ],
        f"export {promoted.project}:{promoted.instance} to {secondary_export_uri} "
        "(it took writes until the fence)",
        *(
            [f"lift deletion protection on {promoted.instance} (it is exported first)"]
            if promoted_protected
            else []
        ),
        f"replace {promoted.project}:{promoted.instance} "
        f"by a replica of {old.instance} in {secondary.name}"
        + (" with deletion protection, as it had" if promoted_protected else ""),
    ]
    return lines


def _run(topo: Topology, record: RunRecord, dry_run: bool, held: ExitStack) -> None:
    """The failback; the region lock, once taken, is held on ``held`` until it ends."""
    logger = get_run_logger()
    env = topo.environment
    primary, secondary = topo.regions.primary, topo.regions.secondary
    old, promoted = topo.cloud_sql.primary, topo.cloud_sql.replica
    database = topo.cloud_sql.databases[0]
    backups = f"gs://{topo.backups.bucket}/failback/{record.incident_id}"
    export_uri = f"{backups}/{old.instance}.sql"
    secondary_export_uri = f"{backups}/{promoted.instance}.sql"
    started = time.perf_counter()
    take_lock = hold(held, record)  # taken once: by the gate, else before the changes

    with record.step("preflight") as step:
        secondary_states = describe_services(topo, secondary.project, secondary.name)
        first, health = gate_primary(topo, record, secondary_states, dry_run, take_lock)
        source = _maybe(lambda: describe(env, promoted.project, promoted.instance))
        old_state = _maybe(lambda: describe(env, old.project, old.instance))
        # The label says this incident already rebuilt the primary-region instance: a
        # resumed run must not mistake it for the stale old primary and delete it.
        rebuilt = old_state is not None and rebuilt_by(old_state.labels, record)
        if not rebuilt and (source is None or source.is_replica):
            raise PreflightRefused(
                f"failback refused: {promoted.instance} is not a promoted primary; "
                "there is no failover to undo"
            )
        primary_states = describe_services(topo, primary.project, primary.name)
        stale = old_state is not None and not rebuilt
        # A failover made while the primary region was down could not roll its env-var
        # readers: they still write to the stale primary this run exports, then deletes.
        version = secret_manager_latest_version(env) if stale else None
        repoint = stale_readers(primary.name, primary_states, version)
        step.detail = f"primary {health}; rebuilt already: {rebuilt}"
    record.before = {
        "old_primary": old_state.model_dump() if old_state else None,
        "promoted": source.model_dump() if source else None,
        "secondary_services": [st.model_dump() for st in secondary_states],
        "primary_services": [st.model_dump() for st in primary_states],
    }
    record.plan = first + failback_plan(
        topo,
        old_state if stale else None,
        bool(source and source.deletion_protection),
        export_uri,
        secondary_states,
        primary_states,
        secondary_export_uri,
        repoint=repoint,
        version=version,
        rebuilt=old_state if rebuilt else None,
    )
    logger.info("plan:\n%s", "\n".join(record.plan))
    if dry_run:
        record.finish("planned")
        return

    take_lock()  # the region-lock step, unless the gate took the lock already
    if repoint and version:
        with record.step("repoint-primary-readers") as step:
            step.detail = str(refresh_secret_readers(topo, record, version, required=[primary]))
    if not rebuilt:
        with record.step("preserve-old-primary") as step:
            if stale:
                resumable(sql_export_database, record, "export")(
                    env, old.project, old.instance, database, export_uri
                )
                storage_require_object(env, export_uri)
            protected = _unprotect_exported(record, env, old.project, old.instance, "old")
            if stale:
                resumable(sql_delete_instance, record, "delete-old")(env, old.project, old.instance)
                step.detail = f"exported to {export_uri}, then deleted" + (
                    " (its deletion protection lifted after the export)" if protected else ""
                )
            else:
                step.outcome = "unchanged"
        with record.step("rebuild-primary-replica") as step:
            made = _rebuild_replica(record, old, promoted, protected)
            step.detail = f"{made.name} replicates {made.master}" + (
                "; deletion protection on, as the stale primary had" if protected else ""
            )
    elif old_state is not None and _not_serving(old_state):
        # Labelled at creation: a run killed right after asking for the replica leaves
        # it this incident's while Cloud SQL still creates it. Its create operation is
        # waited for (sql_create_replica joins it), before anything reads from it; one
        # failed or suspended stops the run there, before any fence.
        with record.step("rebuild-primary-replica") as step:
            made = _rebuild_replica(record, old, promoted, bool(old_state.deletion_protection))
            step.detail = f"{made.name} replicates {made.master}: " + (
                "its creation was waited for"
                if old_state.state == "PENDING_CREATE"
                else f"it was {old_state.state}, and is RUNNABLE now"
            )
    early = [
        s.name for s, st in zip(topo.services, primary_states, strict=True) if scales_early(st)
    ]
    scaled: list[ScaleResult] = []
    if early:
        with record.step("scale-primary") as step:
            scaled += _scale(record, env, primary.project, primary.name, topo, True, early)
            step.detail = "before the fence: " + "; ".join(r.describe() for r in scaled)
    with (
        fenced(topo, record, RegionRole.secondary, old) as fence,
        database_fenced(topo, record, promoted, old),
    ):
        received = sql_wait_received(env, old.project, old.instance, timeout_s=300)
        record.lag = received.model_dump(mode="json")
        if not received.complete:
            # A failback is planned: it waits rather than lose a write. Nothing is promoted,
            # so the fence is lifted on the way out and a re-run starts from here.
            raise PermanentError(
                f"failback: {old.instance} has not received all the WAL of "
                f"{promoted.instance} ({received.describe()}); not promoted, nothing lost: "
                "re-run the incident once replication is back"
            )
        # The apps' roll runs while the promotion does (flows/failback_promotion.py):
        # before the primary's services scale up, so instances that start find the new
        # version, and in both regions before the fence is lifted (stale-DNS clients
        # still reach the secondary).
        promote_and_connect(topo, record, fence, old, promoted, received)
        open_promoted(topo, record, old)
        lift_fences(topo, record, RegionRole.primary, primary_states, "lift-failover-fence")
        late = [s.name for s in topo.services if s.name not in early]
        if late:
            with record.step("scale-primary-after-secret") as step:
                more = _scale(record, env, primary.project, primary.name, topo, True, late)
                scaled += more
                step.detail = "; ".join(r.describe() for r in more)
        with record.step("dns-switch") as step:
            switched = [
                resumable(dns_switch_record, record, "dns")(
                    env, r.name, r.rrdatas[RegionRole.primary], r.ttl, r.type
                )
                for r in topo.dns.records
            ]
            step.detail = "; ".join(f"{s.after.describe()}" for s in switched)
        with record.step("cdn-purge") as step:
            for path in topo.cdn.paths:
                cdn_invalidate(env, topo.cdn.host, path, request_id=request_id(record, path))
        with record.step("verify") as step:
            verified = health_verify(env, Target.public, topo.health.verify_timeout_s, primary.name)
            step.detail = verified.summary()
        record.outage_seconds = fence.seconds_held()
        record.rto_seconds = time.perf_counter() - started
    # Outside the outage, and before the promoted secondary, whose settings it copies,
    # is replaced by a replica.
    backups_on_new_primary(topo, record, old, promoted)
    with record.step("scale-secondary-standby") as step:
        everyone = [s.name for s in topo.services]
        standby = _scale(record, env, secondary.project, secondary.name, topo, False, everyone)
        step.detail = "; ".join(r.describe() for r in standby)
    with record.step("rebuild-secondary-replica") as step:
        current = _maybe(lambda: describe(env, promoted.project, promoted.instance))
        if (
            current is not None
            and current.is_replica
            and (current.master or "").endswith(old.instance)
        ):
            step.outcome = "unchanged"
            step.detail = f"{current.name} replicates {current.master} already"
        else:
            step.detail = _replace_secondary(
                record, topo, current is not None, secondary_export_uri
            )
    record.after = {
        "primary": describe(env, old.project, old.instance).model_dump(),
        "replica": describe(env, promoted.project, promoted.instance).model_dump(),
        "dns": [s.after.model_dump() for s in switched],
        "primary_services": [r.model_dump() for r in scaled],
        "secondary_services": [r.model_dump() for r in standby],
    }
    record.finish("completed")


def _not_serving(rebuilt: InstanceState) -> bool:
    """A replica this incident rebuilt that does not serve (yet): the rebuild step runs
    again for it, and waits for its creation or refuses it."""
    return rebuilt.is_replica and rebuilt.state != "RUNNABLE"


def _rebuild_line(
    old: SqlInstanceRef,
    region: str,
    master: str,
    protect: bool,
    rebuilt: InstanceState | None,
) -> str:
    name = f"{old.project}:{old.instance}"
    if rebuilt is None:
        return f"create {name} in {region} as a replica of {master}" + (
            " with deletion protection, as the stale primary had" if protect else ""
        )
    if rebuilt.is_replica and rebuilt.state == "PENDING_CREATE":
        return (
            f"wait for the creation of {name} as a replica of {master}, asked for by an "
            "earlier run of this incident"
        )
    if _not_serving(rebuilt):
        return (
            f"check {name}, which an earlier run of this incident rebuilt: it is "
            f"{rebuilt.state}, and the run stops there unless it becomes RUNNABLE"
        )
    return f"keep {name}: an earlier run of this incident rebuilt it"


def _rebuild_replica(
    record: RunRecord, old: SqlInstanceRef, promoted: SqlInstanceRef, protected: bool
) -> InstanceState:
    """The primary-region instance as a replica of the promoted one, labelled as this
    incident's: created, or its creation (a killed run's) waited for."""
    made: InstanceState = resumable(sql_create_replica, record, "replica")(
        record.environment,
        old.project,
        old.instance,
        old.region,
        promoted.instance,
        rebuilt_label(record),
        deletion_protection=protected,
    )
    return made


def _replace_secondary(record: RunRecord, topo: Topology, exists: bool, export_uri: str) -> str:
    """Export the promoted secondary (it was the primary until the fence: writes it took
    may be nowhere else), then replace it by a replica of the new primary.

    ``exists`` False is a resumed run whose earlier try deleted it, after the export."""
    env = topo.environment
    old, promoted = topo.cloud_sql.primary, topo.cloud_sql.replica
    if exists:
        resumable(sql_export_database, record, "export-secondary")(
            env, promoted.project, promoted.instance, topo.cloud_sql.databases[0], export_uri
        )
        storage_require_object(env, export_uri)
    protected = _unprotect_exported(record, env, promoted.project, promoted.instance, "secondary")
    if exists:
        resumable(sql_delete_instance, record, "delete-secondary")(
            env, promoted.project, promoted.instance
        )
    made = resumable(sql_create_replica, record, "secondary-replica")(
        env,
        promoted.project,
        promoted.instance,
        promoted.region,
        old.instance,
        deletion_protection=protected,
    )
    return f"exported to {export_uri}; {made.name} replicates {made.master}" + (
        "; deletion protection kept" if protected else ""
    )


def _unprotect_exported(record: RunRecord, env: str, project: str, instance: str, key: str) -> bool:
    """Lift the deletion protection of an instance exported and about to be replaced;
    returns whether it had protection, so that its replacement gets it back.

    Called only after the export is verified, and also when the instance is already gone:
    the call is cached per incident, so a resumed run whose instance an earlier run
    deleted still learns whether it was protected (a live read would say nothing).
    """
    lifted: bool = resumable(sql_set_deletion_protection, record, f"unprotect-{key}")(
        env, project, instance, False
    )
    return lifted


def _scale(
    record: RunRecord,
    env: str,
    project: str,
    region: str,
    topo: Topology,
    active: bool,
    services: list[str],
) -> list[ScaleResult]:
    """Scale ``services`` of a region to their active or standby bounds, concurrently."""
    step = "scale-active" if active else "scale-standby"
    futures = [
        resumable(run_scale_service, record, step).submit(
            env,
            project,
            region,
            s.name,
            (s.active_scaling if active else s.standby_scaling).min,
            (s.active_scaling if active else s.standby_scaling).max,
        )
        for s in topo.services
        if s.name in services
    ]
    return [future.result() for future in futures]


def _maybe(read: Any) -> Any:
    from google.api_core import exceptions as gexc

    try:
        return read()
    except gexc.NotFound:
        return None
