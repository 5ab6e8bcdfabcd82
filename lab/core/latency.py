"""The lab's latency model: how long each slow operation takes in the real cloud.

Every emulator asks this model how long an operation should stay unfinished, so one
``time_scale`` factor speeds the whole lab up for tests and benchmarks.
"""

from __future__ import annotations

import threading

# Seconds, before time_scale, from reference/gcp-clients.md.
REAL_SECONDS: dict[str, float] = {
    "dns.change": 5.0,
    # The longest a resolver keeps an old answer in the lab: the record's TTL, capped
    # here (lab/frontdoor/resolver.py says why; real resolvers keep it the whole TTL).
    "dns.resolver_cache": 20.0,
    "run.update": 45.0,
    # A request to a service with no warm instance waits for one to start; Google gives no
    # figure (run/docs/tips/general#cold-starts), a few seconds is typical.
    "run.cold_start": 5.0,
    # How long an idle instance is kept after its last request ("up to 15 minutes",
    # run/docs/about-instance-autoscaling#idle-instance).
    "run.idle_instance": 900.0,
    # An operation waits PENDING ("queued, but has not started yet", sqladmin Operation
    # status) before it runs; Google gives no figure, a few seconds is what clients see.
    "sql.pending": 5.0,
    "sql.promote": 180.0,
    "sql.failover": 60.0,
    "sql.backup": 300.0,
    "sql.restore": 600.0,
    "sql.export": 120.0,
    "sql.insert": 480.0,
    "sql.delete": 60.0,
    "sql.patch": 30.0,
    "cdn.invalidate_effect": 10.0,
    "cdn.invalidate_operation": 600.0,
}


class LatencyModel:
    """Scaled operation durations; thread-safe because emulators run on several threads."""

    def __init__(self, time_scale: float = 1.0, overrides: dict[str, float] | None = None):
        self._lock = threading.Lock()
        self._time_scale = time_scale
        self._real = dict(REAL_SECONDS)
        self._real.update(overrides or {})

    @property
    def time_scale(self) -> float:
        with self._lock:
            return self._time_scale

    def configure(
        self, time_scale: float | None = None, overrides: dict[str, float] | None = None
    ) -> None:
        with self._lock:
            if time_scale is not None:
                if time_scale < 0:
                    raise ValueError("time_scale must be >= 0")
                self._time_scale = time_scale
            for key, value in (overrides or {}).items():
                if key not in self._real:
                    raise ValueError(f"unknown latency key {key!r}")
                self._real[key] = float(value)

    def reset(self, time_scale: float) -> None:
        with self._lock:
            self._time_scale = time_scale
            self._real = dict(REAL_SECONDS)

    def real_seconds(self, operation: str) -> float:
        """The operation's duration in the real cloud, before ``time_scale``."""
        with self._lock:
            return self._real[operation]

    def seconds(self, operation: str) -> float:
        """Scaled wall-clock seconds the operation takes in the lab."""
        with self._lock:
            return self._real[operation] * self._time_scale

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"time_scale": self._time_scale, "real_seconds": dict(self._real)}
