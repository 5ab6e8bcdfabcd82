"""The real PostgreSQL work behind backup runs, restores and exports."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

from lab.core.errors import Unavailable
from lab.sql.postgres import PgCluster

_DUMP_SUFFIX = ".dump"
_ROLES_FILE = "roles.sql"


class ObjectStore(Protocol):
    """The one call the lab's GCS emulator offers other emulators."""

    def insert_object(
        self, bucket: str, name: str, data: bytes, content_type: str = ...
    ) -> Any: ...


class StorageMissing(Unavailable):
    """The lab runs without its GCS emulator, so there is nowhere to export to."""


def parse_gcs_uri(uri: str) -> tuple[str, str] | None:
    """``gs://bucket/object`` → (bucket, object); None if it is not such a URI."""
    if not uri.startswith("gs://"):
        return None
    bucket, _, name = uri[len("gs://") :].partition("/")
    if not bucket or not name or name.endswith("/"):
        return None
    return bucket, name


def backup_databases(cluster: PgCluster, folder: Path) -> None:
    """A backup run: the instance's roles, and ``pg_dump -Fc`` of every database.

    Cloud SQL backs up and restores a whole instance, users included, so a restore into
    another instance brings the roles its grants name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        (folder / _ROLES_FILE).write_text(cluster.dump_roles())
        for database in cluster.databases():
            cluster.dump_custom(database, folder / f"{database}{_DUMP_SUFFIX}")
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)  # a failed run keeps no half backup
        raise


def restore_databases(cluster: PgCluster, folder: Path) -> None:
    """Make the target's databases those of the backup, as Cloud SQL's restore does."""
    roles = folder / _ROLES_FILE
    if roles.exists():
        cluster.restore_roles(roles.read_text())
    dumps = {p.name.removesuffix(_DUMP_SUFFIX): p for p in folder.glob(f"*{_DUMP_SUFFIX}")}
    for database in cluster.databases():
        if database not in dumps:
            cluster.drop_database(database)
    for database, path in sorted(dumps.items()):
        cluster.restore_custom(database, path)


def export_sql(cluster: PgCluster, database: str, storage: ObjectStore | None, uri: str) -> None:
    """A plain-SQL ``pg_dump`` of one database, written as a GCS object."""
    if storage is None:
        raise StorageMissing(
            f"cannot export to {uri}: the lab's Cloud Storage emulator is not running"
        )
    target = parse_gcs_uri(uri)
    assert target is not None  # the backend validated the URI before starting
    data = cluster.dump_plain(database)
    storage.insert_object(target[0], target[1], data, content_type="application/sql")
