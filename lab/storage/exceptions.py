"""Cloud Storage wire errors, one class per error Google's JSON API returns.

    ApiError (lab.core.errors)
    ├── BadRequest          400
    │   ├── InvalidArgument         invalid
    │   └── ChecksumMismatch        invalid (a declared md5Hash/crc32c is wrong)
    ├── NotFound            404
    │   ├── BucketNotFound          notFound
    │   ├── ObjectNotFound          notFound
    │   └── UploadNotFound          notFound (unknown resumable upload_id)
    ├── Conflict            409
    │   ├── BucketAlreadyExists     conflict
    │   └── BucketNotEmpty          conflict
    ├── PreconditionFailed  412
    │   └── ConditionNotMet         conditionNotMet
    └── UploadCancelled     499     a resumable upload that its client cancelled

``NotModified`` is not an ApiError: a 304 carries no body, so the routes answer it
themselves (GCS answers a failed ``if*NotMatch`` on a read with 304, not 412).
"""

from __future__ import annotations

from lab.core.errors import ApiError, BadRequest, Conflict, NotFound, PreconditionFailed


class InvalidArgument(BadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(message, reason="invalid")


class ChecksumMismatch(BadRequest):
    def __init__(self, kind: str, declared: str, computed: str) -> None:
        super().__init__(
            f"Provided {kind} hash {declared!r} doesn't match calculated {kind} hash {computed!r}.",
            reason="invalid",
        )


class BucketNotFound(NotFound):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"The specified bucket does not exist: {bucket}")


class ObjectNotFound(NotFound):
    def __init__(self, bucket: str, name: str) -> None:
        super().__init__(f"No such object: {bucket}/{name}")


class UploadNotFound(NotFound):
    def __init__(self, upload_id: str) -> None:
        super().__init__(f"No such resumable upload: {upload_id}")


class BucketAlreadyExists(Conflict):
    def __init__(self, bucket: str) -> None:
        super().__init__(
            "Your previous request to create the named bucket succeeded and you already own it: "
            f"{bucket}",
            reason="conflict",
        )


class BucketNotEmpty(Conflict):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"The bucket you tried to delete is not empty: {bucket}")


class ConditionNotMet(PreconditionFailed):
    def __init__(self, condition: str) -> None:
        super().__init__(
            f"At least one of the pre-conditions you specified did not hold: {condition}",
            reason="conditionNotMet",
        )


class UploadCancelled(ApiError):
    code = 499

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"Resumable upload {upload_id} was cancelled", reason="clientClosed")


class NotModified(Exception):
    """A read whose ``ifGenerationNotMatch``/``ifMetagenerationNotMatch`` failed (HTTP 304)."""
