"""The front door's view of DNS: a caching resolver, as every user's resolver is.

Cloud DNS marks a change ``done`` once its authoritative servers serve it. A recursive
resolver that asked before then keeps the old answer for the record set's TTL (RFC 1035
§3.2.1, RFC 2181 §8: the TTL is how long a resolver may cache the answer), so users
reach the new address some time after ``done``, not at it. The front door routes the way
those users do: through this cache.

Real resolvers hold an answer for up to the whole TTL (300 s for the lab's records).
The lab holds it for the TTL capped by the ``dns.resolver_cache`` latency (real seconds,
then ``time_scale``): long enough that the change is ``done`` a moment before the front
door sees it, short enough that the suite does not wait out five minutes per switch.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from lab.core.context import LabContext


class CachingResolver:
    """Answers ``(name, type)`` from the lab's served record sets, cached per their TTL."""

    def __init__(self, ctx: LabContext) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}

    def resolve(self, name: str, rtype: str) -> dict[str, Any] | None:
        key = (name.lower(), rtype.upper())
        now = time.monotonic()
        with self._lock:
            cached = self._answers.get(key)
            if cached is not None and now < cached[0]:
                return cached[1]
        answer: dict[str, Any] | None = self._ctx.backends["dns"].find_rrset(name, rtype)
        with self._lock:
            self._answers[key] = (now + self._hold_s(answer), answer)
        return answer

    def _hold_s(self, answer: dict[str, Any] | None) -> float:
        """How long this answer is kept: its TTL, capped, in the lab's time."""
        cap = self._ctx.latency.real_seconds("dns.resolver_cache")
        # A name with no record is not cached long either (RFC 2308's negative caching
        # uses the SOA's minimum; the lab's cap stands in for it).
        ttl = float(answer.get("ttl", cap)) if answer is not None else cap
        return min(ttl, cap) * self._ctx.latency.time_scale

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {f"{n} {t}": a for (n, t), (_, a) in sorted(self._answers.items())}
