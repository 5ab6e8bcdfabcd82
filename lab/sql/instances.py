"""SqlInstancesService's admin operations: insert, delete, promote, patch, restart, export.

Each validates at once (404, 400, 409 operationInProgress, 503 for a region outage) and
returns an ``Operation``; the real PostgreSQL work runs when the operation's delay ends.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from lab.core.context import LabContext
from lab.sql import jobs
from lab.sql.exceptions import InstanceProtected, InvalidRequest, NotAReplica
from lab.sql.resources import (
    DATABASE_VERSION,
    DEFAULT_TIER,
    Instance,
    Operation,
    pitr_enabled,
)

log = logging.getLogger(__name__)


def _quietly(action: Callable[[], None]) -> None:
    """Run ``action`` on its own thread's terms: a failure is logged, not raised."""
    try:
        action()
    except Exception:
        log.exception("lab Cloud SQL side action failed")


class InstanceOperations:
    """The mutating half of SqlInstancesService (a mixin of ``SqlBackend``)."""

    # Provided by SqlBackend.
    ctx: LabContext
    _lock: threading.RLock
    _mutable: Callable[[str, str], Instance]
    _delay: Callable[[str], float]
    _begin: Callable[..., Operation]
    _register: Callable[..., Instance]
    _build: Callable[[Instance, list[str]], None]
    _discard: Callable[[Instance], None]
    _unlink_from_master: Callable[[Instance], None]
    _drop_backups_of: Callable[[str, str], None]
    take_base_backup: Callable[[Instance], None]

    def insert_instance(
        self,
        project: str,
        name: str,
        region: str,
        *,
        master: str | None,
        tier: str,
        labels: dict[str, str],
        database_version: str,
        settings: dict[str, Any],
    ) -> Operation:
        if database_version not in ("", DATABASE_VERSION):
            raise InvalidRequest(f"The lab runs {DATABASE_VERSION} only, not {database_version}.")
        with self._lock:
            inst = self._register(
                project, name, region, master, tier or DEFAULT_TIER, labels, settings=settings
            )
            op_type = "CREATE_REPLICA" if inst.master else "CREATE"

            def work() -> None:
                self._build(inst, [])

            return self._begin(inst, op_type, self._delay("sql.insert"), work)

    def delete_instance(self, project: str, name: str) -> Operation:
        with self._lock:
            inst = self._mutable(project, name)
            if inst.settings.get("deletionProtectionEnabled"):
                raise InstanceProtected()
            if inst.replicas:
                raise InvalidRequest(
                    f"The instance {name} has read replicas {inst.replicas}; delete them first."
                )
            inst.state = "PENDING_DELETE"

            def work() -> None:
                self._discard(inst)
                self._drop_backups_of(inst.project, inst.name)

            return self._begin(inst, "DELETE", self._delay("sql.delete"), work)

    def promote_replica(self, project: str, name: str) -> Operation:
        with self._lock:
            inst = self._mutable(project, name)
            if inst.master is None:
                raise NotAReplica(name)

            def work() -> None:
                inst.cluster.promote()
                with self._lock:
                    self._unlink_from_master(inst)
                    inst.master = None

            streamed_with: list[str] = []

            def stop() -> None:
                streamed_with.append(inst.cluster.receiving_from())
                inst.cluster.stop_receiving()

            def stop_replicating() -> None:
                # "Promoting a replica stops replication": from the moment the operation
                # runs, a write the primary acknowledges no longer reaches this instance,
                # though the promotion lands only at the operation's end.
                threading.Thread(target=_quietly, args=(stop,), daemon=True).start()

            def replicate_again(message: str) -> None:
                # A promotion that failed leaves a replica that replicates (a guess:
                # Google documents no state after a failed promotion; lab/FIDELITY.md).
                if streamed_with and streamed_with[0]:
                    resume = functools.partial(inst.cluster.resume_receiving, streamed_with[0])
                    threading.Thread(target=_quietly, args=(resume,), daemon=True).start()

            return self._begin(
                inst,
                "PROMOTE_REPLICA",
                self._delay("sql.promote"),
                work,
                on_running=stop_replicating,
                on_failed=replicate_again,
            )

    def patch_instance(
        self,
        project: str,
        name: str,
        *,
        tier: str | None,
        labels: dict[str, str] | None,
        deletion_protection: bool | None = None,
        backup_configuration: dict[str, Any] | None = None,
    ) -> Operation:
        """Change the tier, deletion protection and backup configuration, and merge labels
        in (a patch only names what it changes).

        Turning point-in-time recovery on restarts the instance ("If you enable PITR on an
        existing instance, the instance restarts", sql/docs/postgres/backup-recovery/
        configure-pitr) and takes a base backup, the first point a restore can reach;
        turning it off drops them, as Cloud SQL deletes the logs ("You can disable PITR if
        you want to delete logs", sql/docs/postgres/backup-recovery/pitr).
        """
        with self._lock:
            inst = self._mutable(project, name)

            def work() -> None:
                with self._lock:
                    was_on = pitr_enabled(inst.settings)
                    inst.tier = tier or inst.tier
                    inst.labels.update(labels or {})
                    if deletion_protection is not None:
                        inst.settings["deletionProtectionEnabled"] = deletion_protection
                    if backup_configuration is not None:
                        merged = dict(inst.settings.get("backupConfiguration") or {})
                        merged.update(backup_configuration)
                        inst.settings["backupConfiguration"] = merged
                    inst.settings_version += 1
                    now_on = pitr_enabled(inst.settings)
                    if was_on and not now_on:
                        inst.base_backups.clear()
                if now_on and not was_on:
                    inst.cluster.stop()
                    inst.cluster.start()
                    self.take_base_backup(inst)

            return self._begin(inst, "UPDATE", self._delay("sql.patch"), work)

    def restart_instance(self, project: str, name: str) -> Operation:
        with self._lock:
            inst = self._mutable(project, name)

            def work() -> None:
                inst.cluster.stop()
                inst.cluster.start()

            # A restart takes about as long as an HA failover, so they share a latency.
            return self._begin(inst, "RESTART", self._delay("sql.failover"), work)

    def failover_instance(self, project: str, name: str) -> Operation:
        with self._lock:
            self._mutable(project, name)
        raise InvalidRequest(
            f"The instance {name} is not configured for high availability (availabilityType ZONAL)."
        )

    def export_instance(
        self, project: str, name: str, *, uri: str, databases: list[str], file_type: str
    ) -> Operation:
        if file_type not in ("", "SQL"):
            raise InvalidRequest(f"The lab exports fileType SQL only, not {file_type}.")
        if jobs.parse_gcs_uri(uri) is None:
            raise InvalidRequest(f"The export URI {uri!r} is not of the form gs://bucket/object.")
        if len(databases) != 1:
            raise InvalidRequest("A PostgreSQL SQL export takes exactly one database.")
        with self._lock:
            inst = self._mutable(project, name)

            def work() -> None:
                storage = self.ctx.backends.get("storage")
                jobs.export_sql(inst.cluster, databases[0], storage, uri)

            return self._begin(
                inst,
                "EXPORT",
                self._delay("sql.export"),
                work,
                export_uri=uri,
                export_databases=list(databases),
            )
