"""Backup runs and restores: real ``pg_dump -Fc`` files under ``<root>/sql-backups/<id>/``."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lab.core.context import LabContext
from lab.sql import jobs
from lab.sql.exceptions import BackupRunNotFound, InvalidRequest
from lab.sql.resources import BackupRun, Instance, Operation, now


class BackupRuns:
    """The SqlBackupRunsService half of the backend (a mixin of ``SqlBackend``)."""

    # Provided by SqlBackend.
    ctx: LabContext
    _lock: threading.RLock
    _get: Callable[[str, str], Instance]
    _mutable: Callable[[str, str], Instance]
    _delay: Callable[[str], float]
    _begin: Callable[..., Operation]
    take_base_backup: Callable[[Instance], None]

    def __init__(self) -> None:
        self._backups: dict[int, BackupRun] = {}
        self._last_backup_id = 0

    @property
    def _backup_root(self) -> Path:
        return self.ctx.settings.root / "sql-backups"

    def insert_backup_run(self, project: str, instance: str, description: str = "") -> Operation:
        with self._lock:
            inst = self._mutable(project, instance)
            if inst.master is not None:
                raise InvalidRequest(f"Backups are not supported on read replica {instance}.")
            backup_id = self._next_backup_id()
            run = BackupRun(
                backup_id,
                project,
                instance,
                inst.region,
                self._backup_root / str(backup_id),
                description,
            )
            self._backups[backup_id] = run

            def on_running() -> None:
                run.status = "RUNNING"
                run.start_time = now()

            def work() -> None:
                jobs.backup_databases(inst.cluster, run.folder)
                self.take_base_backup(inst)  # each backup run is also a PITR starting point
                with self._lock:
                    run.status = "SUCCESSFUL"
                    run.end_time = now()

            def on_failed(message: str) -> None:
                run.status = "FAILED"
                run.error = message
                run.end_time = now()

            return self._begin(
                inst,
                "BACKUP_VOLUME",
                self._delay("sql.backup"),
                work,
                on_running=on_running,
                on_failed=on_failed,
                backup_id=backup_id,
            )

    def list_backup_runs(self, project: str, instance: str) -> list[BackupRun]:
        with self._lock:
            self._get(project, instance)
            runs = [
                r for r in self._backups.values() if r.project == project and r.instance == instance
            ]
        return sorted(runs, key=lambda r: r.id, reverse=True)

    def get_backup_run(self, project: str, instance: str, backup_id: int) -> BackupRun:
        with self._lock:
            run = self._backups.get(backup_id)
            if run is None or run.project != project or run.instance != instance:
                raise BackupRunNotFound(backup_id)
            return run

    def delete_backup_run(self, project: str, instance: str, backup_id: int) -> Operation:
        with self._lock:
            inst = self._mutable(project, instance)
            run = self.get_backup_run(project, instance, backup_id)

            def work() -> None:
                shutil.rmtree(run.folder, ignore_errors=True)
                with self._lock:
                    self._backups.pop(run.id, None)

            return self._begin(inst, "DELETE_BACKUP", 0.0, work, backup_id=backup_id)

    def restore_backup(
        self,
        project: str,
        instance: str,
        *,
        backup_run_id: int,
        source_instance: str,
        source_project: str,
    ) -> Operation:
        """Replace the target instance's databases with those of a backup run."""
        with self._lock:
            inst = self._mutable(project, instance)
            if inst.master is not None:
                raise InvalidRequest(f"Read replica {instance} cannot be the target of a restore.")
            run = self._backups.get(backup_run_id)
            wanted = (source_project or project, source_instance or instance)
            if run is None or (run.project, run.instance) != wanted:
                raise BackupRunNotFound(backup_run_id)
            if run.status != "SUCCESSFUL":
                raise InvalidRequest(f"Backup run {backup_run_id} is {run.status}, not SUCCESSFUL.")
            folder = run.folder

            def work() -> None:
                jobs.restore_databases(inst.cluster, folder)

            return self._begin(inst, "RESTORE_VOLUME", self._delay("sql.restore"), work)

    def _next_backup_id(self) -> int:
        # Google's ids are large int64 values; epoch milliseconds keep ours alike and rising.
        self._last_backup_id = max(self._last_backup_id + 1, int(time.time() * 1000))
        return self._last_backup_id

    def _drop_backups_of(self, project: str, instance: str) -> None:
        """Backups go with their instance, as with Google's default retention on delete."""
        with self._lock:
            runs = [
                r for r in self._backups.values() if r.project == project and r.instance == instance
            ]
            for run in runs:
                self._backups.pop(run.id, None)
        for run in runs:
            shutil.rmtree(run.folder, ignore_errors=True)

    def _forget_backups(self, remove_files: bool) -> None:
        with self._lock:
            self._backups.clear()
        if remove_files:
            shutil.rmtree(self._backup_root, ignore_errors=True)
