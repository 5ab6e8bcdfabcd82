"""Read-only look-ups the readiness evaluation needs: does each named resource exist?

Each returns a short description of what it found and raises when the resource is
missing or unreachable; none of them changes anything.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.record import RunRecord
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task


@cloud_task(timeout_seconds=60, task_run_name="inventory-url-map")
def inventory_url_map(environment: str) -> str:
    """The CDN url-map. Idempotent: a read."""
    topo = runtime.topology(environment)
    with calling("inventory-url-map", f"{topo.cdn.project}/{topo.cdn.url_map}"):
        got = runtime.clients(environment).compute.call(
            lambda service: service.urlMaps().get(
                project=topo.cdn.project, urlMap=topo.cdn.url_map
            ),
            timeout=runtime.call_timeout(environment),
        )
    return f"url-map {got['name']} reachable"


@cloud_task(timeout_seconds=60, task_run_name="inventory-dns-zone")
def inventory_dns_zone(environment: str) -> str:
    """The DNS zone. Idempotent: a read."""
    topo = runtime.topology(environment)
    zone = runtime.clients(environment).dns(topo.dns.project).zone(topo.dns.zone, topo.dns.dns_name)
    with calling("inventory-dns-zone", f"{topo.dns.project}/{topo.dns.zone}"):
        if not zone.exists():
            raise PermanentError(f"inventory-dns-zone: zone {topo.dns.zone} does not exist")
    return f"zone {topo.dns.zone} ({topo.dns.dns_name}) reachable"


class BucketLocation(BaseModel):
    """Where a bucket keeps its data (Cloud Storage ``location`` and ``locationType``)."""

    bucket: str
    location: str
    location_type: str


@cloud_task(timeout_seconds=60, task_run_name="inventory-bucket-{bucket}")
def inventory_bucket(environment: str, bucket: str) -> BucketLocation:
    """A bucket and where it keeps its data. Idempotent: a read."""
    from google.api_core import exceptions as gexc

    topo = runtime.topology(environment)
    client = runtime.clients(environment).storage(topo.regions.primary.project)
    with calling("inventory-bucket", f"gs://{bucket}"):
        try:
            got = client.get_bucket(bucket, timeout=runtime.call_timeout(environment))
        except gexc.NotFound as exc:
            raise PermanentError(f"inventory-bucket: gs://{bucket} does not exist") from exc
    return BucketLocation(
        bucket=bucket, location=str(got.location), location_type=str(got.location_type)
    )


@cloud_task(timeout_seconds=120, task_run_name="inventory-newest-drill")
def inventory_newest_passed_drill(environment: str) -> RunRecord | None:
    """The newest recovery-drill record that passed (``drills/*.json``). Idempotent: a read."""
    from tasks.records import RECORD_FOLDERS

    topo = runtime.topology(environment)
    client = runtime.clients(environment).storage(topo.regions.primary.project)
    folder = RECORD_FOLDERS["recovery-drill"]
    newest: RunRecord | None = None
    with calling("inventory-drills", f"gs://{topo.backups.records_bucket}/{folder}/"):
        for blob in client.bucket(topo.backups.records_bucket).list_blobs(prefix=f"{folder}/"):
            record = RunRecord.model_validate_json(blob.download_as_bytes())
            if record.outcome != "completed" or record.ended_at is None:
                continue
            if newest is None or record.ended_at > (newest.ended_at or datetime.min):
                newest = record
    return newest
