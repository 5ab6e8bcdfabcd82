"""What lives inside an instance: databases.insert, users.list and insert, instances.import.

Cloud SQL's SQL import is ``psql`` run against one existing database: "The target
database for the import. If fileType is SQL, this field is required only if the import
file does not specify a database" (ImportContext, sqladmin v1). A plain ``pg_dump`` of one
database names none, so the database must be given, and it must exist (Cloud SQL creates
none on import). The import stops at the first failing statement: a dump that grants to a
role the instance lacks fails with "role ... does not exist", as Cloud SQL's does, so users
must be created first. Users are instance-wide and an export does not carry them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from lab.core.context import LabContext
from lab.sql import jobs
from lab.sql.exceptions import InvalidRequest
from lab.sql.jobs import StorageMissing
from lab.sql.pgtools import PgError
from lab.sql.postgres import ADMIN_USER
from lab.sql.resources import Instance, Operation


class InstanceContent:
    """Databases, users and imports (a mixin of ``SqlBackend``)."""

    # Provided by SqlBackend.
    ctx: LabContext
    _lock: threading.RLock
    _get: Callable[[str, str], Instance]
    _mutable: Callable[[str, str], Instance]
    _delay: Callable[[str], float]
    _begin: Callable[..., Operation]

    def insert_database(self, project: str, name: str, database: str) -> Operation:
        if not database:
            raise InvalidRequest("The database name is required (body.name).")
        with self._lock:
            inst = self._mutable(project, name)
            # Not documented; the lab refuses a taken name at once. Lifeboat lists first.
            if database in inst.cluster.databases():
                raise InvalidRequest(f"The database {database} already exists in {name}.")

            def work() -> None:
                inst.cluster.create_database(database)

            return self._begin(inst, "CREATE_DATABASE", self._delay("sql.patch"), work)

    def list_users(self, project: str, name: str) -> list[str]:
        with self._lock:
            cluster = self._get(project, name).cluster
        return cluster.users()

    def insert_user(self, project: str, name: str, user: str, password: str | None) -> Operation:
        if not user:
            raise InvalidRequest("The user name is required (body.name).")
        with self._lock:
            inst = self._mutable(project, name)

            def work() -> None:
                inst.cluster.create_user(user, password)

            return self._begin(inst, "CREATE_USER", self._delay("sql.patch"), work)

    def import_instance(
        self, project: str, name: str, *, uri: str, database: str, file_type: str, user: str
    ) -> Operation:
        if file_type != "SQL":
            raise InvalidRequest(f"The lab imports fileType SQL only, not {file_type or '?'}.")
        target = jobs.parse_gcs_uri(uri)
        if target is None:
            raise InvalidRequest(f"The import URI {uri!r} is not of the form gs://bucket/object.")
        if not database:
            raise InvalidRequest("importContext.database is required: the dump names none.")
        with self._lock:
            inst = self._mutable(project, name)

            def work() -> None:
                storage: Any = self.ctx.backends.get("storage")
                if storage is None:
                    raise StorageMissing(f"cannot import {uri}: the lab's Cloud Storage is down")
                if database not in inst.cluster.databases():
                    raise PgError(f'database "{database}" does not exist')
                script = storage.read_object(*target)  # a missing object fails the import
                # Cloud SQL runs an import as its own superuser unless importUser names one.
                inst.cluster.run_script(database, script, user or ADMIN_USER)

            return self._begin(
                inst,
                "IMPORT",
                self._delay("sql.export"),
                work,
                import_uri=uri,
                import_database=database,
            )
