"""What the archived backups (MongoDB, configuration, secrets) share: the backup key, the
manifest of an uploaded archive, and its verification by reading it back.

The archive itself is lifeboat/archive's format (tar, gzip, AES-256-GCM chunks); each
backup writes it its own way (MongoDB streams, the configuration is built whole), then
describes it here the same way, so that restore, copies and retention read one shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from google.cloud import storage  # type: ignore[attr-defined]

from lifeboat import runtime
from lifeboat.archive import ArchiveSummary, key_id, parse_key
from lifeboat.manifest import AnySource, FileDigest, Manifest, StoredObject, object_name
from lifeboat.secrets import read_secret
from tasks.archive_check import checked
from tasks.catalog import backups_bucket
from tasks.errors import PermanentError
from tasks.retrying import calling

READ_CHUNK = 8 << 20


def tool_version() -> str:
    return f"lifeboat {version('lifeboat')} (pymongo {version('pymongo')})"


def encryption_key(environment: str) -> tuple[bytes, str]:
    """The backup key and its id (topology ``backups.encryption_key_secret``)."""
    secret = runtime.topology(environment).backups.encryption_key_secret
    key = parse_key(read_secret(secret))
    return key, key_id(key)


def archived_manifest(
    source: AnySource,
    backup_id: str,
    environment: str,
    started: datetime,
    uri: str,
    summary: ArchiveSummary,
    generation: int | None,
    **fields: Any,
) -> Manifest:
    """The *unverified* manifest of an archive just uploaded to ``uri``: the object's size,
    sha256 and generation, and each member's digest; ``fields`` are the source's own."""
    return Manifest(
        source=source,
        backup_id=backup_id,
        environment=environment,
        started_at=started,
        ended_at=datetime.now(UTC),
        tool=tool_version(),
        key_id=summary.key_id,
        archive=StoredObject(
            uri=uri,
            bytes=summary.object_bytes,
            sha256=summary.object_sha256,
            generation=generation,
        ),
        files={p: FileDigest(bytes=f.size, sha256=f.sha256) for p, f in summary.files.items()},
        **fields,
    )


def archive_blob(environment: str, manifest: Manifest) -> storage.Blob:
    """The manifest's archive object, pinned to the generation its backup wrote."""
    if manifest.archive is None:
        raise PermanentError(f"backup {manifest.backup_id} has no archive in its manifest")
    # The backups bucket or a copy bucket (``Manifest.stored_in``), as the URI says.
    bucket_name, name = object_name(manifest.archive.uri)
    bucket = backups_bucket(environment, bucket_name)
    # Pinned to the generation the backup (or its copy) wrote: a replaced object is not it.
    return bucket.blob(name, generation=manifest.archive.generation, chunk_size=READ_CHUNK)


def verify_archived(environment: str, manifest: Manifest, step: str) -> Manifest:
    """Download the archive again, check its sha256, decrypt it and compare every member.

    Returns the manifest marked verified, or unverified with the reason; a wrong key or a
    mismatch is a result here, not a retry. Read-only.
    """
    key, kid = encryption_key(environment)
    blob = archive_blob(environment, manifest)
    with calling(step, manifest.archive.uri if manifest.archive else "?"):
        return checked(manifest, blob, key, kid)
