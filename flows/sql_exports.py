"""Cloud SQL rebuilt from a backup's SQL exports, read from the backups bucket or one of its
cross-region copies: the restore that needs nothing of the source region.

A backup run lives and dies with its instance; the exports are objects in Cloud Storage,
copied to the other regions' buckets and checked there by checksum. restore-sql
(``backup_id`` / ``source_bucket``) and the drill (when it reads a copy) both go through
here: the manifest first, refusing one that is not verified where it is read, then the
users, the databases and one import per dump into an instance that holds nothing else.
"""

from __future__ import annotations

from pydantic import BaseModel

from flows.restore import source_bucket_of
from lifeboat.manifest import Manifest
from tasks.catalog import catalog_get, catalog_newest
from tasks.cloud_sql_import import sql_import_dump, sql_prepare_import
from tasks.errors import PermanentError


class ExportSource(BaseModel):
    """One verified backup's SQL exports, where they are read from."""

    backup_id: str
    bucket: str
    instance: str  # the instance the backup was taken of
    exports: dict[str, str]  # database → gs:// URI in ``bucket``
    users: list[str]
    expected: dict[str, int]  # the integrity counts the backup recorded

    def describe(self) -> str:
        return f"backup {self.backup_id} of {self.instance}, its exports in {self.bucket}"

    @classmethod
    def of(cls, manifest: Manifest, bucket: str) -> ExportSource:
        """A verified manifest, as read from ``bucket``; PermanentError naming
        ``backup_id`` when it is not verified or holds no exports."""
        if not manifest.verified:
            raise PermanentError(
                f"backup_id: {manifest.backup_id} is {manifest.status}, not verified"
            )
        sql = manifest.cloudsql
        if sql is None or not sql.exports:
            raise PermanentError(f"backup_id: {manifest.backup_id} holds no SQL exports")
        return cls(
            backup_id=manifest.backup_id,
            bucket=bucket,
            instance=sql.instance,
            exports={db: o.uri for db, o in sql.exports.items()},
            users=sql.users,
            expected=sql.integrity,
        )


def export_source(
    environment: str, backup_id: str | None, source_bucket: str | None
) -> ExportSource:
    """The backup's exports as read from ``source_bucket`` (default: the backups bucket);
    ``backup_id`` None means the newest backup verified there. Reads manifests only.

    Raises:
        PermanentError: naming ``source_bucket`` or ``backup_id``, for an unknown bucket, a
            backup that is missing, unverified there, or has no exports.
    """
    bucket = source_bucket_of(environment, source_bucket)
    try:
        manifest: Manifest | None = (
            catalog_get(environment, "cloudsql", backup_id, bucket)
            if backup_id
            else catalog_newest(environment, "cloudsql", True, bucket)
        )
    except PermanentError as exc:
        raise PermanentError(f"backup_id: {backup_id} cannot be read from {bucket}: {exc}") from exc
    if manifest is None:
        raise PermanentError(f"backup_id: no verified Cloud SQL backup in {bucket}")
    return ExportSource.of(manifest, bucket)


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
