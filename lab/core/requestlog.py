"""The log of every call the emulators served, for tests to assert on."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RequestEntry:
    seq: int
    time: float
    api: str
    method: str
    path: str
    status: int
    injected: bool
    # The raw query string: what a call changed is often only there (Cloud Run's
    # ``updateMask=ingress,annotations`` versus ``updateMask=scaling.minInstanceCount``).
    query: str = ""
    # Whether the method changes state, as the emulator that served it says (lab/core/http.py
    # ``reads``): tests assert "changed nothing" on this, not on a list of their own.
    write: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    def __init__(self, limit: int = 100_000):
        self._lock = threading.Lock()
        self._entries: list[RequestEntry] = []
        self._seq = 0
        self._limit = limit

    def record(
        self,
        api: str,
        method: str,
        path: str,
        status: int,
        injected: bool = False,
        query: str = "",
        write: bool = False,
    ) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append(
                RequestEntry(
                    self._seq, time.time(), api, method, path, status, injected, query, write
                )
            )
            if len(self._entries) > self._limit:
                del self._entries[: len(self._entries) - self._limit]

    def entries(
        self, api: str | None = None, method: str | None = None, since: int = 0
    ) -> list[RequestEntry]:
        with self._lock:
            return [
                e
                for e in self._entries
                if e.seq > since
                and (api is None or e.api == api)
                and (method is None or e.method == method)
            ]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
