"""Google's error shape, shared by every emulator.

    ApiError                      any error an emulator returns
    ├── BadRequest          400   invalid
    ├── Forbidden           403   forbidden / rateLimitExceeded (Compute throttling)
    ├── NotFound            404   notFound
    ├── Conflict            409   conflict / alreadyExists / operationInProgress
    ├── PreconditionFailed  412   conditionNotMet
    ├── TooManyRequests     429   rateLimitExceeded
    └── Unavailable         503   backendError

Emulators serialise these as ``{"error": {"code", "message", "status", "errors"}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_DEFAULT_REASONS = {
    400: "invalid",
    401: "required",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
    500: "backendError",
    502: "backendError",
    503: "backendError",
    504: "deadlineExceeded",
}


class ApiError(Exception):
    """An error an emulator reports to its client in Google's wire shape."""

    code: ClassVar[int] = 500

    def __init__(self, message: str, *, reason: str | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.reason = reason or _DEFAULT_REASONS.get(self.code, "backendError")

    @property
    def status(self) -> str:
        return _STATUS_NAMES.get(self.code, "UNKNOWN")

    def to_json(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "status": self.status,
                "errors": [{"domain": "global", "reason": self.reason, "message": self.message}],
            }
        }


class OnePlatformError(ApiError):
    """An error of a one-platform API (Secret Manager, Monitoring, Resource Manager): the
    canonical ``status`` name of its class, and no ``errors`` list (google.rpc.Status)."""

    status_name: ClassVar[str] = "UNKNOWN"

    @property
    def status(self) -> str:
        return self.status_name

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


class BadRequest(ApiError):
    code = 400


class Forbidden(ApiError):
    code = 403


class NotFound(ApiError):
    code = 404


class Conflict(ApiError):
    code = 409


class PreconditionFailed(ApiError):
    code = 412


class TooManyRequests(ApiError):
    code = 429


class Unavailable(ApiError):
    code = 503


def error_for_status(code: int, message: str, reason: str | None = None) -> ApiError:
    """An ApiError for an arbitrary HTTP status, as fault injection needs."""
    return ApiError(message, reason=reason, code=code)
