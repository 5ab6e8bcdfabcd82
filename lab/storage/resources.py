"""Bucket and object resources, and their JSON as the storage/v1 API shapes it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lab.storage.exceptions import InvalidArgument

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Object fields a client may set on insert, patch or update; the rest are server-owned.
WRITABLE_FIELDS = (
    "cacheControl",
    "contentDisposition",
    "contentEncoding",
    "contentLanguage",
    "contentType",
    "customTime",
    "eventBasedHold",
    "metadata",
    "temporaryHold",
)
_MULTI_REGIONS = {"US", "EU", "ASIA"}
# Predefined dual-regions, a pair of regions each (cloud.google.com/storage/docs/locations).
_DUAL_REGIONS = {"ASIA1", "EUR4", "EUR5", "EUR7", "EUR8", "NAM4"}


def location_type(location: str) -> str:
    """``locationType`` as Cloud Storage reports it for a bucket's ``location``."""
    if location in _MULTI_REGIONS:
        return "multi-region"
    return "dual-region" if location in _DUAL_REGIONS else "region"


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Google's timestamps: UTC, milliseconds, ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _etag(*parts: object) -> str:
    return base64.b64encode(hashlib.sha1(repr(parts).encode()).digest()[:9]).decode()


def writable_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The client-settable fields of an Object body; unset (None) ones are dropped."""
    fields = {k: body[k] for k in WRITABLE_FIELDS if body.get(k) is not None}
    if "metadata" in fields:
        fields["metadata"] = _string_map(fields["metadata"], "metadata")
        if not fields["metadata"]:
            del fields["metadata"]
    return fields


def patched_fields(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """PATCH semantics: named fields change, null clears, ``metadata`` merges per key."""
    fields = dict(current)
    for key in WRITABLE_FIELDS:
        if key not in changes:
            continue
        value = changes[key]
        if value is None:
            fields.pop(key, None)
        elif key == "metadata":
            if not isinstance(value, dict):
                raise InvalidArgument("metadata must be an object")
            merged = dict(fields.get("metadata", {}))
            for meta_key, meta_value in value.items():
                if meta_value is None:
                    merged.pop(meta_key, None)
                else:
                    merged[meta_key] = str(meta_value)
            fields["metadata"] = merged
            if not merged:
                del fields["metadata"]
        else:
            fields[key] = value
    return fields


def _string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be an object of strings")
    return {str(k): str(v) for k, v in value.items() if v is not None}


def check_object_name(name: str) -> None:
    if not name or len(name.encode()) > 1024 or "\r" in name or "\n" in name:
        raise InvalidArgument(f"Invalid object name: {name!r}")


def labels_from(value: Any) -> dict[str, str]:
    return _string_map(value or {}, "labels")


@dataclass(frozen=True)
class StoredObject:
    """One live object generation. Frozen: a metadata change makes a new instance, so a
    reply can be serialised outside the backend's lock without tearing."""

    bucket: str
    name: str
    generation: int
    metageneration: int
    size: int
    md5_hash: str
    crc32c: str
    path: Path
    created: datetime
    updated: datetime
    storage_class: str
    fields: dict[str, Any]

    @property
    def content_type(self) -> str:
        return str(self.fields.get("contentType") or DEFAULT_CONTENT_TYPE)

    @property
    def etag(self) -> str:
        return _etag(self.bucket, self.name, self.generation, self.metageneration)

    def to_json(self, base_url: str) -> dict[str, Any]:
        quoted = quote(self.name, safe="")
        body: dict[str, Any] = {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "selfLink": f"{base_url}/storage/v1/b/{self.bucket}/o/{quoted}",
            "mediaLink": f"{base_url}/download/storage/v1/b/{self.bucket}/o/{quoted}"
            f"?generation={self.generation}&alt=media",
            "name": self.name,
            "bucket": self.bucket,
            "generation": str(self.generation),
            "metageneration": str(self.metageneration),
            "storageClass": self.storage_class,
            "size": str(self.size),
            "md5Hash": self.md5_hash,
            "crc32c": self.crc32c,
            "etag": self.etag,
            "timeCreated": rfc3339(self.created),
            "updated": rfc3339(self.updated),
            "timeStorageClassUpdated": rfc3339(self.created),
            "timeFinalized": rfc3339(self.created),
        }
        body.update(self.fields)
        body["contentType"] = self.content_type
        return body


@dataclass
class Bucket:
    """A bucket and its live objects by name."""

    name: str
    project: str
    location: str
    storage_class: str
    labels: dict[str, str]
    created: datetime
    updated: datetime
    metageneration: int = 1
    objects: dict[str, StoredObject] = field(default_factory=dict)

    def to_json(self, base_url: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "storage#bucket",
            "id": self.name,
            "selfLink": f"{base_url}/storage/v1/b/{self.name}",
            "projectNumber": str(project_number(self.project)),
            "name": self.name,
            "timeCreated": rfc3339(self.created),
            "updated": rfc3339(self.updated),
            "metageneration": str(self.metageneration),
            "location": self.location,
            "locationType": location_type(self.location),
            "storageClass": self.storage_class,
            "etag": _etag(self.name, self.metageneration),
            "rpo": "DEFAULT",
        }
        if self.labels:
            body["labels"] = dict(self.labels)
        return body


def project_number(project: str) -> int:
    """A stable 12-digit number for a project id, as Google reports one per project."""
    digest = hashlib.sha256(project.encode()).digest()
    return 100_000_000_000 + int.from_bytes(digest[:8], "big") % 900_000_000_000
