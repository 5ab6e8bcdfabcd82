"""Cloud SQL rebuilt from a backup's SQL exports, read from the backups bucket or one of its
cross-region copies: the restore that needs nothing of the source instance or its region.

A backup run lives and dies with its instance; the exports are objects in Cloud Storage,
copied to the other regions' buckets and checked there by checksum. restore-sql
(``backup_id`` / ``source_bucket``) and the drill (when it reads a copy) both go through
here: the manifest first, refusing one that is not verified where it is read, with its
objects checked there before anything is made; then an instance like the source as the
backup recorded it, the users, the databases and one import per dump.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from flows.restore import source_bucket_of
from lifeboat.integrity import differences
from lifeboat.manifest import Manifest
from tasks.catalog import catalog_get, catalog_newest
from tasks.cloud_sql_import import sql_import_dump, sql_prepare_import
from tasks.errors import PermanentError
from tasks.storage import storage_require_object


class ExportSource(BaseModel):
    """One verified backup's SQL exports, where they are read from."""

    backup_id: str
    bucket: str
    project: str
    instance: str  # the instance the backup was taken of
    exports: dict[str, str]  # database → gs:// URI in ``bucket``
    users: list[str]
    spec: dict[str, Any] | None  # how to create an instance like it (None: older backups)
    before: dict[str, int]  # the integrity counts before the backup run
    after: dict[str, int]  # and after the last export

    def describe(self) -> str:
        return f"backup {self.backup_id} of {self.instance}, its exports in {self.bucket}"

    def judged(self, counts: dict[str, int]) -> list[str]:
        """How restored counts fall outside the backup's window (empty: they hold)."""
        return differences(counts, self.before, self.after)

    @classmethod
    def of(cls, manifest: Manifest, bucket: str) -> ExportSource:
        """A verified manifest, as read from ``bucket``.

        Raises:
            PermanentError: naming ``backup_id``, when it is not verified, holds no
                exports, or did not record the users its dumps grant to.
        """
        if not manifest.verified:
            raise PermanentError(
                f"backup_id: {manifest.backup_id} is {manifest.status}, not verified"
            )
        sql = manifest.cloudsql
        if sql is None or not sql.exports:
            raise PermanentError(f"backup_id: {manifest.backup_id} holds no SQL exports")
        if sql.users is None:
            raise PermanentError(
                f"backup_id: {manifest.backup_id} was taken before backups recorded the "
                "users its dumps grant to; restore a newer backup, or its backup run"
            )
        return cls(
            backup_id=manifest.backup_id,
            bucket=bucket,
            project=sql.project,
            instance=sql.instance,
            exports={db: o.uri for db, o in sql.exports.items()},
            users=sql.users,
            spec=sql.spec,
            before=sql.integrity,
            after=sql.integrity_after,
        )


def export_source(
    environment: str, backup_id: str | None, source_bucket: str | None
) -> ExportSource:
    """The backup's exports as read from ``source_bucket`` (default: the backups bucket),
    each checked present there; ``backup_id`` None means the newest backup verified there.
    Reads only.

    Raises:
        PermanentError: naming ``source_bucket`` or ``backup_id``, for an unknown bucket, a
            backup that is missing, unverified there, has no exports or lacks one.
    """
    bucket = source_bucket_of(environment, source_bucket)
    field = "backup_id" if backup_id else "source_bucket"
    try:
        manifest: Manifest | None = (
            catalog_get(environment, "cloudsql", backup_id, bucket)
            if backup_id
            else catalog_newest(environment, "cloudsql", True, bucket)
        )
    except PermanentError as exc:
        raise PermanentError(f"{field}: {backup_id} cannot be read from {bucket}: {exc}") from exc
    if manifest is None:
        raise PermanentError(f"{field}: no verified Cloud SQL backup in {bucket}")
    source = ExportSource.of(manifest, bucket)
    require_exports(environment, source)
    return source


def require_exports(environment: str, source: ExportSource) -> None:
    """Each dump is in the bucket it is read from (a copy's manifest lists its objects,
    but an object can be deleted behind it): checked before any instance is made."""
    for uri in source.exports.values():
        try:
            storage_require_object(environment, uri)
        except PermanentError as exc:
            raise PermanentError(f"backup_id: {source.backup_id}: {exc}") from exc


def import_exports(environment: str, project: str, instance: str, source: ExportSource) -> str:
    """Users, databases, then each dump, into ``instance`` (made for it); what was done."""
    created = sql_prepare_import(environment, project, instance, source.users, list(source.exports))
    imported = [
        db
        for db, uri in source.exports.items()
        if sql_import_dump(environment, project, instance, db, uri)
    ]
    made = f"created {', '.join(created)}; " if created else ""
    return f"{made}imported {', '.join(imported) or 'nothing new'} from {source.bucket}"
