"""Long-running operations of the Cloud Run API: google.longrunning.Operation records."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from lab.run.exceptions import ResourceNotFound
from lab.run.paging import paginate
from lab.run.resources import Operation


class OperationStore:
    """Operations by full name; the condition wakes ``wait`` callers when one finishes.

    It has its own lock. The backend calls it while holding the backend's lock, never the
    other way round, so the two cannot deadlock.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._operations: dict[str, Operation] = {}

    @staticmethod
    def new_name(project: str, location: str) -> str:
        return f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}"

    def add(self, name: str, target_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        operation = Operation(name, target_type, resource)
        with self._cond:
            self._operations[name] = operation
            return operation.to_json()

    def finish(
        self, name: str, resource: dict[str, Any], error: tuple[int, str] | None = None
    ) -> dict[str, Any] | None:
        """Mark an operation done; None if it was deleted or had already finished."""
        with self._cond:
            operation = self._operations.get(name)
            if operation is None or operation.done:
                return None
            operation.finish(resource, error)
            self._cond.notify_all()
            return operation.to_json()

    def get(self, name: str) -> dict[str, Any]:
        with self._cond:
            return self._find(name).to_json()

    def list(
        self, parent: str, done: bool | None, page_size: int, page_token: str, page_cap: int
    ) -> dict[str, Any]:
        with self._cond:
            matching = [
                op.to_json()
                for op in self._operations.values()
                if op.name.startswith(f"{parent}/operations/") and (done is None or op.done == done)
            ]
        page, next_token = paginate(matching, page_size, page_token, maximum=min(100, page_cap))
        body: dict[str, Any] = {"operations": page}
        if next_token:
            body["nextPageToken"] = next_token
        return body

    def delete(self, name: str) -> None:
        with self._cond:
            self._find(name)
            del self._operations[name]

    def wait(self, name: str, timeout: float) -> dict[str, Any]:
        """The operation once done, or as it stands when ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                operation = self._find(name)
                remaining = deadline - time.monotonic()
                if operation.done or remaining <= 0:
                    return operation.to_json()
                self._cond.wait(remaining)

    def reset(self) -> None:
        with self._cond:
            self._operations.clear()
            self._cond.notify_all()

    def _find(self, name: str) -> Operation:
        operation = self._operations.get(name)
        if operation is None:
            raise ResourceNotFound("Operation", name)
        return operation
