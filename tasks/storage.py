"""Cloud Storage: the region-switch lease and JSON objects (run records)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]
from prefect import get_run_logger
from pydantic import BaseModel, Field

from lifeboat import runtime
from tasks.errors import LockHeld, PermanentError, TransientError
from tasks.retrying import calling, cloud_task


class Lease(BaseModel):
    environment: str
    incident_id: str
    flow: str
    holder: str
    # The Prefect flow run that took it: a re-run of the incident frees that run's Prefect
    # slot when the run is over (flows.region_slot). "" for a run outside Prefect.
    flow_run_id: str = ""
    acquired_at: datetime
    expires_at: datetime
    generation: int = 0
    resumed: bool = Field(
        False, description="this incident held it already: a crashed run of it, or one still going"
    )
    # Which write this is: a write the client re-sent after its first landed fails its
    # precondition, and the lease then read back is this one, not another run's.
    token: str = Field(default_factory=lambda: uuid.uuid4().hex)
    # A released lease stays as an object that says so (a tombstone), never deleted: a
    # create the client gave up on (ifGenerationMatch=0) can still be applied later, and
    # into an empty name it would bring back the lease of an incident that has ended,
    # refusing every switch until it expired. Over a tombstone it fails its precondition.
    released: bool = False

    def describe(self) -> str:
        return (
            f"{self.flow} for incident {self.incident_id} (held by {self.holder} since "
            f"{self.acquired_at:%Y-%m-%d %H:%M:%S} UTC, expires {self.expires_at:%H:%M:%S} UTC)"
        )


def _bucket(environment: str) -> storage.Bucket:
    topo = runtime.topology(environment)
    client = runtime.clients(environment).storage(topo.regions.primary.project)
    return client.bucket(topo.backups.records_bucket)


def lease_object(environment: str) -> str:
    return f"locks/{environment}/region-switch.json"


@cloud_task(timeout_seconds=60, task_run_name="lease-acquire-{incident_id}")
def lease_acquire(
    environment: str,
    incident_id: str,
    flow: str,
    holder: str,
    ttl_s: float = 3600,
    take_own: bool = False,
    flow_run_id: str = "",
) -> Lease:
    """Take the environment's region-switch lease with a generation precondition.

    Read, then written on the generation read (0: the name was never used), so of two
    writers exactly one wins; this fences even runs that bypass the Prefect server
    (break-glass). A released or expired lease is taken over.

    A lease this incident holds already (a crashed run's, or one still going) is returned
    as it is, ``resumed`` and unwritten, unless ``take_own``: the caller waits for the
    Prefect slot first, and takes it then (flows.region_lock), so a run that gives up
    waiting leaves the lease as the other run wrote it.
    """
    now = datetime.now(UTC)
    lease = Lease(
        environment=environment,
        incident_id=incident_id,
        flow=flow,
        holder=holder,
        flow_run_id=flow_run_id,
        acquired_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    # Each call with the product's own timeout: the library's default is 60 s.
    timeout = runtime.call_timeout(environment)
    bucket, name = _bucket(environment), lease_object(environment)
    with calling("lease-acquire", f"gs://{bucket.name}/{name}"):
        # Another writer between the read and the write fails its precondition: read
        # again, once (a new Blob: a read pins the generation it saw).
        for _ in range(2):
            blob = bucket.blob(name)
            current = _current(blob, timeout)
            resumed = False
            if current is not None:
                if current.token == lease.token:  # our own write, re-sent by the client
                    return lease.model_copy(update={"generation": blob.generation})
                free = current.released or current.expires_at <= now
                if current.incident_id != incident_id and not free:
                    raise LockHeld(
                        f"region lock for {environment} is held: {current.describe()}; "
                        "a second switch is refused, not queued"
                    )
                resumed = current.incident_id == incident_id and not current.released
                if resumed and not take_own:
                    return current.model_copy(
                        update={"generation": blob.generation, "resumed": True}
                    )
                if not resumed and not current.released:
                    get_run_logger().warning("taking over an expired lease: %s", current.describe())
            try:
                blob.upload_from_string(
                    lease.model_dump_json(),
                    content_type="application/json",
                    if_generation_match=0 if current is None else blob.generation,
                    timeout=timeout,
                )
            except gexc.PreconditionFailed:
                continue
            return lease.model_copy(update={"generation": blob.generation, "resumed": resumed})
    raise TransientError("lease-acquire: the lease changed while taking it, twice; re-reading")


def _current(blob: storage.Blob, timeout: float) -> Lease | None:
    """The lease object's body, and its generation on ``blob``, from one download (GCS
    sends the generation of what it serves in ``x-goog-generation``); None if absent."""
    try:
        current = Lease.model_validate_json(blob.download_as_bytes(timeout=timeout))
    except gexc.NotFound:
        return None
    if blob.generation is None:  # never written over unconditionally
        raise TransientError("lease: the download named no generation; reading again")
    return current


@cloud_task(timeout_seconds=60, task_run_name="lease-release-{incident_id}")
def lease_release(environment: str, incident_id: str) -> bool:
    """Mark the lease released if this incident still holds it (the object stays: see
    ``Lease.released``).

    Idempotent: a lease already released, or held by someone else, is left alone.
    """
    blob = _bucket(environment).blob(lease_object(environment))
    timeout = runtime.call_timeout(environment)
    with calling("lease-release", f"gs://{blob.bucket.name}/{blob.name}"):
        current = _current(blob, timeout)
        if current is None or current.incident_id != incident_id or current.released:
            return False
        try:
            blob.upload_from_string(
                # Expired too: a Lifeboat from before tombstones reads it as free.
                current.model_copy(
                    update={"released": True, "expires_at": datetime.now(UTC)}
                ).model_dump_json(),
                content_type="application/json",
                if_generation_match=blob.generation,
                timeout=timeout,
            )
        except (gexc.NotFound, gexc.PreconditionFailed):
            return False
    return True


def read_lease(environment: str) -> Lease | None:
    """The lease a region switch holds, if any (expired or not); None once released."""
    blob = _bucket(environment).blob(lease_object(environment))
    lease = _current(blob, runtime.call_timeout(environment))
    return None if lease is None or lease.released else lease


def _object(environment: str, bucket: str, name: str) -> storage.Blob:
    topo = runtime.topology(environment)
    return (
        runtime.clients(environment).storage(topo.regions.primary.project).bucket(bucket).blob(name)
    )


@cloud_task(timeout_seconds=120, task_run_name="write-record-{name}")
def storage_write_json(environment: str, bucket: str, name: str, body: dict[str, Any]) -> str:
    """Write a JSON object and return its gs:// URI.

    Idempotent: the same name is overwritten with the latest record of the run.
    """
    blob = _object(environment, bucket, name)
    with calling("write-record", f"gs://{bucket}/{name}"):
        blob.upload_from_string(
            json.dumps(body, indent=2, default=str, sort_keys=True),
            content_type="application/json",
            timeout=runtime.call_timeout(environment),
        )
    return f"gs://{bucket}/{name}"


# One attempt, 10 s: it stands before a switch's first step, and its caller goes on
# without it (flows.resume.refuse_a_completed_incident).
@cloud_task(timeout_seconds=10, retries=0, task_run_name="read-record-{name}")
def storage_read_json(environment: str, bucket: str, name: str) -> dict[str, Any] | None:
    """A JSON object, or None when there is none. Read-only."""
    blob = _object(environment, bucket, name)
    with calling("read-record", f"gs://{bucket}/{name}"):
        try:
            # retry=None: the client's own retry would wait up to 120 s on a 5xx.
            data = blob.download_as_bytes(timeout=runtime.call_timeout(environment), retry=None)
            body = json.loads(data)
        except gexc.NotFound:
            return None
    return dict(body)


class ObjectDigest(BaseModel):
    uri: str
    size: int
    sha256: str
    generation: int
    head: bytes = Field(b"", description="the object's first bytes, to recognise its format")
    tail: bytes = Field(b"", description="its last bytes, to see that it is complete")


@cloud_task(timeout_seconds=3600, task_run_name="digest-{uri}")
def storage_digest_object(environment: str, uri: str, edge_bytes: int = 256) -> ObjectDigest:
    """Stream an object once and return its size, sha256, first and last bytes.

    Idempotent: read-only; pinned to the generation first seen, so a concurrent
    overwrite fails the read instead of mixing two objects.
    """
    topo = runtime.topology(environment)
    client = runtime.clients(environment).storage(topo.regions.primary.project)
    bucket_name, _, name = uri.removeprefix("gs://").partition("/")
    digest, size, head, tail = hashlib.sha256(), 0, b"", b""
    with calling("digest", uri):
        blob = client.bucket(bucket_name).get_blob(name, timeout=runtime.call_timeout(environment))
        if blob is None:
            raise PermanentError(f"digest: {uri} does not exist")
        pinned = client.bucket(bucket_name).blob(name, generation=blob.generation)
        with pinned.open("rb", chunk_size=8 << 20) as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                head = head or chunk[:edge_bytes]
                tail = (tail + chunk)[-edge_bytes:]
    return ObjectDigest(
        uri=uri,
        size=size,
        sha256=digest.hexdigest(),
        generation=int(blob.generation),
        head=head,
        tail=tail,
    )


@cloud_task(timeout_seconds=120, task_run_name="require-{uri}")
def storage_require_object(environment: str, uri: str) -> int:
    """Check that a copy exists and is not empty before what it copies is deleted.

    Returns:
        The object's size in bytes.

    Raises:
        PermanentError: the object is missing or empty; nothing may be deleted then.

    Idempotent: a read.
    """
    topo = runtime.topology(environment)
    client = runtime.clients(environment).storage(topo.regions.primary.project)
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    blob = client.bucket(bucket).blob(name)
    with calling("require-object", uri):
        try:
            blob.reload(timeout=runtime.call_timeout(environment))
        except gexc.NotFound:
            raise PermanentError(
                f"require-object: {uri} does not exist; refusing to go on"
            ) from None
    if not blob.size:
        raise PermanentError(f"require-object: {uri} is empty; refusing to go on")
    return int(blob.size)
