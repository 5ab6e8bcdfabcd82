"""The CDN's assets bucket: what it holds now, to copy it when it changed."""

from __future__ import annotations

from lifeboat import runtime
from lifeboat.manifest import CopiedObject
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task


@cloud_task(timeout_seconds=300, task_run_name="assets-list")
def assets_list(environment: str) -> tuple[str, dict[str, CopiedObject]]:
    """The assets bucket's name and each of its objects (generation, size, checksums).

    Idempotent: a read.
    """
    topo = runtime.topology(environment)
    bucket = topo.cdn.assets_bucket
    if bucket is None:
        raise PermanentError("assets: the topology names no cdn.assets_bucket to back up")
    client = runtime.clients(environment).storage(topo.cdn.project)
    with calling("assets-list", f"gs://{bucket}/"):
        blobs = client.bucket(bucket).list_blobs(timeout=runtime.call_timeout(environment))
        return bucket, {
            b.name: CopiedObject(
                generation=int(b.generation),
                bytes=int(b.size or 0),
                crc32c=str(b.crc32c),
                md5_hash=b.md5_hash,
            )
            for b in blobs
        }
