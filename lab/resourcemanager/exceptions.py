"""Cloud Resource Manager v3 wire errors, in the one-platform shape it replies with.

Like Secret Manager, v3 is a one-platform API: ``{"error": {"code", "message", "status"}}``
with no legacy ``errors`` list (lab/secretmanager/exceptions.py).

ApiError (lab.core.errors)
├── InvalidArgument   400 INVALID_ARGUMENT   a wildcard, a malformed name, over 100 at once
├── PermissionDenied  403 PERMISSION_DENIED  a project the lab does not hold (Resource
│                                            Manager answers 403, not 404, so that a caller
│                                            cannot tell "missing" from "not yours")
└── MethodNotFound    404 NOT_FOUND          a v3 method the lab does not serve
"""

from __future__ import annotations

from lab.core.errors import OnePlatformError


class ResourceManagerError(OnePlatformError):
    """This API's errors."""


class InvalidArgument(ResourceManagerError):
    code = 400
    status_name = "INVALID_ARGUMENT"


class PermissionDenied(ResourceManagerError):
    code = 403
    status_name = "PERMISSION_DENIED"


class MethodNotFound(ResourceManagerError):
    code = 404
    status_name = "NOT_FOUND"
