"""Cloud SQL Admin errors, in the words and reasons the real API uses.

ApiError (lab.core.errors)
├── BadRequest            400
│   ├── InvalidRequest          a malformed or unsupported request
│   ├── NotAReplica             promoteReplica on a primary
│   └── InstanceProtected       delete of an instance with deletion protection
├── NotFound              404
│   ├── UnknownPath             no such method
│   ├── InstanceNotFound        unknown instance
│   ├── OperationNotFound       unknown operation
│   └── BackupRunNotFound       unknown backup run
├── Conflict              409
│   ├── InstanceAlreadyExists   insert with a taken name
│   └── OperationInProgress     a second admin operation on a busy instance
└── Unavailable           503
    └── RegionUnavailable       the instance's region is in an injected outage
"""

from __future__ import annotations

from lab.core.errors import BadRequest, Conflict, NotFound, Unavailable


class InvalidRequest(BadRequest):
    def __init__(self, message: str):
        super().__init__(message, reason="invalid")


class NotAReplica(BadRequest):
    def __init__(self, instance: str):
        super().__init__(
            f"The instance {instance} is not a read replica.", reason="instanceNotReplica"
        )


class InstanceProtected(BadRequest):
    """ERROR_PROTECTED_INSTANCE_DELETION_FAILURE, in the words of sql/docs/error-messages."""

    def __init__(self) -> None:
        super().__init__(
            "The instance is protected. Please disable the deletion protection and try again. "
            "To disable deletion protection, update the instance settings with "
            "deletionProtectionEnabled set to false.",
            reason="invalid",
        )


class UnknownPath(NotFound):
    def __init__(self, method: str, path: str):
        super().__init__(f"The requested URL {method} {path} was not found.", reason="notFound")


class InstanceNotFound(NotFound):
    def __init__(self, project: str, instance: str):
        super().__init__(
            f"The Cloud SQL instance {project}:{instance} does not exist.",
            reason="instanceDoesNotExist",
        )


class OperationNotFound(NotFound):
    def __init__(self, operation: str):
        super().__init__(
            f"The operation {operation} does not exist.", reason="operationDoesNotExist"
        )


class BackupRunNotFound(NotFound):
    def __init__(self, backup_id: int):
        super().__init__(
            f"The backup run {backup_id} does not exist.", reason="backupRunDoesNotExist"
        )


class InstanceAlreadyExists(Conflict):
    def __init__(self, instance: str):
        super().__init__(
            f"The Cloud SQL instance {instance} already exists.", reason="instanceAlreadyExists"
        )


class OperationInProgress(Conflict):
    def __init__(self, instance: str, operation: str):
        super().__init__(
            f"operationInProgress: operation {operation} is in progress on instance {instance}; "
            "only one administrative operation can run on an instance at a time.",
            reason="operationInProgress",
        )


class RegionUnavailable(Unavailable):
    def __init__(self, region: str):
        super().__init__(
            f"The service is currently unavailable in region {region}.", reason="backendError"
        )
