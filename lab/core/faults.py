"""Fault injection: make chosen calls fail or slow down, by API, method and path."""

from __future__ import annotations

import random
import re
import threading
import uuid

from pydantic import BaseModel, Field, model_validator


class FaultRule(BaseModel):
    """One injected fault. ``count`` limits how many calls it hits; ``probability`` samples."""

    api: str = Field(description="dns, run, sql, compute, storage, region-app, front-door")
    method: str | None = Field(None, description="HTTP verb or gRPC method name; any if unset")
    path: str | None = Field(None, description="regular expression searched in the path")
    status: int | None = Field(None, ge=400, le=599)
    reason: str | None = None
    latency_s: float | None = Field(None, ge=0)
    count: int | None = Field(None, ge=1)
    probability: float | None = Field(None, gt=0, le=1)
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    hits: int = 0

    @model_validator(mode="after")
    def _has_effect(self) -> FaultRule:
        if self.status is None and self.latency_s is None:
            raise ValueError("a fault needs a status or a latency_s")
        if self.path is not None:
            re.compile(self.path)
        return self

    def matches(self, api: str, method: str, path: str) -> bool:
        if self.api != api:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return [r.model_copy() for r in self._rules]

    def match(self, api: str, method: str, path: str) -> FaultRule | None:
        """The first rule that fires for this call, consuming one of its count."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(api, method, path):
                    continue
                if rule.probability is not None and random.random() >= rule.probability:
                    continue
                rule.hits += 1
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count == 0:
                        self._rules.remove(rule)
                return rule.model_copy()
        return None
