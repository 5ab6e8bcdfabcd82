"""Cross-region copies of backups: pure decisions, tested without a lab.

- A copy is verified by the checksums Cloud Storage keeps for every object: crc32c
  always, md5Hash for objects that are not composite. Google: "All Cloud Storage objects
  have a CRC32C hash", while "MD5 hashes are not supported for composite objects"
  (https://cloud.google.com/storage/docs/hashes-etags, now .../docs/data-validation).
  Size and crc32c must match; md5 must match where both objects have one.
- A copy bucket's backup counts only when its manifest is there (it is copied last) and
  that manifest records the copy in this bucket as verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lifeboat.manifest import Manifest


@dataclass(frozen=True)
class Checksums:
    """What Cloud Storage reports about one object's bytes."""

    bytes: int
    crc32c: str | None
    md5_hash: str | None


def mismatch(source: Checksums, copy: Checksums) -> str | None:
    """Why ``copy`` does not hold ``source``'s bytes, or None when it does."""
    if source.crc32c is None:
        return "the source reports no crc32c: the copy cannot be checked"
    if copy.bytes != source.bytes:
        return f"size {copy.bytes} != source {source.bytes}"
    if copy.crc32c != source.crc32c:
        return f"crc32c {copy.crc32c} != source {source.crc32c}"
    if source.md5_hash and copy.md5_hash and copy.md5_hash != source.md5_hash:
        return f"md5 {copy.md5_hash} != source {source.md5_hash}"
    return None


def verified_copy(manifest: Manifest, bucket: str) -> bool:
    """Whether a manifest read from copy bucket ``bucket`` stands for a restorable copy."""
    copy = manifest.copies.get(bucket)
    return manifest.verified and copy is not None and copy.verified


def newest_verified_copy(manifests: list[Manifest], bucket: str) -> Manifest | None:
    """The newest backup whose copy in ``bucket`` is verified (manifests read there)."""
    found = [m for m in manifests if verified_copy(m, bucket)]
    return max(found, key=lambda m: m.backup_id) if found else None


@dataclass(frozen=True)
class RegionCopy:
    """One copy bucket's newest verified copy of one source, for staleness and readiness."""

    bucket: str
    location: str
    backup_id: str | None
    age_hours: float | None

    def describe(self) -> str:
        if self.backup_id is None or self.age_hours is None:
            return f"{self.location} ({self.bucket}): no verified copy"
        return f"{self.location} ({self.bucket}): {self.backup_id}, {self.age_hours:.1f} h old"


def region_copy(manifests: list[Manifest], bucket: str, location: str, now: datetime) -> RegionCopy:
    newest = newest_verified_copy(manifests, bucket)
    if newest is None:
        return RegionCopy(bucket, location, None, None)
    return RegionCopy(bucket, location, newest.backup_id, newest.age_hours(now))
