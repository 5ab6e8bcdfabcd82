"""What every emulator shares: settings, latency, faults, the request log, the clock."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from lab.core.faults import FaultInjector
from lab.core.latency import LatencyModel
from lab.core.requestlog import RequestLog
from lab.core.scheduler import Scheduler
from lab.core.schema import SchemaViolations
from lab.core.settings import LabSettings


@dataclass
class LabContext:
    settings: LabSettings
    latency: LatencyModel
    faults: FaultInjector = field(default_factory=FaultInjector)
    requests: RequestLog = field(default_factory=RequestLog)
    scheduler: Scheduler = field(default_factory=Scheduler)
    # Replies that broke Google's discovery schema, and calls refused for breaking it;
    # kept across resets (the harness reads what arrived since each test began).
    violations: SchemaViolations = field(default_factory=SchemaViolations)
    # Emulator backends by api name ("dns", "run", "sql", "compute", "storage"), so the
    # region apps and the front door can read the same state the clients change.
    backends: dict[str, Any] = field(default_factory=dict)
    _outages: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, settings: LabSettings) -> LabContext:
        return cls(settings=settings, latency=LatencyModel(settings.time_scale))

    def set_outage(self, region: str, down: bool) -> None:
        with self._lock:
            if down:
                self._outages.add(region)
            else:
                self._outages.discard(region)

    def is_down(self, region: str) -> bool:
        with self._lock:
            return region in self._outages

    def outages(self) -> list[str]:
        with self._lock:
            return sorted(self._outages)

    def clear_runtime(self) -> None:
        """Forget faults, outages, pending transitions and the log (part of reset)."""
        self.faults.clear()
        self.requests.clear()
        self.scheduler.clear()
        with self._lock:
            self._outages.clear()
