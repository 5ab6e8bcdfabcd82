"""Check an archived backup against its manifest: the object read back, its sha256, every
member decrypted and hashed. Shared by the MongoDB and the configuration backups."""

from __future__ import annotations

from datetime import UTC, datetime

from google.cloud import storage  # type: ignore[attr-defined]

from lifeboat.archive import ArchiveError, WrongKey, verify_archive
from lifeboat.manifest import Manifest


def checked(manifest: Manifest, blob: storage.Blob, key: bytes, kid: str) -> Manifest:
    """The manifest marked verified, or unverified with the reason: a wrong key or a
    mismatch is a result, not an error to retry. Read-only."""
    now = datetime.now(UTC)
    try:
        if manifest.key_id and manifest.key_id != kid:
            raise WrongKey(
                f"wrong key: the backup was encrypted with key id {manifest.key_id}, "
                f"the secret holds key id {kid}"
            )
        with blob.open("rb") as source:
            verify_archive(
                source,
                key,
                expected_object_sha256=manifest.archive.sha256 if manifest.archive else None,
                expected_files={p: f.sha256 for p, f in manifest.files.items()},
            )
    except ArchiveError as exc:
        return manifest.model_copy(
            update={"status": "unverified", "error": str(exc)[:500], "verified_at": None}
        )
    return manifest.model_copy(update={"status": "verified", "error": None, "verified_at": now})
