"""Cloud Storage: the backup catalog, i.e. the manifests in the backups bucket.

Every task takes an optional ``bucket``: the backups bucket by default, or one of the
topology's copy buckets (``backups.copies``), which hold the same layout.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.copies import verified_copy
from lifeboat.manifest import MANIFEST, AnySource, Manifest, backup_prefix, backup_time
from lifeboat.slices import SLICES
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task

# A backup writes its manifest last, after verification; a folder without one that is
# younger than this may still be writing, an older one was interrupted.
ORPHAN_GRACE = timedelta(days=1)


class Orphan(BaseModel):
    """A backup folder with objects but no manifest: nothing can restore from it."""

    source: AnySource
    backup_id: str

    @property
    def prefix(self) -> str:
        return backup_prefix(self.source, self.backup_id)

    @property
    def started_at(self) -> datetime:
        return backup_time(self.backup_id)


def backups_bucket(environment: str, name: str | None = None) -> storage.Bucket:
    """The backups bucket, or the named one of the topology's backup buckets.

    Raises:
        PermanentError: ``name`` is not one of the topology's backup buckets.
    """
    topo = runtime.topology(environment)
    client = runtime.clients(environment).storage(topo.regions.primary.project)
    if name is not None and name not in topo.backups.backup_buckets:
        raise PermanentError(
            f"bucket: {name!r} is not one of {environment}'s backup buckets "
            f"({', '.join(topo.backups.backup_buckets)})"
        )
    return client.bucket(name or topo.backups.bucket)


def list_manifests(
    environment: str, source: AnySource, bucket_name: str | None = None
) -> list[Manifest]:
    """Every readable manifest of a source, newest first; unreadable ones are logged."""
    bucket = backups_bucket(environment, bucket_name)
    found = []
    timeout = runtime.call_timeout(environment)
    for blob in bucket.list_blobs(prefix=f"{source}/", timeout=timeout):
        if not blob.name.endswith("/" + MANIFEST):
            continue
        try:
            found.append(Manifest.model_validate_json(blob.download_as_bytes(timeout=timeout)))
        except (ValueError, gexc.NotFound) as exc:
            # A manifest deleted while listing, or not ours: skip it, but say so.
            get_run_logger().warning("skipping %s: %s", blob.name, str(exc)[:200])
    return sorted(found, key=lambda m: m.backup_id, reverse=True)


def _where(environment: str, bucket: str | None, source: AnySource) -> str:
    return f"gs://{bucket or runtime.topology(environment).backups.bucket}/{source}/"


@cloud_task(timeout_seconds=120, task_run_name="catalog-list-{source}")
def catalog_list(environment: str, source: AnySource, bucket: str | None = None) -> list[Manifest]:
    """All backups of a source in a backup bucket, newest first.

    Idempotent: read-only.
    """
    with calling("catalog-list", _where(environment, bucket, source)):
        return list_manifests(environment, source, bucket)


@cloud_task(timeout_seconds=120, task_run_name="catalog-newest-{source}")
def catalog_newest(
    environment: str, source: AnySource, verified_only: bool = True, bucket: str | None = None
) -> Manifest | None:
    """The newest backup of a source (by default the newest that passed verification).

    In a copy bucket, "verified" also means that this copy was verified, and the
    manifest comes back pointing at the copy's objects. Idempotent: read-only.
    """
    with calling("catalog-newest", _where(environment, bucket, source)):
        for manifest in list_manifests(environment, source, bucket):
            if not verified_only:
                return manifest
            found = _readable_from(environment, manifest, bucket)
            if found is not None:
                return found
    return None


def _readable_from(environment: str, manifest: Manifest, bucket: str | None) -> Manifest | None:
    """The manifest as read from ``bucket`` if it stands for a verified backup there."""
    if bucket is None or bucket == runtime.topology(environment).backups.bucket:
        return manifest if manifest.verified else None
    if not verified_copy(manifest, bucket):
        return None
    return manifest.stored_in(bucket)


@cloud_task(timeout_seconds=120, task_run_name="catalog-get-{source}-{backup_id}")
def catalog_get(
    environment: str, source: AnySource, backup_id: str, bucket: str | None = None
) -> Manifest:
    """One backup's manifest; a missing one is a permanent error naming it.

    Read from a copy bucket, it points at the copy's objects, and a copy that was not
    verified is refused. Idempotent: read-only.
    """
    name = backup_prefix(source, backup_id) + MANIFEST
    where = backups_bucket(environment, bucket)
    with calling("catalog-get", f"gs://{where.name}/{name}"):
        data = where.blob(name).download_as_bytes(timeout=runtime.call_timeout(environment))
    manifest = Manifest.model_validate_json(data)
    if bucket is None or bucket == runtime.topology(environment).backups.bucket:
        return manifest
    if not verified_copy(manifest, bucket):
        raise PermanentError(f"catalog-get: the copy of {backup_id} in {bucket} is not verified")
    return manifest.stored_in(bucket)


@cloud_task(timeout_seconds=120, task_run_name="catalog-write-{manifest.source}")
def catalog_write(environment: str, manifest: Manifest) -> str:
    """Write (or overwrite) a backup's manifest; returns its gs:// URI.

    Idempotent: the manifest's name is fixed by its backup id.
    """
    bucket = backups_bucket(environment)
    with calling("catalog-write", f"gs://{bucket.name}/{manifest.manifest_name}"):
        bucket.blob(manifest.manifest_name).upload_from_string(
            manifest.model_dump_json(indent=2),
            content_type="application/json",
            timeout=runtime.call_timeout(environment),
        )
    return f"gs://{bucket.name}/{manifest.manifest_name}"


def catalog_write_quietly(environment: str, manifest: Manifest) -> None:
    """Write a manifest, logging a failure instead of raising it: for a backup already
    failed, whose own error is the one to report."""
    try:
        catalog_write(environment, manifest)
    except Exception as exc:
        get_run_logger().error("could not write %s: %s", manifest.manifest_name, exc)


@cloud_task(timeout_seconds=120, task_run_name="catalog-orphans-{source}")
def catalog_orphans(environment: str, source: AnySource, bucket: str | None = None) -> list[Orphan]:
    """Backup folders of a source that hold objects but no manifest, oldest first.

    Only folders named as Lifeboat names them (``<source>/<YYYY>/<MM>/<backup id>/``)
    count; anything else in the bucket is someone else's. Idempotent: read-only.
    """
    where = backups_bucket(environment, bucket)
    timeout = runtime.call_timeout(environment)
    folders: dict[str, bool] = {}  # backup id → holds a manifest
    with calling("catalog-orphans", f"gs://{where.name}/{source}/"):
        for blob in where.list_blobs(prefix=f"{source}/", timeout=timeout):
            parts = blob.name.split("/")
            if len(parts) < 5:
                continue
            try:
                ours = blob.name.startswith(backup_prefix(source, parts[3]))
            except ValueError:
                ours = False
            if ours:
                folders[parts[3]] = folders.get(parts[3], False) or parts[4:] == [MANIFEST]
    return [
        Orphan(source=source, backup_id=identifier)
        for identifier, has_manifest in sorted(folders.items())
        if not has_manifest
    ]


@cloud_task(timeout_seconds=600, task_run_name="catalog-delete-{manifest.backup_id}")
def catalog_delete(
    environment: str, manifest: Manifest | Orphan, bucket: str | None = None
) -> list[str]:
    """Delete a backup's objects, the manifest last, and return the names deleted.

    A MongoDB base backup goes with the change slices captured after it (nothing can
    replay them without it), and they go first. Deleting the manifest last means an
    interrupted deletion still lists the backup and the next run finishes it. ``bucket``
    names a copy bucket to delete from (default the backups bucket), where the same
    layout, slices included, is deleted the same way. Idempotent: objects already gone
    are skipped.
    """
    where = backups_bucket(environment, bucket)
    timeout = runtime.call_timeout(environment)
    deleted = []
    with calling("catalog-delete", f"gs://{where.name}/{manifest.prefix}"):
        prefixes = [manifest.prefix]
        if manifest.source == "mongodb":
            prefixes.insert(0, f"{SLICES}{manifest.backup_id}/")
        names = [b.name for p in prefixes for b in where.list_blobs(prefix=p, timeout=timeout)]
        names.sort(key=lambda n: n.endswith("/" + MANIFEST) and n.startswith(manifest.prefix))
        for name in names:
            try:
                where.blob(name).delete(timeout=timeout)
                deleted.append(name)
            except gexc.NotFound:
                continue
    return deleted
