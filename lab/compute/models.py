"""Compute Engine state: url maps, the backend services they name, their cache
invalidations and the global operations.

An invalidation runs on two clocks, as in Cloud CDN:

- It takes effect after ``latency.seconds("cdn.invalidate_effect")`` (about 10 s real):
  every listener registered with ``on_invalidation`` is then called with ``(host, path)``,
  which is how the front door's cache drops the matching entries.
- Its operation stays RUNNING until ``latency.seconds("cdn.invalidate_operation")`` (about
  10 min real). Should the latency model make the operation the quicker of the two, the
  effect is applied when the operation finishes, so DONE always implies the purge happened.

Throttling: more than ``INVALIDATIONS_PER_MINUTE`` per project within one scaled minute
(60 s * time_scale) gets 403 rateLimitExceeded, which is how Compute answers. A request
that repeats a ``requestId`` gets the first request's operation back and counts once.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from lab.compute.backend_services import BackendService
from lab.compute.exceptions import InvalidField, RateLimitExceeded, ResourceExists, ResourceNotFound
from lab.core.context import LabContext

log = logging.getLogger(__name__)

INVALIDATIONS_PER_MINUTE = 500
DEFAULT_PAGE_SIZE = 500
# operations.wait holds the call for up to 2 min in Compute; the lab scales that and caps
# it so an HTTP client with a short timeout is not cut off.
WAIT_REAL_SECONDS = 120.0
MAX_WAIT_SECONDS = 2.0
SELF_LINK_BASE = "https://www.googleapis.com/compute/v1/projects"

InvalidationListener = Callable[[str | None, str], None]
T = TypeVar("T")


def rfc3339_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class UrlMap:
    project: str
    name: str
    hosts: list[str]
    default_service: str
    id: str
    creation_timestamp: str

    @property
    def self_link(self) -> str:
        return f"{SELF_LINK_BASE}/{self.project}/global/urlMaps/{self.name}"

    def to_json(self) -> dict[str, Any]:
        fingerprint = hashlib.sha256(self.self_link.encode()).digest()[:8]
        body: dict[str, Any] = {
            "kind": "compute#urlMap",
            "id": self.id,
            "creationTimestamp": self.creation_timestamp,
            "name": self.name,
            "selfLink": self.self_link,
            "defaultService": self.default_service,
            "fingerprint": base64.b64encode(fingerprint).decode(),
        }
        if self.hosts:
            body["hostRules"] = [{"hosts": list(self.hosts), "pathMatcher": "path-matcher-1"}]
            body["pathMatchers"] = [
                {"name": "path-matcher-1", "defaultService": self.default_service}
            ]
        return body


@dataclass
class Operation:
    project: str
    name: str
    id: str
    target: UrlMap
    insert_time: str
    status: str = "RUNNING"
    end_time: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "compute#operation",
            "id": self.id,
            "name": self.name,
            "operationType": "invalidateCache",
            "targetLink": self.target.self_link,
            "targetId": self.target.id,
            "status": self.status,
            "progress": 100 if self.status == "DONE" else 0,
            "insertTime": self.insert_time,
            "startTime": self.insert_time,
            "selfLink": f"{SELF_LINK_BASE}/{self.project}/global/operations/{self.name}",
        }
        if self.end_time:
            body["endTime"] = self.end_time
        return body


@dataclass
class Invalidation:
    """What the control API and tests read: when each purge was asked for and took effect."""

    project: str
    url_map: str
    host: str | None
    path: str
    operation: str
    requested_at: float
    effective_at: float | None = None
    done_at: float | None = None


class ComputeBackend:
    """Url maps and invalidations of every project; handlers and the scheduler share it."""

    def __init__(self, ctx: LabContext) -> None:
        self._ctx = ctx
        self._page_cap = ctx.settings.page_cap
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # wakes operations.wait callers
        self._url_maps: dict[tuple[str, str], UrlMap] = {}
        self._backend_services: dict[tuple[str, str], BackendService] = {}
        self._operations: dict[tuple[str, str], Operation] = {}
        self._invalidations: list[Invalidation] = []
        self._by_request_id: dict[tuple[str, str], Operation] = {}
        self._recent: dict[str, deque[float]] = {}
        self._ids = itertools.count(7_100_000_000_000_000_001)
        # The front door subscribes once at start-up, so listeners outlive reset().
        self._listeners: list[InvalidationListener] = []
        # A transition scheduled before reset() must not touch what is made after it.
        self._generation = 0

    def reset(self) -> None:
        with self._lock:
            self._url_maps.clear()
            self._backend_services.clear()
            self._operations.clear()
            self._invalidations.clear()
            self._by_request_id.clear()
            self._recent.clear()
            self._generation += 1
            self._changed.notify_all()

    def on_invalidation(self, callback: InvalidationListener) -> None:
        with self._lock:
            self._listeners.append(callback)

    def invalidations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(record) for record in self._invalidations]

    # urlMaps ------------------------------------------------------------------------------

    def create_url_map(
        self, project: str, name: str, hosts: list[str], default_service: str = ""
    ) -> dict[str, Any]:
        service = default_service or (
            f"{SELF_LINK_BASE}/{project}/global/backendServices/{name}-backend"
        )
        with self._lock:
            if (project, name) in self._url_maps:
                raise ResourceExists(f"projects/{project}/global/urlMaps/{name}")
            url_map = UrlMap(project, name, list(hosts), service, self._next_id(), rfc3339_now())
            self._url_maps[(project, name)] = url_map
            return url_map.to_json()

    def get_url_map(self, project: str, name: str) -> dict[str, Any]:
        with self._lock:
            return self._url_map(project, name).to_json()

    def list_url_maps(
        self, project: str, max_results: int | None, page_token: str | None
    ) -> dict[str, Any]:
        return self._list_by_name(self._url_maps, "urlMap", project, max_results, page_token)

    # backendServices (global) ------------------------------------------------------------

    def create_backend_service(
        self,
        project: str,
        name: str,
        backends: list[dict[str, Any]],
        *,
        enable_cdn: bool = False,
        cdn_policy: dict[str, Any] | None = None,
        protocol: str = "HTTPS",
        health_checks: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Seed a backend service (the lab's setup and tests; not an API method here)."""
        with self._lock:
            if (project, name) in self._backend_services:
                raise ResourceExists(f"projects/{project}/global/backendServices/{name}")
            service = BackendService(
                project,
                name,
                self._next_id(),
                rfc3339_now(),
                [dict(b) for b in backends],
                enable_cdn=enable_cdn,
                cdn_policy=dict(cdn_policy or {}),
                protocol=protocol,
                health_checks=list(health_checks),
            )
            self._backend_services[(project, name)] = service
            return service.to_json()

    def delete_backend_service(self, project: str, name: str) -> None:
        """Drop one (tests: a url-map left naming a backend service that is gone)."""
        with self._lock:
            if self._backend_services.pop((project, name), None) is None:
                raise ResourceNotFound(f"projects/{project}/global/backendServices/{name}")

    def get_backend_service(self, project: str, name: str) -> dict[str, Any]:
        with self._lock:
            found = self._backend_services.get((project, name))
            if found is None:
                raise ResourceNotFound(f"projects/{project}/global/backendServices/{name}")
            return found.to_json()

    def list_backend_services(
        self, project: str, max_results: int | None, page_token: str | None
    ) -> dict[str, Any]:
        store = self._backend_services
        return self._list_by_name(store, "backendService", project, max_results, page_token)

    def _list_by_name(
        self,
        store: dict[tuple[str, str], Any],
        kind: str,
        project: str,
        max_results: int | None,
        page_token: str | None,
    ) -> dict[str, Any]:
        """One page of a project's global resources of ``kind`` (``urlMap``), by name."""
        with self._lock:
            items = [item for (p, _), item in sorted(store.items()) if p == project]
            page, token = paginate(items, max_results, page_token, self._page_cap)
            collection = f"projects/{project}/global/{kind}s"
            return _listing(f"compute#{kind}List", collection, page, token)

    def invalidate_cache(
        self,
        project: str,
        url_map: str,
        host: str | None,
        path: str,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Accept a purge, or refuse it over the rate limit; it takes effect later."""
        _check_path(path)
        with self._lock:
            target = self._url_map(project, url_map)
            if request_id and (project, request_id) in self._by_request_id:
                return self._by_request_id[(project, request_id)].to_json()
            self._admit(project)
            operation = Operation(
                project,
                f"operation-{int(time.time() * 1000)}-{uuid.uuid4().hex[:13]}",
                self._next_id(),
                target,
                rfc3339_now(),
            )
            self._operations[(project, operation.name)] = operation
            if request_id:
                self._by_request_id[(project, request_id)] = operation
            record = Invalidation(project, url_map, host or None, path, operation.name, time.time())
            self._invalidations.append(record)
            generation = self._generation
            reply = operation.to_json()
        latency, scheduler = self._ctx.latency, self._ctx.scheduler
        scheduler.call_later(
            latency.seconds("cdn.invalidate_effect"),
            lambda: self._take_effect(record, generation),
        )
        scheduler.call_later(
            latency.seconds("cdn.invalidate_operation"),
            lambda: self._finish(operation, record, generation),
        )
        return reply

    # globalOperations ---------------------------------------------------------------------

    def get_operation(self, project: str, name: str) -> dict[str, Any]:
        with self._lock:
            return self._operation(project, name).to_json()

    def wait_operation(self, project: str, name: str) -> dict[str, Any]:
        """Block until DONE or a short bound passes, then return the current state."""
        bound = min(WAIT_REAL_SECONDS * self._ctx.latency.time_scale, MAX_WAIT_SECONDS)
        with self._changed:
            operation = self._operation(project, name)
            generation = self._generation
            self._changed.wait_for(
                lambda: operation.status == "DONE" or self._generation != generation, bound
            )
            return operation.to_json()

    def list_operations(
        self, project: str, max_results: int | None, page_token: str | None
    ) -> dict[str, Any]:
        with self._lock:
            ops = [op for (p, _), op in self._operations.items() if p == project]
            page, token = paginate(ops, max_results, page_token, self._page_cap)
            return _listing(
                "compute#operationList", f"projects/{project}/global/operations", page, token
            )

    # transitions (scheduler thread) -------------------------------------------------------

    def _take_effect(self, record: Invalidation, generation: int) -> None:
        with self._lock:
            if generation != self._generation or record.effective_at is not None:
                return
            record.effective_at = time.time()
            listeners = list(self._listeners)
        # Outside the lock: a listener may call back into this backend.
        for listener in listeners:
            try:
                listener(record.host, record.path)
            except Exception:  # one broken subscriber must not hide the purge from others
                log.exception("invalidation listener failed for %s %s", record.host, record.path)

    def _finish(self, operation: Operation, record: Invalidation, generation: int) -> None:
        self._take_effect(record, generation)
        with self._lock:
            if generation != self._generation:
                return
            operation.status = "DONE"
            operation.end_time = rfc3339_now()
            record.done_at = time.time()
            self._changed.notify_all()

    # helpers (call with the lock held) ----------------------------------------------------

    def _admit(self, project: str) -> None:
        window = 60.0 * self._ctx.latency.time_scale
        now = time.monotonic()
        recent = self._recent.setdefault(project, deque())
        while recent and now - recent[0] >= window:
            recent.popleft()
        if len(recent) >= INVALIDATIONS_PER_MINUTE:
            raise RateLimitExceeded(
                f"Rate Limit Exceeded: at most {INVALIDATIONS_PER_MINUTE} cache invalidations "
                f"per minute in project {project}"
            )
        recent.append(now)

    def _next_id(self) -> str:
        return str(next(self._ids))

    def _url_map(self, project: str, name: str) -> UrlMap:
        found = self._url_maps.get((project, name))
        if found is None:
            raise ResourceNotFound(f"projects/{project}/global/urlMaps/{name}")
        return found

    def _operation(self, project: str, name: str) -> Operation:
        found = self._operations.get((project, name))
        if found is None:
            raise ResourceNotFound(f"projects/{project}/global/operations/{name}")
        return found


def _check_path(path: str) -> None:
    """Cloud CDN takes an exact path or a prefix ending in ``/*``, nothing else."""
    if not path.startswith("/"):
        raise InvalidField(f"Invalid value for field 'resource.path': {path!r}")
    if "*" in path[:-1] or (path.endswith("*") and not path.endswith("/*")):
        raise InvalidField(
            f"Invalid value for field 'resource.path': {path!r} (a wildcard must end in /*)"
        )


def paginate(
    items: Sequence[T], max_results: int | None, page_token: str | None, cap: int
) -> tuple[list[T], str | None]:
    """One page, of at most ``cap`` items, and the token of the next (an opaque offset)."""
    start = 0
    if page_token:
        if not page_token.isdigit():
            raise InvalidField(f"Invalid value for 'pageToken': {page_token!r}")
        start = int(page_token)
    size = max_results or DEFAULT_PAGE_SIZE
    if not 0 < size <= DEFAULT_PAGE_SIZE:
        raise InvalidField(
            f"Invalid value for field 'maxResults': {max_results} (0 to {DEFAULT_PAGE_SIZE})"
        )
    end = start + min(size, cap)
    return list(items[start:end]), (str(end) if end < len(items) else None)


def _listing(kind: str, list_id: str, page: list[Any], token: str | None) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "kind": kind,
        "id": list_id,
        "items": [item.to_json() for item in page],
        "selfLink": f"{SELF_LINK_BASE}/{list_id.removeprefix('projects/')}",
    }
    if token:
        reply["nextPageToken"] = token
    return reply
