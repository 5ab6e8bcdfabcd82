"""The backup manifest: what one backup holds, how to check it, and whether it was verified.

Layout in the backups bucket (one folder per backup, named by its start time):

    mongodb/<YYYY>/<MM>/<backup_id>/archive.tar.gz.enc   encrypted mongodump layout
    mongodb/<YYYY>/<MM>/<backup_id>/manifest.json
    cloudsql/<YYYY>/<MM>/<backup_id>/<database>.sql      export (the cross-region copy)
    cloudsql/<YYYY>/<MM>/<backup_id>/manifest.json

The manifest is written last, so a folder without one is an upload that never finished.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

Source = Literal["mongodb", "cloudsql"]
Status = Literal["verified", "unverified", "failed"]
MANIFEST = "manifest.json"
ARCHIVE = "archive.tar.gz.enc"
BACKUP_ID_FORMAT = "%Y%m%dT%H%M%SZ"


def backup_id(at: datetime) -> str:
    return at.astimezone(UTC).strftime(BACKUP_ID_FORMAT)


def backup_time(identifier: str) -> datetime:
    return datetime.strptime(identifier, BACKUP_ID_FORMAT).replace(tzinfo=UTC)


def backup_prefix(source: Source, identifier: str) -> str:
    at = backup_time(identifier)
    return f"{source}/{at:%Y}/{at:%m}/{identifier}/"


class FileDigest(BaseModel):
    bytes: int
    sha256: str


class CollectionEntry(BaseModel):
    database: str
    name: str
    documents: int
    bytes: int
    sha256: str
    samples: dict[str, str] = Field(
        default_factory=dict,
        description="a sample of documents: _id as canonical Extended JSON → sha256 of its BSON",
    )


class StoredObject(BaseModel):
    uri: str
    bytes: int
    sha256: str
    generation: int | None = None


class CloudSqlBackup(BaseModel):
    project: str
    instance: str
    databases: list[str]
    backup_run_id: int | None = None
    backup_run_status: str | None = None
    exports: dict[str, StoredObject] = Field(default_factory=dict, description="database → dump")
    integrity: dict[str, int] = Field(
        default_factory=dict, description="the topology's integrity queries at backup time"
    )
    counted_at: datetime | None = Field(
        None,
        description="the database's clock when the integrity queries took their snapshot; "
        "a restore to this moment (PITR) must give the same counts (None: an older backup)",
    )


class Manifest(BaseModel):
    format: int = 1
    source: Source
    backup_id: str
    environment: str
    started_at: datetime
    ended_at: datetime | None = None
    status: Status = "unverified"
    verified_at: datetime | None = None
    error: str | None = None
    tool: str
    flow_run_id: str | None = None
    # MongoDB
    databases: list[str] = Field(default_factory=list)
    key_id: str | None = Field(None, description="fingerprint of the encryption key, never it")
    archive: StoredObject | None = None
    files: dict[str, FileDigest] = Field(default_factory=dict, description="path in the archive")
    collections: list[CollectionEntry] = Field(default_factory=list)
    # Cloud SQL
    cloudsql: CloudSqlBackup | None = None

    @property
    def prefix(self) -> str:
        return backup_prefix(self.source, self.backup_id)

    @property
    def manifest_name(self) -> str:
        return self.prefix + MANIFEST

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    def age_hours(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.started_at).total_seconds() / 3600

    def documents(self) -> dict[str, int]:
        """`db.collection` → document count."""
        return {f"{c.database}.{c.name}": c.documents for c in self.collections}
