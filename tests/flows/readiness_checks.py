"""Reading readiness as a test does: its table by row, and the evidence it judges."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from lab.prefect_api import PrefectApi
from lifeboat.record import RunRecord
from tests.backup.backup_checks import params, write_synthetic
from tests.flows.lab_checks import TOPOLOGY, run_records
from tests.labharness import Lab


def passed_drill(lab: Lab, age: timedelta) -> None:
    """A drill record as the recovery drill writes it, ended ``age`` ago."""
    ended = datetime.now(UTC) - age
    record = RunRecord(
        flow="recovery-drill",
        environment="lab",
        incident_id=f"drill-synth{int(age.total_seconds())}",
        reason="monthly recovery drill",
        trigger="test",
        operator="test",
        started_at=ended - timedelta(minutes=20),
        ended_at=ended,
        outcome="completed",
    )
    bucket = (
        lab.clients()
        .storage(TOPOLOGY.regions.primary.project)
        .bucket(TOPOLOGY.backups.records_bucket)
    )
    bucket.blob(f"drills/{record.incident_id}.json").upload_from_string(record.model_dump_json())


def fresh_backups(lab: Lab, age: timedelta = timedelta(hours=1)) -> None:
    write_synthetic(lab, "mongodb", age)
    write_synthetic(lab, "cloudsql", age)


def readiness(
    api: PrefectApi, lab: Lab
) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, str]]]:
    final = api.wait(api.launch("readiness/lab", params())["id"], timeout=180)
    [table] = [a for a in api.artifacts(final["id"]) if a["key"] == "readiness-lab"]
    data = table["data"]
    rows = json.loads(data) if isinstance(data, str) else data
    # Every readiness run leaves its record, with the table it judged and its verdict.
    [record] = run_records(lab, "readiness", final["id"])
    assert record["outcome"] == final["state"]["type"].lower()
    assert record["after"]["checks"] == rows
    return final, {(r["check"], r["target"]): r for r in rows}


def red(rows: dict[tuple[str, str], dict[str, str]]) -> set[tuple[str, str]]:
    return {key for key, row in rows.items() if row["status"] != "green"}
