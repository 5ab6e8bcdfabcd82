"""Configuration and secrets into an encrypted archive in the backups bucket; its check.

The archive is the data backups' own format (lifeboat/archive: tar, gzip, AES-256-GCM
chunks, with the backup key), one JSON member per item (tasks/config_read.py). The
manifest lists each item and each member's sha256; the verification reads the object
back, checks its sha256, decrypts it and compares every member, as for MongoDB.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prefect import get_run_logger

from lifeboat import runtime
from lifeboat.archive import ArchiveWriter
from lifeboat.manifest import (
    ARCHIVE,
    ConfigItem,
    ConfigSource,
    Manifest,
    backup_prefix,
)
from tasks import config_read
from tasks.backup_archive import archived_manifest, encryption_key, verify_archived
from tasks.catalog import backups_bucket
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task

# What each archived kind holds, read in this order.
READERS: dict[ConfigSource, list[Callable[[str], Iterator[config_read.Captured]]]] = {
    "config": [
        config_read.run_services,
        config_read.dns_record_sets,
        config_read.url_map_and_backend_services,
    ],
    "secrets": [config_read.secrets],
}


@cloud_task(timeout_seconds=900, task_run_name="config-backup-{source}-{backup_id}")
def config_backup_to_gcs(environment: str, source: ConfigSource, backup_id: str) -> Manifest:
    """Read every item of ``source`` (config or secrets) and archive them, encrypted.

    Returns an *unverified* manifest. The items are read and archived in this one task,
    so secret values stay inside it: the archive and the manifest hold their digests.

    Idempotent: the archive's name is fixed by the backup id; a retry overwrites it.
    """
    if source not in READERS:
        raise PermanentError(f"config-backup: source {source!r} is not archived")
    key, kid = encryption_key(environment)
    bucket = backups_bucket(environment)
    name = backup_prefix(source, backup_id) + ARCHIVE
    uri = f"gs://{bucket.name}/{name}"
    started = datetime.now(UTC)
    items: list[ConfigItem] = []
    sink = io.BytesIO()  # configuration is kilobytes: built whole, then one upload
    with calling(f"{source}-backup", uri):
        with ArchiveWriter(sink, key=key, key_id=kid) as writer:
            for read in READERS[source]:
                for item in read(environment):
                    writer.add_bytes(item.path, item.data)
                    items.append(ConfigItem(kind=item.kind, name=item.name, path=item.path))
            summary = writer.close()
        blob = bucket.blob(name)
        blob.upload_from_string(
            sink.getvalue(),
            content_type="application/octet-stream",
            timeout=runtime.call_timeout(environment),
        )
    get_run_logger().info(
        "%s backup %s: %d items, %d bytes uploaded to %s",
        source,
        backup_id,
        len(items),
        summary.object_bytes,
        uri,
    )
    return archived_manifest(
        source, backup_id, environment, started, uri, summary, blob.generation, items=items
    )


@cloud_task(timeout_seconds=900, task_run_name="config-verify-{manifest.source}")
def config_verify_backup(environment: str, manifest: Manifest) -> Manifest:
    """Download the archive again, check its sha256, decrypt it and compare every member.

    Returns the manifest marked verified, or unverified with the reason; a wrong key or a
    mismatch is a result here, not a retry. Idempotent: read-only.
    """
    return verify_archived(environment, manifest, f"{manifest.source}-verify")
