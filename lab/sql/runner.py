"""Moves Cloud SQL operations PENDING → RUNNING → DONE around the real PostgreSQL work.

The modeled cloud latency passes first and the real change (promote, base backup, dump,
restore) lands at its end, so a drill never sees a replica writable before its promote
could have finished in Google, and an operation is never DONE before its change is real.
The work runs on its own thread: a base backup must not stall the lab's shared timer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from lab.core.errors import ApiError
from lab.core.scheduler import Scheduler
from lab.sql.pgtools import PgError
from lab.sql.resources import Operation, OperationError, now

log = logging.getLogger(__name__)

Callback = Callable[[], None]


class ArmedFailure(Exception):
    """The error a test armed for the next operation of a type (``OperationRunner.arm``)."""

    def __init__(self, error: OperationError) -> None:
        super().__init__(error.message)
        self.error = error


def _error_for(exc: Exception) -> OperationError:
    if isinstance(exc, ArmedFailure):
        return exc.error
    if isinstance(exc, PgError):
        return OperationError("ERROR_RDBMS", str(exc))
    if isinstance(exc, ApiError):
        return OperationError(exc.status, exc.message)
    log.exception("Cloud SQL lab operation failed unexpectedly", exc_info=exc)
    return OperationError("INTERNAL_ERROR", f"lab emulator error: {exc}")


class OperationRunner:
    """Runs each operation's work once its delay has passed; ``cancel_all`` forgets them."""

    def __init__(
        self, scheduler: Scheduler, lock: threading.RLock, pending_s: Callable[[], float]
    ) -> None:
        self._scheduler = scheduler
        self._pending_s = pending_s  # how long an operation stays PENDING before RUNNING
        self._lock = lock  # the backend's lock: transitions change the backend's state
        self._generation = 0
        self._workers: set[threading.Thread] = set()
        self._armed: dict[str, list[OperationError]] = {}

    def arm(self, operation_type: str, error: OperationError, count: int) -> None:
        """The next ``count`` operations of ``operation_type`` end DONE with ``error`` and
        without their change, once their modelled time has passed: an operation Cloud SQL
        accepted can still fail (``Operation.error``, "If errors occurred during
        processing of this operation, this field will be populated")."""
        with self._lock:
            self._armed.setdefault(operation_type, []).extend([error] * count)

    def start(
        self,
        op: Operation,
        delay: float,
        work: Callback,
        *,
        release: Callback,
        on_running: Callback | None = None,
        on_failed: Callable[[str], None] | None = None,
    ) -> None:
        """Schedule ``op``; ``work`` runs without the lock, the callbacks with it."""
        generation = self._generation
        with self._lock:
            armed = self._armed.get(op.operation_type)
            if armed:
                work = _failing(armed.pop(0))

        def mark_running() -> None:
            with self._lock:
                if generation != self._generation:
                    return
                op.status = "RUNNING"
                op.start_time = now()
                if on_running is not None:
                    on_running()

        def finish() -> None:
            try:
                errors: list[OperationError] = []
                try:
                    work()
                except Exception as exc:  # any failure becomes the operation's error
                    errors.append(_error_for(exc))
                with self._lock:
                    if generation != self._generation:
                        return
                    op.errors = errors
                    op.status = "DONE"
                    op.end_time = now()
                    if errors and on_failed is not None:
                        on_failed(errors[0].message)
                    release()
            finally:
                with self._lock:
                    self._workers.discard(threading.current_thread())

        def due() -> None:
            with self._lock:
                if generation != self._generation:
                    return
                worker = threading.Thread(target=finish, name=f"sql-op-{op.name[:8]}", daemon=True)
                self._workers.add(worker)
                worker.start()

        # PENDING first, then RUNNING for the operation's own modelled time.
        pending = self._pending_s()
        self._scheduler.call_later(pending, mark_running)
        self._scheduler.call_later(pending + delay, due)

    def cancel_all(self, timeout: float = 120.0) -> None:
        """Forget scheduled transitions and wait for work already touching PostgreSQL."""
        with self._lock:
            self._generation += 1
            self._armed.clear()
            workers = list(self._workers)
        for worker in workers:
            worker.join(timeout)


def _failing(error: OperationError) -> Callback:
    def work() -> None:
        raise ArmedFailure(error)

    return work
