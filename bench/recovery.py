"""Data recovery to any point, against its plainer alternatives (issue 17 §5).

Figures, measured in this run against one lab (the bench lab's time scale):
- pitr_restore_s / backup_run_restore_s: ``restore-sql`` of the live primary to a moment
  (``instances.clone`` with ``pointInTime``: a base backup and its WAL replayed) and from
  a backup run (a new instance, then ``restoreBackup``), each start to end through the
  Prefect server; pitr_over_backup_run is the first ÷ the second;
- copy_mb_s: the MongoDB backup's cross-region copies (server-side rewrites into both
  copy buckets, verified by checksum): bytes copied ÷ the copies step's seconds;
- writer_ops_s / writer_ops_s_capturing / capture_overhead: a MongoDB writer's inserts
  per second alone, then while ``mongo-capture`` ships a slice; 1 - their ratio;
- slice_ship_s: that capture run, start to end; capture_rpo_s: the worst age of the
  newest shipped change, the deployment's schedule plus slice_ship_s (seed 004: RPO 300 s).

Usage: ``python -m bench.recovery [--mb 64] [--only capture]``. It starts its own lab
and stops it.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pymongo import MongoClient
from pymongo.collection import Collection

from bench.backup import generate
from bench.labctl import BenchLab, bench_lab, figure, records_bucket
from lifeboat import runtime
from lifeboat.topology import load_topology

DEPLOYMENTS = Path(__file__).resolve().parents[1] / "deployments" / "prefect.yaml"
WRITER_ALONE_S = 15.0


class Inserts(threading.Thread):
    """One client inserting small documents one at a time into a collection the backup
    holds (a new collection would be a gap in the capture), counting each acknowledged."""

    def __init__(self, uri: str, database: str) -> None:
        super().__init__(daemon=True)
        self.uri, self.database = uri, database
        self.times: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        client: MongoClient[dict[str, Any]]
        with MongoClient(self.uri) as client:
            target: Collection[dict[str, Any]] = client[self.database]["bench_0"]
            i = 0
            while not self.stop.is_set():
                target.insert_one({"_id": f"w-{i}", "at": time.time()})
                self.times.append(time.perf_counter())
                i += 1

    def rate(self, start: float, end: float) -> float:
        return sum(start <= t < end for t in self.times) / (end - start)


def _records(lab: BenchLab, flow_run_id: str) -> dict[str, Any]:
    """The record a run wrote to the records bucket, found by its flow run id."""
    for blob in records_bucket().list_blobs():
        found: dict[str, Any] = json.loads(blob.download_as_bytes())
        if found.get("flow_run_id") == flow_run_id:
            return found
    raise RuntimeError(f"no record of flow run {flow_run_id}")


def _newest_manifest(source: str) -> dict[str, Any]:
    topo = runtime.topology("lab")
    bucket = (
        runtime.clients("lab").storage(topo.regions.primary.project).bucket(topo.backups.bucket)
    )
    names = sorted(
        b.name for b in bucket.list_blobs(prefix=f"{source}/") if b.name.endswith("manifest.json")
    )
    manifest: dict[str, Any] = json.loads(bucket.blob(names[-1]).download_as_bytes())
    return manifest


def _completed(lab: BenchLab, deployment: str, parameters: dict[str, Any]) -> dict[str, Any]:
    final = lab.run(deployment, {"environment": "lab", **parameters}, timeout=1800)
    if final["state"]["type"] != "COMPLETED":
        raise RuntimeError(f"{deployment} did not complete: {final['state']}")
    return final


def copies(lab: BenchLab) -> dict[str, float]:
    final = _completed(lab, "backup/lab", {})
    steps = {s["name"]: s for s in _records(lab, final["id"])["steps"]}
    manifest = _newest_manifest("mongodb")
    copied = sum(o["bytes"] for c in manifest["copies"].values() for o in c["objects"].values())
    seconds = float(steps["mongodb-copies"]["seconds"])
    return {"copy_mb": copied / 1e6, "copy_s": seconds, "copy_mb_s": copied / 1e6 / seconds}


def restores(lab: BenchLab) -> dict[str, float]:
    run_id = _newest_manifest("cloudsql")["cloudsql"]["backup_run_id"]
    moment = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    pitr = _completed(
        lab, "restore-sql/lab", {"point_in_time": moment, "target_instance": "bench-pitr"}
    )
    plain = _completed(
        lab, "restore-sql/lab", {"backup_run": run_id, "target_instance": "bench-run"}
    )
    return {
        "pitr_restore_s": pitr["wall_s"],
        "backup_run_restore_s": plain["wall_s"],
        "pitr_over_backup_run": pitr["wall_s"] / plain["wall_s"],
    }


def capture(lab: BenchLab, uri: str, database: str) -> dict[str, float]:
    _completed(lab, "mongo-capture/lab", {})  # the chain's first slice (or its base)
    writer = Inserts(uri, database)
    writer.start()
    try:
        time.sleep(2)  # connected and steady
        alone_from = time.perf_counter()
        time.sleep(WRITER_ALONE_S)
        alone_to = time.perf_counter()
        final = _completed(lab, "mongo-capture/lab", {})
        capturing_to = time.perf_counter()
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    alone = writer.rate(alone_from, alone_to)
    capturing = writer.rate(alone_to, capturing_to)
    return {
        "writer_ops_s": alone,
        "writer_ops_s_capturing": capturing,
        "capture_overhead": 1 - capturing / alone,
        "slice_ship_s": final["wall_s"],
        "capture_rpo_s": capture_interval_s() + final["wall_s"],
    }


def capture_interval_s() -> float:
    """The lab mongo-capture deployment's schedule, as deployments/prefect.yaml sets it."""
    spec = yaml.safe_load(DEPLOYMENTS.read_text())
    [deployment] = [
        d
        for d in spec["deployments"]
        if d["entrypoint"].endswith(":mongo_capture") and d["name"] == "lab"
    ]
    return float(deployment["schedules"][0]["interval"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="MongoDB data to back up and copy")
    parser.add_argument(
        "--only", choices=["copies", "restores", "capture"], help="measure one part only"
    )
    args = parser.parse_args(argv)
    database = load_topology("lab").mongodb.databases[0]
    with bench_lab() as lab:
        uri = str(lab.endpoints["mongodb_uri"])
        generate(uri, database, args.mb)
        parts: dict[str, Callable[[], dict[str, float]]] = {
            "copies": lambda: copies(lab),
            "restores": lambda: restores(lab),
            "capture": lambda: capture(lab, uri, database),
        }
        for name, measure in parts.items():
            if args.only in (None, name):
                for figure_name, value in measure().items():
                    figure(figure_name, value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
