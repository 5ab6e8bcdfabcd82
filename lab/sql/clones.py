"""Point-in-time recovery: base backups, the WAL archive, and ``instances.clone``.

Cloud SQL for PostgreSQL archives write-ahead logs for point-in-time recovery, and "a
point-in-time recovery always creates a new instance; you cannot perform a PITR to an
existing instance" (cloud.google.com/sql/docs/postgres/backup-recovery/pitr). The lab does
it for real: every primary archives its WAL (``archive_command``) into a folder next to its
data; an instance with ``settings.backupConfiguration.pointInTimeRecoveryEnabled`` gets a
base backup when it is created and at each backup run; ``instances.clone`` with
``cloneContext.pointInTime`` restores the newest base backup taken before the point into a
new instance and replays the archive with ``recovery_target_time``, then promotes it.
Without ``pointInTime`` the clone copies the current state (``pg_basebackup``).

What the API refuses, it refuses before anything starts: PITR off, a point in the future,
a point older than ``transactionLogRetentionDays`` (1-7 days for Enterprise, 1-35 for
Enterprise Plus; the default 7 or 14), a point before the earliest base backup (before PITR
was on), and a destination that exists (409). The clone is a long-running operation,
PENDING first, whose target is the new instance.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from lab.core.context import LabContext
from lab.core.errors import Unavailable
from lab.sql.exceptions import InvalidRequest, RegionUnavailable
from lab.sql.pgtools import PgError
from lab.sql.resources import (
    BaseBackup,
    Instance,
    Operation,
    log_retention_days,
    now,
    pitr_enabled,
)


class Clones:
    """The PITR half of the backend (a mixin of ``SqlBackend``)."""

    # Provided by SqlBackend.
    ctx: LabContext
    _lock: threading.RLock
    _instances: dict[tuple[str, str], Instance]
    _get: Callable[[str, str], Instance]
    _delay: Callable[[str], float]
    _begin: Callable[..., Operation]
    _register: Callable[..., Instance]
    _discard: Callable[[Instance], None]

    def clone_instance(
        self,
        project: str,
        source: str,
        *,
        destination: str,
        point_in_time: datetime | None,
    ) -> Operation:
        """Start a clone of ``source`` into the new instance ``destination``."""
        with self._lock:
            src = self._get(project, source)
            if self.ctx.is_down(src.region):
                raise RegionUnavailable(src.region)
            if src.master is not None:
                raise InvalidRequest(f"Read replica {source} cannot be the source of a clone.")
            if not destination:
                raise InvalidRequest("cloneContext.destinationInstanceName is required.")
            base = self._base_for(src, point_in_time) if point_in_time is not None else None
            dest = self._register(
                project,
                destination,
                src.region,
                None,
                src.tier,
                src.labels,
                settings=src.settings,
                database_version=src.database_version,
            )

            def work() -> None:
                self._restore_clone(src, dest, base, point_in_time)

            return self._begin(dest, "CLONE", self._delay("sql.restore"), work)

    def take_base_backup(self, inst: Instance) -> None:
        """A base backup of a PITR instance; called without the lock (pg_basebackup runs)."""
        if inst.master is not None or not pitr_enabled(inst.settings):
            return
        folder = inst.cluster.base / "base-backups" / str(int(now().timestamp() * 1000))
        inst.cluster.base_backup(folder)
        with self._lock:
            inst.base_backups.append(BaseBackup(now(), folder))

    def _base_for(self, src: Instance, point: datetime) -> BaseBackup:
        """The newest base backup that serves ``point``, or Google's refusal."""
        if not pitr_enabled(src.settings):
            raise InvalidRequest(
                f"Point-in-time recovery is not enabled for instance {src.name} "
                "(settings.backupConfiguration.pointInTimeRecoveryEnabled is false)."
            )
        current = now()
        if point > current:
            raise InvalidRequest(
                f"cloneContext.pointInTime {point.isoformat()} is in the future; "
                f"the latest recovery time is {current.isoformat()}."
            )
        days = log_retention_days(src.settings)
        if point < current - timedelta(days=days):
            raise InvalidRequest(
                f"cloneContext.pointInTime {point.isoformat()} is outside the "
                f"{days}-day transaction log retention window of instance {src.name}."
            )
        usable = [b for b in src.base_backups if b.taken <= point]
        if not usable:
            earliest = src.base_backups[0].taken.isoformat() if src.base_backups else "none yet"
            raise InvalidRequest(
                f"cloneContext.pointInTime {point.isoformat()} is before the earliest "
                f"recovery time of instance {src.name} ({earliest})."
            )
        return usable[-1]

    def _restore_clone(
        self,
        src: Instance,
        dest: Instance,
        base: BaseBackup | None,
        point: datetime | None,
    ) -> None:
        try:
            if base is None or point is None:
                dest.cluster.init_copy_of(src.cluster)
                dest.cluster.start()
            else:
                # Cloud SQL uploads logs at least every 5 minutes, and a live instance can be
                # recovered to its most recent time: archive what the source has written.
                src.cluster.archive_now()
                dest.cluster.init_from_base_backup(base.folder, src.wal_archive, point)
        except (PgError, OSError):
            self._discard(dest)
            raise
        with self._lock:
            current = self._instances.get(dest.key) is dest
            if current:
                dest.state = "RUNNABLE"
        if not current:
            dest.cluster.stop()
            raise Unavailable(f"The lab stopped while {dest.name} was being cloned.")
        self.take_base_backup(dest)
