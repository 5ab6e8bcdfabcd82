"""Request metrics of the region apps, as Cloud Monitoring would keep them per service.

Every reply a region app sends (injected faults and injected latency included) is one
sample: region, service, path, status, seconds. ``summary`` answers what the `watch` flow
asks Cloud Monitoring in production: per service over a window, the request count, the
5xx count, the failed replies per path (health checks) and the p95 latency.

Windows and latencies are in lab time: the lab runs ``time_scale`` times faster than the
world it models, so a 5-minute window at time_scale 0.01 covers the last 3 wall seconds,
and a reply that took 0.06 wall seconds counts as 6 s.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

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


class RequestMetrics:
    """A bounded, thread-safe window of samples shared by every region app of one lab."""

    def __init__(self, limit: int = 200_000):
        self._lock = threading.Lock()
        self._samples: deque[Sample] = deque(maxlen=limit)

    def observe(self, region: str, path: str, status: int, seconds: float) -> None:
        service = service_for_path(path)
        if service is None:
            return
        with self._lock:
            self._samples.append(Sample(time.time(), region, service, path, status, seconds))

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()

    def summary(self, region: str, window_s: float, time_scale: float) -> dict[str, Any]:
        scale = max(time_scale, 0.001)
        since = time.time() - window_s * scale
        with self._lock:
            samples = [s for s in self._samples if s.at >= since and s.region == region]
        services: dict[str, Any] = {}
        for name in sorted({s.service for s in samples}):
            mine = [s for s in samples if s.service == name]
            paths: dict[str, dict[str, int]] = {}
            for s in mine:
                counts = paths.setdefault(s.path, {"requests": 0, "failures": 0})
                counts["requests"] += 1
                counts["failures"] += s.status >= 400
            services[name] = {
                "requests": len(mine),
                "errors": sum(s.status >= 500 for s in mine),
                "p95_s": _p95([s.seconds / scale for s in mine]),
                "paths": paths,
            }
        return {
            "region": region,
            "window_s": window_s,
            "time_scale": time_scale,
            "services": services,
        }


def _p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile, as Cloud Monitoring's percentile aligners report it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class MetricsMiddleware:
    """Outermost wrapper of a region app, so injected faults and latency are measured too."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics, region: str):
        self.app = app
        self.metrics = metrics
        self.region = region

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
            self.metrics.observe(self.region, scope["path"], status, time.perf_counter() - started)
