"""What the sweeps do to the lab's cloud and read from it, through the product's clients."""

from __future__ import annotations

import json
from typing import Any

from google.cloud import run_v2

from lifeboat import runtime
from lifeboat.topology import Topology
from tasks.records import RECORD_FOLDERS


def deploy_release(topo: Topology, service: str, tag: str = "storm") -> None:
    """A new image with all traffic, as a release does: a rollback then has a target."""
    region = topo.regions.primary
    client = runtime.clients(topo.environment).run_services
    name = f"projects/{region.project}/locations/{region.name}/services/{service}"
    current = client.get_service(name=name)
    image = current.template.containers[0].image.rsplit(":", 1)[0]
    current.template.containers[0].image = f"{image}:{tag}"
    current.traffic = [
        run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
            percent=100,
        )
    ]
    client.update_service(service=current).result(timeout=120)  # type: ignore[no-untyped-call]


def read_record(topo: Topology, flow: str, incident: str) -> dict[str, Any]:
    """A run record as the flow wrote it to the records bucket."""
    bucket = runtime.clients(topo.environment).storage(topo.regions.primary.project)
    folder = RECORD_FOLDERS.get(flow, flow)
    blob = bucket.bucket(topo.backups.records_bucket).blob(f"{folder}/{incident}.json")
    record: dict[str, Any] = json.loads(blob.download_as_bytes())
    return record
