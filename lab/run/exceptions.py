"""Cloud Run's wire errors, one class per situation the emulator reports.

    ApiError (lab.core.errors)
    ├── BadRequest           400  InvalidRequest, InvalidTraffic, RevisionInUse
    ├── NotFound             404  ResourceNotFound
    ├── Conflict             409  AlreadyExists, EtagMismatch, RolloutInProgress
    └── Unavailable          503  RegionUnavailable

Google reports FAILED_PRECONDITION with HTTP 400, so "revision still serves traffic" is a
BadRequest here, not the core's 412 (which is Cloud Storage's conditionNotMet).
"""

from __future__ import annotations

from lab.core.errors import BadRequest, Conflict, NotFound, Unavailable


class InvalidRequest(BadRequest):
    pass


class InvalidTraffic(BadRequest):
    def __init__(self, message: str):
        super().__init__(message, reason="invalidTraffic")


class RevisionInUse(BadRequest):
    def __init__(self, revision: str):
        super().__init__(
            f"Revision {revision} is referenced by the service's traffic and cannot be deleted",
            reason="failedPrecondition",
        )


class ResourceNotFound(NotFound):
    def __init__(self, kind: str, name: str):
        super().__init__(f"{kind} {name} was not found")


class AlreadyExists(Conflict):
    def __init__(self, kind: str, name: str):
        super().__init__(f"{kind} {name} already exists", reason="alreadyExists")


class EtagMismatch(Conflict):
    def __init__(self, name: str, sent: str, current: str):
        super().__init__(
            f"etag {sent} does not match the current etag {current} of {name}; "
            "read the service again and retry",
            reason="aborted",
        )


class RolloutInProgress(Conflict):
    """The lab refuses a second rollout while one runs, rather than queueing it."""

    def __init__(self, name: str, operation: str):
        super().__init__(
            f"Service {name} is reconciling operation {operation}; "
            "wait for it to finish before changing the service again",
            reason="operationInProgress",
        )


class RegionUnavailable(Unavailable):
    def __init__(self, location: str):
        super().__init__(
            f"The Cloud Run control plane in {location} is unavailable (lab region outage)",
            reason="backendError",
        )
