"""How Lifeboat sorts failures from the outside world.

    LifeboatError
    ├── TransientError        retry with backoff: 429, 5xx, timeouts, Cloud SQL 409
    │   │                     "operation in progress", Compute 403 rateLimitExceeded
    │   └── BudgetExhausted   a wait outlived its step's declared budget (a retry gets
    │                         a fresh one)
    └── PermanentError        fail at once: 400, 403 permission, 404, bad state
        ├── PreflightRefused  the world is not in a state where the step may run
        └── LockHeld          another region switch holds the lock

Every message names the step and the resource, so an operator reading the run knows
what failed where without opening a stack trace. Secrets never go into these messages.
"""

from __future__ import annotations

import sys
from typing import Any

import httpx
import requests
from google.api_core import exceptions as gexc


class LifeboatError(Exception):
    """Base of every error Lifeboat raises on purpose."""


class TransientError(LifeboatError):
    """Worth retrying: the same call may succeed in a moment."""


class BudgetExhausted(TransientError):
    """A wait was cut short by its step's declared budget (``cloud_task(timeout_seconds)``)."""


class PermanentError(LifeboatError):
    """Retrying cannot help; the run must stop and say why."""


class PreflightRefused(PermanentError):
    """A guard refused to act (e.g. failback while the primary is unhealthy)."""


class LockHeld(PermanentError):
    """Another region switch holds the environment's lock."""


class IncidentCompleted(PermanentError):
    """The incident completed in an earlier run: a run of it refuses to start again, and
    publishes nothing (its record would overwrite the completed one)."""


_TRANSIENT_TYPES: tuple[type[Exception], ...] = (
    gexc.TooManyRequests,
    gexc.ServerError,  # 500, 501, 502, 503, 504
    gexc.DeadlineExceeded,
    gexc.RetryError,
    TimeoutError,
    ConnectionError,
    httpx.TransportError,
    requests.exceptions.ConnectionError,  # the REST clients' transport: resets, timeouts
    requests.exceptions.Timeout,
)


def _mongo_connection_failure(exc: BaseException) -> bool:
    """pymongo's ConnectionFailure (server selection timeouts and reconnects included).

    Read from ``sys.modules``, not imported: such an error exists only once a MongoDB task
    has imported pymongo, so the region switches, which never do, need not import it
    (0.12 s by ``-X importtime``; no wall-clock gain was measurable, issue 19).
    """
    errors = sys.modules.get("pymongo.errors")
    return errors is not None and isinstance(exc, errors.ConnectionFailure)


def _reasons(exc: gexc.GoogleAPICallError) -> set[str]:
    reasons = {str(getattr(exc, "reason", "") or "")}
    for err in getattr(exc, "errors", None) or []:
        if isinstance(err, dict):
            reasons.add(str(err.get("reason", "")))
    return reasons


def maybe_applied(exc: BaseException) -> bool:
    """Whether a failed write may still have been, or still be, acted on: a timeout, a
    dropped connection, a 5xx. Such a write is checked for, not blindly sent again. A 429
    was refused before anything was done."""
    if isinstance(exc, gexc.TooManyRequests):
        return False
    if isinstance(exc, gexc.ServerError | gexc.DeadlineExceeded):
        return True
    return not isinstance(exc, gexc.GoogleAPICallError) and is_transient(exc)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, PermanentError):
        return False
    if isinstance(exc, _TRANSIENT_TYPES) or _mongo_connection_failure(exc):
        return True
    if isinstance(exc, gexc.Forbidden):
        # Compute throttles with 403 rateLimitExceeded, not 429.
        return bool(_reasons(exc) & {"rateLimitExceeded", "userRateLimitExceeded"})
    if isinstance(exc, gexc.Conflict | gexc.Aborted):
        # Cloud SQL's one-operation-per-instance 409, Cloud Run's stale etag or running
        # rollout: each task re-reads state before acting, so another try is safe. A name
        # that already exists is not going to go away by itself.
        return "alreadyExists" not in _reasons(exc) and "already exists" not in str(exc)
    return isinstance(exc, gexc.ServiceUnavailable | gexc.InternalServerError)


def classify(exc: BaseException, step: str, resource: str) -> LifeboatError:
    """Wrap any failure in the transient/permanent split, naming the step and resource."""
    if isinstance(exc, LifeboatError):
        return exc
    detail = _describe(exc)
    message = f"{step} failed on {resource}: {detail}"
    return TransientError(message) if is_transient(exc) else PermanentError(message)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, gexc.GoogleAPICallError):
        code: Any = exc.code
        return f"{code} {exc.message}".strip()
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}"
