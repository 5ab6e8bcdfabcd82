"""The backup manifest: what one backup holds, how to check it, and whether it was verified.

Layout in the backups bucket (one folder per backup, named by its start time):

    mongodb/<YYYY>/<MM>/<backup_id>/archive.tar.gz.enc   encrypted mongodump layout
    mongodb/<YYYY>/<MM>/<backup_id>/manifest.json
    cloudsql/<YYYY>/<MM>/<backup_id>/<database>.sql      export (the cross-region copy)
    cloudsql/<YYYY>/<MM>/<backup_id>/manifest.json

The manifest is written last, so a folder without one is an upload that never finished.

Each of the topology's copy buckets (``backups.copies``) holds the same layout: every
object of a verified backup rewritten server-side under the same name, then its
manifest, copied last and only once every object of that copy matched its source's
checksums. ``copies`` in the manifest records each copy: bucket, location, each object's
generation and checksums there, verified or failed and why.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Source = Literal["mongodb", "cloudsql"]
# What the config-backup flow keeps (seed 004's configuration, secrets and CDN assets
# backups), in the same layout: <kind>/<YYYY>/<MM>/<backup_id>/, manifest last.
ConfigSource = Literal["config", "secrets", "assets"]
AnySource = Source | ConfigSource
Status = Literal["verified", "unverified", "failed"]
MANIFEST = "manifest.json"
ARCHIVE = "archive.tar.gz.enc"
BACKUP_ID_FORMAT = "%Y%m%dT%H%M%SZ"


def backup_id(at: datetime) -> str:
    return at.astimezone(UTC).strftime(BACKUP_ID_FORMAT)


def backup_time(identifier: str) -> datetime:
    return datetime.strptime(identifier, BACKUP_ID_FORMAT).replace(tzinfo=UTC)


def backup_prefix(source: AnySource, identifier: str) -> str:
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


class CopiedObject(BaseModel):
    """One object of a cross-region copy, as the copy bucket reported it."""

    generation: int
    bytes: int
    crc32c: str
    md5_hash: str | None = None


CopyStatus = Literal["verified", "failed"]


class BackupCopy(BaseModel):
    """A backup's copy in another region's bucket."""

    bucket: str
    location: str
    status: CopyStatus
    copied_at: datetime | None = None
    error: str | None = None
    objects: dict[str, CopiedObject] = Field(
        default_factory=dict, description="object name (the same in every bucket) → the copy"
    )

    @property
    def verified(self) -> bool:
        return self.status == "verified"


def object_name(uri: str) -> tuple[str, str]:
    """``gs://bucket/name`` → (bucket, name)."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return bucket, name


class CloudSqlBackup(BaseModel):
    project: str
    instance: str
    databases: list[str]
    backup_run_id: int | None = None
    backup_run_status: str | None = None
    exports: dict[str, StoredObject] = Field(default_factory=dict, description="database → dump")
    users: list[str] | None = Field(
        None,
        description="the instance's built-in users, by name: a restore from the exports "
        "creates them first, as the dumps' grants name them (an export carries no users); "
        "None: a backup taken before they were recorded",
    )
    spec: dict[str, Any] | None = Field(
        None,
        description="what an instance like the source is created with (region, version, "
        "settings), as Cloud SQL described it at backup time: an import needs nothing of "
        "the source, which may be gone with its region",
    )
    integrity: dict[str, int] = Field(
        default_factory=dict, description="the topology's integrity queries at backup time"
    )
    integrity_after: dict[str, int] = Field(
        default_factory=dict,
        description="the same queries after the last export: a restore of the backup run "
        "or the exports holds a moment between the two counts",
    )
    counted_at: datetime | None = Field(
        None,
        description="the database's clock when the integrity queries took their snapshot; "
        "a restore to this moment (PITR) must give the same counts (None: an older backup)",
    )


class OplogCoverage(BaseModel):
    """The changes an `oplog.bson` holds: everything before ``until``, since the tokens
    it resumed from (a slice) or since the dump started (a base backup)."""

    entries: int
    first_wall: datetime | None = None
    last_wall: datetime | None = None
    until: datetime = Field(description="every change before this moment is in the entries")
    tokens: dict[str, str] = Field(
        description="namespace → change-stream resume token (Extended JSON) after the last"
    )
    ended: list[str] = Field(
        default_factory=list,
        description="namespaces dropped or renamed while the dump ran: their capture ended, "
        "the backup leaves them out and a restore does not create them",
    )
    cut: dict[str, str] = Field(
        default_factory=dict,
        description="database → the server's cluster time (seconds:increment) the entries "
        "reach: every change at or before it is in them or before them, none after it",
    )

    @property
    def exact_from(self) -> datetime:
        """The first moment a restore of these entries is exact at: the second after the
        cut (a cluster time counts whole seconds), or ``until`` for an older coverage."""
        if not self.cut:
            return self.until
        seconds = max(int(text.partition(":")[0]) for text in self.cut.values())
        return datetime.fromtimestamp(seconds + 1, UTC)


class ConfigItem(BaseModel):
    """One configuration item of a config or secrets backup: a member of its archive."""

    kind: str = Field(description="run-service, dns-record-set, url-map, backend-service or secret")
    name: str = Field(description="the item's full resource name")
    path: str = Field(description="its member in the archive (see ``Manifest.files``)")


class Manifest(BaseModel):
    format: int = 1
    source: AnySource
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
    oplog: OplogCoverage | None = Field(
        None, description="the changes made while the dump ran (oplog.bson in the archive)"
    )
    # Cloud SQL
    cloudsql: CloudSqlBackup | None = None
    # Configuration and secrets (in ``archive``), CDN assets (server-side copies)
    items: list[ConfigItem] = Field(default_factory=list)
    assets: dict[str, CopiedObject] = Field(
        default_factory=dict,
        description="assets bucket object name → its copy, ``<prefix>objects/<name>`` here",
    )
    # Cross-region copies, by bucket
    copies: dict[str, BackupCopy] = Field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return backup_prefix(self.source, self.backup_id)

    @property
    def manifest_name(self) -> str:
        return self.prefix + MANIFEST

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    @property
    def consistent_at(self) -> datetime | None:
        """The first moment a restore of this backup is exact at (its oplog reaches the
        server's cut; `OplogCoverage.exact_from`), if it has an oplog."""
        return self.oplog.exact_from if self.oplog is not None else None

    def payload(self) -> list[StoredObject]:
        """Every object the backup holds besides its manifest: what a copy must carry."""
        objects = [self.archive] if self.archive else []
        if self.cloudsql:
            objects += list(self.cloudsql.exports.values())
        return objects

    def stored_in(self, bucket: str) -> Manifest:
        """This manifest with its objects read from ``bucket``: the backup's own bucket, or
        one of its verified copies (same names, the copy's generations).

        Raises:
            ValueError: the backup has no verified copy in ``bucket``.
        """
        if all(object_name(o.uri)[0] == bucket for o in self.payload()):
            return self
        copy = self.copies.get(bucket)
        if copy is None or not copy.verified:
            raise ValueError(f"backup {self.backup_id} has no verified copy in {bucket}")

        def moved(obj: StoredObject) -> StoredObject:
            name = object_name(obj.uri)[1]
            if name not in copy.objects:
                raise ValueError(f"backup {self.backup_id}: {name} is missing from the copy")
            return obj.model_copy(
                update={"uri": f"gs://{bucket}/{name}", "generation": copy.objects[name].generation}
            )

        update: dict[str, object] = {}
        if self.archive:
            update["archive"] = moved(self.archive)
        if self.cloudsql:
            exports = {db: moved(o) for db, o in self.cloudsql.exports.items()}
            update["cloudsql"] = self.cloudsql.model_copy(update={"exports": exports})
        return self.model_copy(update=update)

    def age_hours(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.started_at).total_seconds() / 3600

    def documents(self) -> dict[str, int]:
        """`db.collection` → document count."""
        return {f"{c.database}.{c.name}": c.documents for c in self.collections}
