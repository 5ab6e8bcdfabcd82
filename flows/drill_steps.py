"""The recovery drill's parts: each data set restored and proven, the app check, cleanup.

Each data set returns a ``DataSetResult`` the report turns into one table row. Names of
scratch resources come from the drill id, and every one of them carries it (a label on
the instance, a marker in the database), so cleanup needs nothing but the drill id: the
flow's finally path, its cancellation and crash hooks, and the sweeper all use it.
"""

from __future__ import annotations

import time
from datetime import datetime

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger
from pydantic import BaseModel

from flows.restore import restore_mongodb
from flows.sql_exports import ExportSource, import_exports, require_exports
from lifeboat.integrity import differences
from lifeboat.topology import DrillObjective, Topology
from tasks.catalog import catalog_newest
from tasks.cloud_run import run_describe_service, run_scale_service
from tasks.cloud_sql import sql_delete_instance
from tasks.cloud_sql_backups import sql_integrity_counts
from tasks.cloud_sql_pitr import rfc3339, sql_clone_to_point
from tasks.cloud_sql_scratch import (
    DRILL_LABEL,
    sql_claim_scratch,
    sql_create_scratch_instance,
    sql_list_scratch_instances,
    sql_restore_backup_run,
)
from tasks.config_restore import config_restore_item, find_item
from tasks.dns_scratch import dns_delete_scratch, dns_list_scratch, scratch_record_name
from tasks.errors import PermanentError
from tasks.health import Target, health_verify
from tasks.mongo import mongo_drop_database, mongo_sample_hashes
from tasks.mongo_scratch import mongo_list_scratch, mongo_mark_scratch
from tasks.retrying import fresh_task
from tasks.storage import read_lease

# The secondary's services run with this many instances during the drill's app check.
TEST_INSTANCES = 1
PITR_SUFFIX = "-pitr"


class DataSetResult(BaseModel):
    data_set: str
    backup: str = ""
    rto_s: float | None = None
    rpo_s: float | None = None
    objective: DrillObjective
    checks_passed: bool = False
    detail: str = ""

    @property
    def passed(self) -> bool:
        if not self.checks_passed or self.rto_s is None:
            return False
        if self.rto_s > self.objective.rto_minutes * 60:
            return False
        limit = self.objective.rpo_minutes
        return limit is None or (self.rpo_s is not None and self.rpo_s <= limit * 60)

    def row(self) -> dict[str, object]:
        rpo = self.objective.rpo_minutes
        return {
            "data set": self.data_set,
            "backup used": self.backup,
            "RTO s": None if self.rto_s is None else round(self.rto_s, 1),
            "RPO s": None if self.rpo_s is None else round(self.rpo_s, 1),
            "objectives": f"RTO ≤ {self.objective.rto_minutes:g} min"
            + (f", RPO ≤ {rpo:g} min" if rpo else ""),
            "verdict": "pass" if self.passed else "FAIL",
            "detail": self.detail,
        }


class Scratch(BaseModel):
    """Where one drill restores; every name is derived from the drill id."""

    drill_id: str
    database: str
    instance: str
    project: str
    region: str
    record: str  # the config item's copy: a record set under a scratch name in the zone

    @property
    def pitr_instance(self) -> str:
        """The clone a point-in-time restore makes (in its source's project and region:
        a clone cannot be placed elsewhere)."""
        return f"{self.instance}{PITR_SUFFIX}"

    @classmethod
    def for_drill(cls, topo: Topology, drill_id: str, started: datetime) -> Scratch:
        suffix = drill_id.rsplit("-", 1)[-1]
        return cls(
            drill_id=drill_id,
            database=f"drill_{started:%Y%m%d}_{suffix}",
            instance=f"recovery-test-{started:%Y%m%d}-{suffix}",
            # The primary's project holds its backup runs; the secondary region keeps the
            # drill free of the primary region, as an ungraceful recovery would be.
            project=topo.cloud_sql.primary.project,
            region=topo.regions.secondary.name,
            record=scratch_record_name(topo.dns.dns_name, started, suffix),
        )


@fresh_task(task_run_name="drill-mongodb")
def drill_mongodb(
    topo: Topology,
    scratch: Scratch,
    started: datetime,
    expires_at: datetime,
    bucket: str | None = None,
) -> DataSetResult:
    """Newest verified archive (in ``bucket``: the backups bucket or a copy) → scratch
    database → counts and sampled documents by hash."""
    env = topo.environment
    result = DataSetResult(data_set="mongodb", objective=topo.drills.objective("mongodb"))
    manifest = catalog_newest(env, "mongodb", True, bucket)
    if manifest is None:
        raise PermanentError(f"mongodb: there is no verified backup to restore in {bucket}")
    result.backup = manifest.backup_id + _copy_note(topo, bucket)
    result.rpo_s = (started - manifest.started_at).total_seconds()
    mongo_mark_scratch(env, scratch.database, scratch.drill_id, expires_at)
    report = restore_mongodb(env, manifest.backup_id, scratch.database, source_bucket=bucket)
    wrong = [
        f"{c.source} {c.documents}/{c.expected}"
        for c in report.collections
        if c.documents != c.expected
    ]
    mismatched = []
    sampled = 0
    # A sampled document changed while the dump ran is restored as it was at the backup's
    # end (its oplog replayed), not as the dump read it: its hash is not comparable.
    changed = report.oplog.changed_samples if report.oplog else {}
    for entry in manifest.collections:
        target = report.targets[entry.database]
        skip = set(changed.get(f"{entry.database}.{entry.name}", []))
        samples = {k: sha for k, sha in entry.samples.items() if k not in skip}
        got = mongo_sample_hashes(env, target, entry.name, list(samples))
        sampled += len(samples)
        mismatched += [f"{entry.name} {key}" for key, sha in samples.items() if got.get(key) != sha]
    result.rto_s = time.time() - started.timestamp()
    result.checks_passed = report.counts_match and not wrong and not mismatched
    result.detail = (
        f"{sum(report.documents.values())} documents in {len(report.collections)} collections"
        f"; {sampled - len(mismatched)}/{sampled} sampled documents identical"
        + (f"; counts differ: {', '.join(wrong)}" if wrong else "")
        + (f"; differ: {', '.join(mismatched[:5])}" if mismatched else "")
    )
    return result


@fresh_task(task_run_name="drill-cloudsql")
def drill_cloudsql(
    topo: Topology,
    scratch: Scratch,
    started: datetime,
    labels: dict[str, str],
    bucket: str | None = None,
) -> DataSetResult:
    """Newest verified backup (its manifest read from ``bucket``) → labelled scratch
    instance → the integrity queries. From the backups bucket the backup run is restored;
    from a copy, its SQL exports are imported: they are what outlives the instance, its
    backup runs and its region, so they are what the copy must prove."""
    env, sql = topo.environment, topo.cloud_sql
    result = DataSetResult(data_set="cloudsql", objective=topo.drills.objective("cloudsql"))
    manifest = catalog_newest(env, "cloudsql", True, bucket)
    from_copy = bucket not in (None, topo.backups.bucket)
    source = manifest.cloudsql if manifest is not None else None
    if manifest is None or source is None or (source.backup_run_id is None and not from_copy):
        raise PermanentError(f"cloudsql: there is no verified backup to restore in {bucket}")
    exports = ExportSource.of(manifest, bucket) if from_copy and bucket else None
    if exports is not None:
        require_exports(env, exports)  # before anything is made
    what = "its exports" if exports else f"run {source.backup_run_id}"
    result.backup = f"{source.instance} {what} ({manifest.backup_id})" + _copy_note(topo, bucket)
    result.rpo_s = (started - manifest.started_at).total_seconds()
    # The backup's own instance is the source: after a failover it is not the topology's
    # primary, and the scratch copies its settings (version, network, flags): as the
    # backup recorded them for an import, which needs nothing of the source.
    like = f"{source.project}:{source.instance}"
    spec = exports.spec if exports else None
    sql_create_scratch_instance(
        env, scratch.project, scratch.instance, scratch.region, labels, like=spec or like
    )
    if exports is not None:
        import_exports(env, scratch.project, scratch.instance, exports)
    elif source.backup_run_id is not None:
        sql_restore_backup_run(
            env,
            scratch.project,
            scratch.instance,
            source.project,
            source.instance,
            source.backup_run_id,
        )
    counts = sql_integrity_counts(env, scratch.project, scratch.instance, sql.databases[0])
    outside = differences(counts, source.integrity, source.integrity_after)
    return _judged(result, counts, outside, started, "the backup's")


@fresh_task(task_run_name="drill-config")
def drill_config(
    topo: Topology, scratch: Scratch, started: datetime, bucket: str | None = None
) -> DataSetResult:
    """Newest verified config backup → the served record set, put back under a scratch
    name → compared with the archive again: the copy must be exactly the archived set.

    A record set is the item that shows a configuration backup restorable without
    touching anything live; it is deleted in cleanup like every scratch resource.
    """
    env = topo.environment
    result = DataSetResult(data_set="config", objective=topo.drills.objective("config"))
    manifest = catalog_newest(env, "config", True, bucket)
    if manifest is None:
        raise PermanentError(f"config: there is no verified config backup to restore in {bucket}")
    served = topo.dns.records[0]
    item = find_item(manifest, f"{served.name} {served.type}")
    if item is None:
        raise PermanentError(f"config: backup {manifest.backup_id} holds no {served.name}")
    result.backup = manifest.backup_id + _copy_note(topo, bucket)
    result.rpo_s = (started - manifest.started_at).total_seconds()
    config_restore_item(env, manifest, item.path, scratch.record, apply=True)
    again = config_restore_item(env, manifest, item.path, scratch.record, apply=False)
    result.rto_s = time.time() - started.timestamp()
    # Judged by the copy as it is now: a retried apply whose first try landed applies
    # nothing the second time, and the copy is still right.
    result.checks_passed = again.exists and not again.fields
    result.detail = f"{item.name} restored as {scratch.record}: " + (
        "identical to the archive" if not again.fields else f"differs in {again.fields}"
    )
    return result


def _copy_note(topo: Topology, bucket: str | None) -> str:
    copy = topo.backups.copy_named(bucket) if bucket else None
    return f" (copy in {copy.location})" if copy else ""


@fresh_task(task_run_name="drill-cloudsql-pitr")
def drill_cloudsql_pitr(
    topo: Topology,
    scratch: Scratch,
    started: datetime,
    labels: dict[str, str],
    bucket: str | None = None,
) -> DataSetResult:
    """The newest verified backup's instance (its manifest read from ``bucket``), cloned
    as it was when the backup took its counts (point-in-time recovery) → claimed as
    scratch → the integrity queries, which must give those counts: the logs replayed to a
    moment hold exactly that moment."""
    env = topo.environment
    objective = topo.drills.objective("cloudsql-pitr")
    result = DataSetResult(data_set="cloudsql-pitr", objective=objective)
    manifest = catalog_newest(env, "cloudsql", True, bucket)
    source = None if manifest is None else manifest.cloudsql
    if source is None or source.counted_at is None:
        raise PermanentError(
            "cloudsql-pitr: no verified backup says when its counts were taken (backups "
            "made before this version do not): the next backup will"
        )
    point = rfc3339(source.counted_at)
    result.backup = f"{source.instance} at {point}"
    clone = scratch.pitr_instance
    sql_clone_to_point(env, source.project, source.instance, clone, point)
    sql_claim_scratch(env, source.project, clone, labels)
    counts = sql_integrity_counts(env, source.project, clone, topo.cloud_sql.databases[0])
    outside = differences(counts, source.integrity)  # that very moment: exactly
    return _judged(result, counts, outside, started, "the counts at that moment")


def _judged(
    result: DataSetResult,
    counts: dict[str, int],
    outside: list[str],
    started: datetime,
    against: str,
) -> DataSetResult:
    """A restore's integrity counts against the ones recorded (``outside``: those that
    fall outside them, lifeboat/integrity.py): all hold, or it fails."""
    result.rto_s = time.time() - started.timestamp()
    result.checks_passed = bool(counts) and not outside
    result.detail = ", ".join(f"{k}={v}" for k, v in counts.items()) + (
        f"; differ from {against}: {', '.join(outside)}" if outside else ""
    )
    return result


def _bounds(topo: Topology, service: str) -> tuple[int, int] | None:
    region = topo.regions.secondary
    state = run_describe_service(topo.environment, region.project, region.name, service)
    return None if state.scaling is None else (state.scaling.min, state.scaling.max)


def _drill_scaling(topo: Topology, service: str) -> tuple[int, int]:
    standby = next(s for s in topo.services if s.name == service).standby_scaling
    return max(TEST_INSTANCES, standby.min), standby.max


def application_check(topo: Topology, started: datetime) -> DataSetResult:
    """The secondary's services in a test configuration, checked on the regional path only."""
    env, region = topo.environment, topo.regions.secondary
    result = DataSetResult(data_set="application", objective=topo.drills.objective("application"))
    lease = read_lease(env)
    if lease is not None:
        raise PermanentError(f"application: a region switch is running ({lease.describe()})")
    scaled = []
    for svc in topo.services:
        standby = (svc.standby_scaling.min, svc.standby_scaling.max)
        # Only services idle at standby: one already serving (after a failover) is left alone.
        if _bounds(topo, svc.name) == standby and standby[0] < TEST_INSTANCES:
            low, high = _drill_scaling(topo, svc.name)
            run_scale_service(env, region.project, region.name, svc.name, low, high)
            scaled.append(svc.name)
    report = health_verify(env, Target.secondary, topo.health.verify_timeout_s, region.name)
    result.rto_s = time.time() - started.timestamp()
    result.checks_passed = report.all_ok
    result.backup = "secondary region"
    result.detail = f"scaled for the test: {', '.join(scaled) or 'none'}; {report.summary()}"
    return result


def cleanup(topo: Topology, drill_id: str) -> list[str]:
    """Delete what the drill made and put the secondary back; returns what it did.

    Every part runs even if another fails; a failure is reported in the list, and the
    sweeper is the second line.
    """
    env = topo.environment
    done: list[str] = []
    try:
        logger = get_run_logger()
    except MissingContextError:  # a cancellation or crash hook runs outside the flow run
        logger = get_logger("lifeboat.drill")
    projects = [topo.cloud_sql.primary.project, topo.regions.secondary.project]

    def attempt(what: str, action: object) -> None:
        try:
            assert callable(action)
            action()
        except Exception as exc:
            logger.error("cleanup %s failed: %s", what, exc)
            done.append(f"FAILED {what}: {str(exc)[:200]}")

    def instances() -> None:
        suffix = drill_id.rsplit("-", 1)[-1]
        for inst in sql_list_scratch_instances(env, projects):
            ours = inst.labels.get(DRILL_LABEL) == drill_id
            # A clone the run had no time to claim: named for this drill, still carrying
            # its source's labels and deletion protection.
            unclaimed = not ours and inst.name.endswith(f"-{suffix}{PITR_SUFFIX}")
            if unclaimed:
                sql_claim_scratch(env, inst.project, inst.name, {DRILL_LABEL: drill_id})
            if ours or unclaimed:
                sql_delete_instance(env, inst.project, inst.name)
                done.append(f"deleted instance {inst.name}")

    def databases() -> None:
        for db in mongo_list_scratch(env):
            if db.drill_id == drill_id:
                mongo_drop_database(env, db.name)
                done.append(f"dropped database {db.name}")

    def scaling() -> None:
        if read_lease(env) is not None:
            done.append("left the secondary's scaling alone: a region switch is running")
            return
        region = topo.regions.secondary
        for svc in topo.services:
            # Only a service still exactly in the drill's configuration goes back: anything
            # else was changed by someone else since (a failover), and is theirs.
            if (
                _bounds(topo, svc.name)
                == _drill_scaling(topo, svc.name)
                != (
                    svc.standby_scaling.min,
                    svc.standby_scaling.max,
                )
            ):
                run_scale_service(
                    env,
                    region.project,
                    region.name,
                    svc.name,
                    svc.standby_scaling.min,
                    svc.standby_scaling.max,
                )
                done.append(f"scaled {svc.name} back to standby")

    def records() -> None:
        suffix = drill_id.rsplit("-", 1)[-1]
        for record in dns_list_scratch(env):
            if record.suffix == suffix:
                dns_delete_scratch(env, record)
                done.append(f"deleted record set {record.name}")

    attempt("instances", instances)
    attempt("databases", databases)
    attempt("record sets", records)
    attempt("scaling", scaling)
    return done
