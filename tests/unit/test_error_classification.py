"""Which failures are retried and which stop the run at once, and what their messages say.

Real exceptions of the clients Lifeboat uses (google-api-core, httpx, requests, pymongo),
built as the libraries build them, and real Prefect states for the retry condition.
"""

from __future__ import annotations

import httpx
import pymongo.errors
import pytest
import requests
from google.api_core import exceptions as gexc
from prefect.states import Completed, Failed

from tasks.errors import (
    LifeboatError,
    LockHeld,
    PermanentError,
    PreflightRefused,
    TransientError,
    classify,
    is_transient,
    maybe_applied,
)
from tasks.retrying import calling, retry_unless_permanent


def google(code: int, message: str, reason: str = "") -> gexc.GoogleAPICallError:
    """An api-core exception as the REST transports raise it: Google's reason in ``errors``."""
    errors = [{"reason": reason, "message": message}] if reason else []
    return gexc.from_http_status(code, message, errors=errors)


def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://api.varai.ai/health")
    return httpx.HTTPStatusError(
        "bad", request=request, response=httpx.Response(status, request=request)
    )


@pytest.mark.parametrize(
    "exc",
    [
        google(429, "Quota exceeded"),
        google(500, "Internal error"),
        google(502, "Bad gateway"),
        google(503, "The service is currently unavailable"),
        google(504, "Deadline"),
        gexc.DeadlineExceeded("deadline"),
        gexc.RetryError("gave up", cause=None),
        # Compute throttles with 403, not 429.
        google(403, "Rate Limit Exceeded", reason="rateLimitExceeded"),
        google(403, "User Rate Limit Exceeded", reason="userRateLimitExceeded"),
        # Cloud SQL: one operation per instance at a time.
        google(
            409,
            "Operation failed because another operation was already in progress.",
            reason="operationInProgress",
        ),
        gexc.Aborted("etag mismatch"),
        TimeoutError("read timed out"),
        ConnectionResetError("reset by peer"),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timeout"),
        requests.exceptions.ConnectionError("reset"),
        requests.exceptions.ReadTimeout("read timeout"),
        pymongo.errors.ServerSelectionTimeoutError("no primary"),
        pymongo.errors.AutoReconnect("reconnecting"),
        TransientError("said so"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_what_may_succeed_in_a_moment_is_transient(exc: BaseException) -> None:
    assert is_transient(exc) is True
    wrapped = classify(exc, "promote", "varai-db-secondary")
    assert isinstance(wrapped, TransientError)


@pytest.mark.parametrize(
    "exc",
    [
        google(400, "Invalid request"),
        google(403, "The caller does not have permission", reason="forbidden"),
        google(403, "no reason given"),
        google(404, "The Cloud SQL instance does not exist.", reason="instanceDoesNotExist"),
        google(409, "The Cloud SQL instance already exists.", reason="alreadyExists"),
        google(409, "Resource 'auth-service' already exists"),
        google(412, "Precondition failed", reason="conditionNotMet"),
        ValueError("bad value"),
        KeyError("rrdatas"),
        pymongo.errors.OperationFailure("not authorized"),
        PermanentError("said so"),
        PreflightRefused("primary unhealthy"),
        LockHeld("held by failover"),
    ],
    ids=lambda exc: f"{type(exc).__name__}-{getattr(exc, 'message', exc)}"[:40],
)
def test_what_retrying_cannot_fix_is_permanent(exc: BaseException) -> None:
    assert is_transient(exc) is False
    wrapped = classify(exc, "promote", "varai-db-secondary")
    assert isinstance(wrapped, PermanentError)


def test_classify_names_the_step_the_resource_and_googles_code() -> None:
    wrapped = classify(
        google(404, "The Cloud SQL instance does not exist.", "instanceDoesNotExist"),
        "promote-replica",
        "ml-datadriven-recos-dr:varai-db-secondary",
    )
    assert type(wrapped) is PermanentError
    assert str(wrapped) == (
        "promote-replica failed on ml-datadriven-recos-dr:varai-db-secondary: "
        "404 The Cloud SQL instance does not exist."
    )


def test_classify_describes_http_and_other_failures_by_type() -> None:
    http = classify(_status_error(503), "health-probe", "https://api.varai.ai/health")
    assert type(http) is PermanentError  # raise_for_status errors are not in the transient list
    assert str(http) == "health-probe failed on https://api.varai.ai/health: HTTP 503"
    reset = classify(ConnectionResetError("reset by peer"), "dns-switch", "varai-zone")
    assert type(reset) is TransientError
    assert str(reset) == "dns-switch failed on varai-zone: ConnectionResetError: reset by peer"


def test_a_lifeboat_error_passes_through_unchanged() -> None:
    refused = PreflightRefused("failback refused: the primary region us-central1 is unhealthy")
    assert classify(refused, "gate", "us-central1") is refused
    lock = LockHeld("held")
    assert classify(lock, "region-lock", "lab") is lock


def test_calling_wraps_a_failure_and_keeps_its_cause() -> None:
    cause = google(503, "unavailable")
    with pytest.raises(TransientError) as raised, calling("scale-service", "auth-service"):
        raise cause
    assert str(raised.value) == "scale-service failed on auth-service: 503 unavailable"
    assert raised.value.__cause__ is cause
    own = PermanentError("mine")
    with pytest.raises(PermanentError) as again, calling("x", "y"):
        raise own
    assert again.value is own


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (TransientError("503 on promote"), True),
        (google(503, "unavailable"), True),
        (google(403, "slow down", reason="rateLimitExceeded"), True),
        (TimeoutError("step budget"), True),
        (PermanentError("404 on promote"), False),
        (PreflightRefused("primary unhealthy"), False),
        (LockHeld("held by another run"), False),
        (google(400, "Invalid request"), False),
        (ValueError("a bug"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_the_retry_condition_retries_only_transient_failures(
    exc: BaseException, retried: bool
) -> None:
    assert retry_unless_permanent(None, None, Failed(data=exc)) is retried


def test_the_retry_condition_never_retries_a_completed_state() -> None:
    assert retry_unless_permanent(None, None, Completed(data="done")) is False


def test_every_lifeboat_error_sits_under_one_base() -> None:
    for kind in (TransientError, PermanentError, PreflightRefused, LockHeld):
        assert issubclass(kind, LifeboatError)
    assert not issubclass(TransientError, PermanentError)


def test_a_write_that_timed_out_or_got_a_5xx_may_have_been_applied_a_429_not() -> None:
    assert maybe_applied(gexc.DeadlineExceeded("held"))
    assert maybe_applied(gexc.ServiceUnavailable("503"))
    assert maybe_applied(gexc.InternalServerError("500"))
    assert maybe_applied(TimeoutError("read timed out"))  # a dropped or timed-out socket
    assert not maybe_applied(gexc.TooManyRequests("throttled before anything was done"))
    assert not maybe_applied(gexc.PermissionDenied("403"))
    assert not maybe_applied(gexc.NotFound("404"))
