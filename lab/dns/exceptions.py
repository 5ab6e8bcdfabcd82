"""Cloud DNS wire errors, worded the way Cloud DNS words them.

ApiError (lab.core.errors)
├── InvalidChange       400 invalid          a malformed record set or change
├── UnknownResource     404 notFound         zone or change id does not exist
├── AlreadyExists       409 alreadyExists    a zone or an added record set exists
└── ConditionNotMet     412 conditionNotMet  a deletion does not match the current set
"""

from __future__ import annotations

from lab.core.errors import BadRequest, Conflict, NotFound, PreconditionFailed


class InvalidChange(BadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(message, reason="invalid")


class UnknownResource(NotFound):
    def __init__(self, parameter: str, name: str) -> None:
        super().__init__(f"The '{parameter}' resource named '{name}' does not exist.")


class AlreadyExists(Conflict):
    def __init__(self, entity: str, name: str) -> None:
        super().__init__(
            f"The resource '{entity}' named '{name}' already exists", reason="alreadyExists"
        )


class ConditionNotMet(PreconditionFailed):
    def __init__(self, entity: str) -> None:
        super().__init__(
            f"Precondition not met for '{entity}': it does not match the current record set",
            reason="conditionNotMet",
        )
