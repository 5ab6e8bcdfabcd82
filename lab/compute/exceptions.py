"""Compute Engine wire errors, worded the way Compute words them.

ApiError (lab.core.errors)
├── InvalidField        400 invalid            a malformed request
├── RateLimitExceeded   403 rateLimitExceeded  too many invalidations (Compute's throttle)
├── ResourceNotFound    404 notFound           url map, backend service or operation missing
└── ResourceExists      409 alreadyExists      a url map or backend service of that name (seeding)
"""

from __future__ import annotations

from typing import Any

from lab.core.errors import BadRequest, Conflict, Forbidden, NotFound


class InvalidField(BadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(message, reason="invalid")


class ResourceNotFound(NotFound):
    def __init__(self, resource: str) -> None:
        super().__init__(f"The resource '{resource}' was not found")


class ResourceExists(Conflict):
    def __init__(self, resource: str) -> None:
        super().__init__(f"The resource '{resource}' already exists", reason="alreadyExists")


class RateLimitExceeded(Forbidden):
    """Compute throttles with 403, so clients must not treat every 403 as permanent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="rateLimitExceeded")

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        body["error"]["errors"][0]["domain"] = "usageLimits"  # Google's domain for quotas
        return body
