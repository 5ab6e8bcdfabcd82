"""recovery-drill: prove monthly that the backups restore, in time, and clean up after.

Seed 004's recovery-testing.sh, done so that it measures and always cleans up:
1. MongoDB: the newest verified archive into a scratch database ``drill_<date>_<id>``;
   counts and a sample of documents by hash against the manifest;
2. Cloud SQL: a scratch instance ``recovery-test-<date>-<id>`` in the secondary region,
   labelled with the drill id and an expiry; the newest verified backup run restored into
   it; the topology's integrity queries against the counts recorded at backup time;
   and point-in-time recovery: the backup's instance cloned as it was at the moment those
   counts were taken (``recovery-test-<date>-<id>-pitr``), which must give the same counts;
   configuration: the served record set of the newest config backup, put back under a
   scratch name (``lifeboat-drill-<date>-<id>.<zone>``) and compared with the archive;
3. application: the secondary's idle services in a test configuration (one instance),
   checked on the regional path only, so nothing depends on the primary;
4. RTO per data set (drill start → restored and verified) and in total, RPO (the age of
   the backup restored), each judged against ``drills.objectives``;
   With ``source_bucket`` (the monthly schedule: europe-west1) the manifests are read
   from that cross-region copy: MongoDB is restored from the archive's copy there, which
   proves it restorable; Cloud SQL still restores its backup run (an instance's backup
   runs are Cloud SQL's, not the bucket's), and the copy's SQL exports are only checked
   present, not restored;
5. cleanup in a finally path, and again from the cancellation and crash hooks; the daily
   ``drill-sweeper`` catches anything a ``kill -9`` leaves;
6. report: table + markdown artifacts, ``gs://<records>/drills/<drill id>.json``, event
   ``lifeboat.recovery-drill.<outcome>``, notification. A failed drill fails the run.

MongoDB, both Cloud SQL restores and the record set run at once; the app check waits for
the scratch instance, because the secondary's apps need a writable database in their
region.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from prefect import Flow, flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.objects import FlowRun, State
from prefect.logging import get_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.drill_steps import (
    DataSetResult,
    Scratch,
    application_check,
    cleanup,
    drill_cloudsql,
    drill_cloudsql_pitr,
    drill_config,
    drill_mongodb,
)
from flows.evidence import publish_run
from flows.launch import ENVIRONMENT_FIELD, SwitchRequest
from flows.restore import SOURCE_BUCKET, source_bucket_of
from lifeboat import runtime
from lifeboat.record import RunRecord
from lifeboat.topology import Topology
from tasks.cloud_sql_scratch import scratch_labels
from tasks.errors import PermanentError
from tasks.records import artifact_key


def drill_id_for(run_id: str) -> str:
    """Derived from the flow run, so the cancellation hook finds the same drill."""
    return f"drill-{run_id.replace('-', '')[:8]}"


def _cleanup_hook(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """Cancellation and crash: the finally path may not have run, so clean up here too."""
    environment = str((flow_run.parameters or {}).get("environment", ""))
    topo = runtime.topology(environment)
    for line in cleanup(topo, drill_id_for(str(flow_run.id))):
        get_logger("lifeboat.drill").info("cleanup after %s: %s", state.name, line)


@flow(
    name="recovery-drill",
    task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]
    on_cancellation=[_cleanup_hook],
    on_crashed=[_cleanup_hook],
)
def recovery_drill(
    environment: Annotated[str, ENVIRONMENT_FIELD],
    application: Annotated[
        bool, Field(description="Also bring the secondary's services up and check them")
    ] = True,
    operator: Annotated[str, Field(max_length=100, description="Who launched it")] = "schedule",
    source_bucket: Annotated[
        str | None,
        Field(
            pattern=SOURCE_BUCKET,
            description="Restore from this cross-region copy (its bucket or its location, "
            "e.g. europe-west1; the monthly schedule names europe-west1); default the "
            "backups bucket",
        ),
    ] = None,
) -> dict[str, Any]:
    started = datetime.now(UTC)
    run_id = flow_run.get_id()
    drill_id = drill_id_for(str(run_id) if run_id else f"{time.time_ns():x}")
    request = SwitchRequest.validate_launch(
        environment, "monthly recovery drill", drill_id, operator, prefix="drill"
    )
    # Refused before the record or any scratch resource exists.
    bucket = source_bucket_of(request.environment, source_bucket)
    topo = runtime.topology(request.environment)
    record = request.record("recovery-drill", "scheduled", False)
    scratch = Scratch.for_drill(topo, drill_id, started)
    record.before = {"scratch": scratch.model_dump(), "source_bucket": bucket}
    results: list[DataSetResult] = []
    try:
        results = _restore_and_check(topo, record, scratch, started, application, bucket)
    except BaseException as exc:
        record.finish("failed", str(exc)[:1000])
        raise
    finally:
        with record.step("cleanup") as step:
            done = cleanup(topo, drill_id)
            step.detail = "; ".join(done) or "nothing to clean"
            if any(line.startswith("FAILED") for line in done):
                step.outcome = "failed"
        record.after["cleanup"] = done
        _report(topo, record, results, started)
    failed = [r.data_set for r in results if not r.passed]
    if failed:
        raise PermanentError(
            f"recovery drill failed: {', '.join(failed)} (see {record.record_uri})"
        )
    return record.model_dump(mode="json")


def _restore_and_check(
    topo: Topology,
    record: RunRecord,
    scratch: Scratch,
    started: datetime,
    application: bool,
    bucket: str,
) -> list[DataSetResult]:
    expires = started + timedelta(hours=topo.drills.scratch_ttl_hours)
    labels = scratch_labels(scratch.drill_id, expires)
    results: list[DataSetResult] = []
    with record.step("restore") as step:
        futures = {
            "mongodb": drill_mongodb.submit(topo, scratch, started, expires, bucket),
            "cloudsql": drill_cloudsql.submit(topo, scratch, started, labels, bucket),
            "cloudsql-pitr": drill_cloudsql_pitr.submit(topo, scratch, started, labels, bucket),
            "config": drill_config.submit(topo, scratch, started, bucket),
        }
        for name, future in futures.items():
            results.append(_settle(topo, name, future.result))
        step.detail = "; ".join(f"{r.data_set}: {r.detail}" for r in results)
    cloudsql_up = results[1].checks_passed
    if application:
        with record.step("application") as step:
            if cloudsql_up:
                results.append(
                    _settle(topo, "application", lambda: application_check(topo, started))
                )
                step.detail = results[-1].detail
            else:
                step.outcome = "skipped"
                step.detail = "no restored database to run the secondary's services against"
                results.append(
                    DataSetResult(
                        data_set="application",
                        objective=topo.drills.objective("application"),
                        detail=step.detail,
                    )
                )
    return results


def _settle(topo: Topology, name: str, outcome: Any) -> DataSetResult:
    """A data set's result, or a failed row naming the error: one failure never hides others."""
    try:
        result = outcome()
        assert isinstance(result, DataSetResult)
        return result
    except Exception as exc:
        get_run_logger().error("%s failed: %s", name, exc)
        return DataSetResult(
            data_set=name,
            objective=topo.drills.objective(name),
            detail=str(exc)[:500],
        )


def _report(
    topo: Topology, record: RunRecord, results: list[DataSetResult], started: datetime
) -> None:
    total = DataSetResult(
        data_set="total",
        objective=topo.drills.objective("total"),
        rto_s=max((r.rto_s for r in results if r.rto_s is not None), default=None),
        rpo_s=max((r.rpo_s for r in results if r.rpo_s is not None), default=None),
        checks_passed=bool(results) and all(r.passed for r in results),
        detail=f"drill started {started:%Y-%m-%d %H:%M:%S} UTC",
    )
    rows = [r.row() for r in [*results, total]]
    record.rto_seconds = total.rto_s
    record.after["data_sets"] = rows
    record.after["verdict"] = "pass" if total.passed else "fail"
    record.plan = [
        f"{r['data set']}: {r['verdict']} (RTO {r['RTO s']} s, RPO {r['RPO s']} s)" for r in rows
    ]
    if record.outcome == "running":
        if total.passed:
            record.finish("completed")
        else:
            failed = ", ".join(str(r["data set"]) for r in rows[:-1] if r["verdict"] != "pass")
            record.finish("failed", f"failed: {failed or 'no data set restored'}")
    try:
        create_table_artifact(
            table=rows,
            key=artifact_key("recovery-drill", topo.environment),
            description=f"recovery drill {record.incident_id}: {record.after['verdict']}",
        )
    except Exception as exc:
        get_run_logger().error("could not publish the drill table: %s", exc)
    publish_run(record)
