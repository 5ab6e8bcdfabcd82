"""objects.rewrite state: rewrites that take several calls, and the lab's copy controls.

Google: "For large objects, this method requires the use of multiple requests ... the
method responds with the done flag set to false and also returns a rewriteToken. To
complete the rewrite, you must keep calling the endpoint using the rewriteToken returned
in the prior response until the done flag is true." A rewrite completes in one request
when source and destination share a location and a storage class
(https://cloud.google.com/storage/docs/json_api/v1/objects/rewrite). The request's
``maxBytesRewrittenPerCall`` "must be an integral multiple of 1 MiB (1048576)", "only
applies to requests where the source and destination span locations and/or storage
classes" and "must not change across rewrite calls else you'll get an error that the
rewriteToken is invalid" (the API's discovery document).

How many bytes Google moves per call when the caller sets no maximum is not documented;
the lab moves ``step_bytes`` (1 MiB unless the control API changes it), so that a rewrite
across locations takes several calls in tests. A token names a session held in memory;
a lab reset forgets every one.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from lab.storage.exceptions import InvalidArgument
from lab.storage.uploads import HashingWriter

MIB = 1 << 20
DEFAULT_STEP_BYTES = MIB


@dataclass
class RewriteSession:
    """One rewrite in progress: what it copies, and how far it has come."""

    token: str
    source_bucket: str
    source_name: str
    source_generation: int
    dest_bucket: str
    dest_name: str
    max_bytes_per_call: int | None
    step_bytes: int
    writer: HashingWriter
    object_size: int
    corrupt: bool
    done_bytes: int = 0

    def matches(
        self,
        source_bucket: str,
        source_name: str,
        dest_bucket: str,
        dest_name: str,
        max_bytes_per_call: int | None,
    ) -> bool:
        return (
            self.source_bucket,
            self.source_name,
            self.dest_bucket,
            self.dest_name,
            self.max_bytes_per_call,
        ) == (source_bucket, source_name, dest_bucket, dest_name, max_bytes_per_call)


def check_max_bytes(value: int | None) -> int | None:
    """400 unless ``maxBytesRewrittenPerCall`` is unset or a positive multiple of 1 MiB."""
    if value is not None and (value <= 0 or value % MIB):
        raise InvalidArgument(
            f"Invalid value for maxBytesRewrittenPerCall: {value}; "
            "it must be an integral multiple of 1 MiB (1048576)"
        )
    return value


class RewriteSessions:
    """Sessions by token, the default step, and the copies the lab is told to corrupt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, RewriteSession] = {}
        self.step_bytes = DEFAULT_STEP_BYTES
        self._corrupt: dict[str, int] = {}  # destination bucket → copies left to corrupt

    def clear(self) -> None:
        with self._lock:
            for session in self._sessions.values():
                session.writer.discard()
            self._sessions.clear()
            self._corrupt.clear()
            self.step_bytes = DEFAULT_STEP_BYTES

    def configure(
        self, step_bytes: int | None = None, corrupt: dict[str, int] | None = None
    ) -> None:
        """Set the default step (a multiple of 1 MiB) and add copies to corrupt per bucket."""
        with self._lock:
            if step_bytes is not None:
                check_max_bytes(step_bytes)
                self.step_bytes = step_bytes
            for bucket, count in (corrupt or {}).items():
                self._corrupt[bucket] = self._corrupt.get(bucket, 0) + count

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "step_bytes": self.step_bytes,
                "corrupt": dict(self._corrupt),
                "in_progress": len(self._sessions),
            }

    def take_corruption(self, dest_bucket: str) -> bool:
        """Whether the next copy into ``dest_bucket`` lands with one byte flipped."""
        with self._lock:
            left = self._corrupt.get(dest_bucket, 0)
            if left <= 0:
                return False
            self._corrupt[dest_bucket] = left - 1
            return True

    def open(self, session: RewriteSession) -> RewriteSession:
        with self._lock:
            self._sessions[session.token] = session
        return session

    def get(
        self,
        token: str,
        source_bucket: str,
        source_name: str,
        dest_bucket: str,
        dest_name: str,
        max_bytes_per_call: int | None,
    ) -> RewriteSession:
        with self._lock:
            session = self._sessions.get(token)
        if session is None or not session.matches(
            source_bucket, source_name, dest_bucket, dest_name, max_bytes_per_call
        ):
            raise InvalidArgument("The rewriteToken is invalid")
        return session

    def close(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)


def new_token() -> str:
    return secrets.token_urlsafe(24)
