"""The CDN cache: cacheable responses kept until an invalidation clears them."""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass

CACHEABLE = ("/version", "/widgets/*")


@dataclass(frozen=True)
class CachedResponse:
    status: int
    body: bytes
    content_type: str
    region: str


def is_cacheable(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in CACHEABLE)


class EdgeCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], CachedResponse] = {}
        self.purges = 0

    def get(self, host: str, path: str) -> CachedResponse | None:
        with self._lock:
            return self._entries.get((host, path))

    def put(self, host: str, path: str, response: CachedResponse) -> None:
        with self._lock:
            self._entries[(host, path)] = response

    def invalidate(self, host: str | None, pattern: str) -> int:
        """Drop entries matching a url-map invalidation (host None means every host)."""
        with self._lock:
            doomed = [
                key
                for key in self._entries
                if (host in (None, "", key[0])) and fnmatch.fnmatchcase(key[1], pattern)
            ]
            for key in doomed:
                del self._entries[key]
            self.purges += 1
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def snapshot(self) -> list[dict[str, object]]:
        with self._lock:
            return [
                {"host": h, "path": p, "region": r.region, "status": r.status}
                for (h, p), r in self._entries.items()
            ]
