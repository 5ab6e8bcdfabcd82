"""Secret Manager wire errors, in the shape Secret Manager replies with.

Secret Manager is a one-platform API: its errors carry the canonical ``status`` name and
no ``errors`` list, e.g. ``{"error": {"code": 400, "message": "Secret Version
[projects/1/secrets/s/versions/4] is in DESTROYED state.", "status": "FAILED_PRECONDITION"}}``
(as google-github-actions/get-secretmanager-secrets#268 quotes it). FAILED_PRECONDITION
is HTTP 400 there, not 412.

ApiError (lab.core.errors)
├── InvalidArgument     400 INVALID_ARGUMENT     malformed id, payload, replication, page
├── FailedPrecondition  400 FAILED_PRECONDITION  a version that is not ENABLED, etag mismatch
├── SecretNotFound      404 NOT_FOUND            secret or version missing
├── AlreadyExists       409 ALREADY_EXISTS       secretId taken
└── ReplicasUnavailable 503 UNAVAILABLE          every replica location is in an outage
"""

from __future__ import annotations

from lab.core.errors import OnePlatformError


class SecretManagerError(OnePlatformError):
    """This API's errors."""


class InvalidArgument(SecretManagerError):
    code = 400
    status_name = "INVALID_ARGUMENT"


class FailedPrecondition(SecretManagerError):
    code = 400
    status_name = "FAILED_PRECONDITION"


class SecretNotFound(SecretManagerError):
    code = 404
    status_name = "NOT_FOUND"


class AlreadyExists(SecretManagerError):
    code = 409
    status_name = "ALREADY_EXISTS"


class ReplicasUnavailable(SecretManagerError):
    code = 503
    status_name = "UNAVAILABLE"
