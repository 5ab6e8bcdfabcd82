"""What the sweeps do to the lab's cloud and read from it, through the product's clients."""

from __future__ import annotations

import json
from typing import Any

from lifeboat import runtime
from lifeboat.topology import Topology
from reliability.releases import release
from tasks.records import RECORD_FOLDERS


def deploy_release(topo: Topology, service: str, tag: str = "storm") -> None:
    """A release in the primary region: a rollback then has a target."""
    region = topo.regions.primary
    name = f"projects/{region.project}/locations/{region.name}/services/{service}"
    release(runtime.clients(topo.environment).run_services, name, tag)


def read_record(topo: Topology, flow: str, incident: str) -> dict[str, Any]:
    """A run record as the flow wrote it to the records bucket."""
    bucket = runtime.clients(topo.environment).storage(topo.regions.primary.project)
    folder = RECORD_FOLDERS.get(flow, flow)
    blob = bucket.bucket(topo.backups.records_bucket).blob(f"{folder}/{incident}.json")
    record: dict[str, Any] = json.loads(blob.download_as_bytes())
    return record
