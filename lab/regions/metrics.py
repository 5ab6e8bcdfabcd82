"""Request samples of the region apps, the raw material of the lab's Cloud Monitoring.

Every reply a region app sends (injected faults and injected latency included) is one
sample: region, project, service, revision, path, status, wall seconds. lab/monitoring
turns them into Cloud Run's request_count and request_latencies time series.

The revision is the one that takes the largest share of the service's traffic when the
reply leaves: the lab's region apps do not split requests between revisions.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The first path segment names the service (seed 004's endpoints).
SERVICE_PREFIXES = {
    "auth": "auth-service",
    "ai": "ai-service",
    "recommendations": "recommendation-service",
    "face": "face-service",
}


def service_for_path(path: str) -> str | None:
    return SERVICE_PREFIXES.get(path.strip("/").split("/", 1)[0])


@dataclass(frozen=True)
class Sample:
    at: float
    region: str
    service: str
    path: str
    status: int
    seconds: float
    project: str = ""
    revision: str = ""


class RequestMetrics:
    """A bounded, thread-safe window of samples shared by every region app of one lab."""

    def __init__(self, limit: int = 200_000):
        self._lock = threading.Lock()
        self._samples: deque[Sample] = deque(maxlen=limit)

    def observe(
        self,
        region: str,
        path: str,
        status: int,
        seconds: float,
        project: str = "",
        revision_of: Callable[[str], str] | None = None,
    ) -> None:
        service = service_for_path(path)
        if service is None:
            return
        revision = revision_of(service) if revision_of is not None else ""
        sample = Sample(time.time(), region, service, path, status, seconds, project, revision)
        with self._lock:
            self._samples.append(sample)

    def add(self, sample: Sample) -> None:
        """Keep a sample made elsewhere (contract tests place samples in the past)."""
        with self._lock:
            self._samples.append(sample)

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()


class MetricsMiddleware:
    """Outermost wrapper of a region app, so injected faults and latency are measured too."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: RequestMetrics,
        region: str,
        project: str = "",
        revision_of: Callable[[str], str] | None = None,
    ):
        self.app = app
        self.metrics = metrics
        self.region = region
        self.project = project
        self.revision_of = revision_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(
                self.region,
                scope["path"],
                status,
                time.perf_counter() - started,
                self.project,
                self.revision_of,
            )
