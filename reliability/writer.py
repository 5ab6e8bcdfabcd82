"""A writer through the front door: numbered writes at a fixed rate, and what each got back.

A 201 from ``POST /orders`` is an acknowledged write: the region app answers it only after
the commit returned. Anything else (the fence's 404, a read-only database's 503, no answer
at all) is not, and the client would retry. Afterwards every acknowledged id is looked up
on the final primary (``lost``): an id missing there is a lost acknowledged write.

Shared by the lost-write sweep (reliability/lost_writes.py) and the suite's failback
writer test, which may import reliability (the reverse is forbidden).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
import psycopg

WRITE_INTERVAL_S = 0.05
SKU = "VR-00042"


@dataclass(frozen=True)
class Answer:
    """One write: its id, when it was sent (epoch seconds), how long its answer took, and
    the status (None: no answer)."""

    order_id: str
    sent_at: float
    seconds: float
    status: int | None

    @property
    def acknowledged(self) -> bool:
        return self.status == 201


def post_order(front_door: str, host: str, order_id: str) -> httpx.Response:
    """A write through the public path: the front door routes it by DNS to a region app."""
    return httpx.post(
        f"{front_door}/orders",
        json={"id": order_id, "sku": SKU},
        headers={"host": host},
        timeout=15,
    )


class Writer(threading.Thread):
    """Sends numbered writes until stopped; keeps every answer, in order."""

    def __init__(
        self, front_door: str, host: str, prefix: str, interval_s: float = WRITE_INTERVAL_S
    ) -> None:
        super().__init__(daemon=True)
        self.front_door, self.host, self.prefix = front_door, host, prefix
        self.interval_s = interval_s
        self.answers: list[Answer] = []
        self._halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self._halt.is_set():
            n += 1
            order_id = f"{self.prefix}-{n:05d}"
            sent = time.time()
            status: int | None
            try:
                status = post_order(self.front_door, self.host, order_id).status_code
            except httpx.HTTPError:
                status = None  # no answer: not acknowledged
            self.answers.append(Answer(order_id, sent, time.time() - sent, status))
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    @property
    def acknowledged(self) -> list[str]:
        return [a.order_id for a in self.answers if a.acknowledged]

    @property
    def refused(self) -> dict[int, int]:
        """Answers other than 201, by status."""
        return refused(self.answers)

    @property
    def errors(self) -> int:
        """Writes that got no answer at all."""
        return sum(a.status is None for a in self.answers)


def refused(answers: Iterable[Answer]) -> dict[int, int]:
    """Answers other than 201, by status (no answer is not counted here)."""
    counts = Counter(a.status for a in answers if a.status is not None and a.status != 201)
    return dict(sorted(counts.items()))


def lost(acknowledged: Iterable[str], on_primary: Iterable[str]) -> list[str]:
    """The acknowledged ids the final primary does not hold, in the order they were sent."""
    held = set(on_primary)
    return [order_id for order_id in acknowledged if order_id not in held]


def acknowledged_rate(answers: list[Answer], start: float, end: float) -> float:
    """Acknowledged writes per second among those sent in [start, end)."""
    if end <= start:
        return 0.0
    acked = sum(a.acknowledged and start <= a.sent_at < end for a in answers)
    return acked / (end - start)


def writes_in_lag(rate_per_s: float, lag_seconds: float) -> int:
    """A lag stated in seconds as the writes it may hold: rate times seconds, rounded up
    (a part of a write at risk is a write at risk)."""
    if rate_per_s <= 0 or lag_seconds <= 0:
        return 0
    return math.ceil(round(rate_per_s * lag_seconds, 9))


def order_ids(
    address: str, prefix: str, port: int = 5432, database: str = "varai_prod"
) -> set[str]:
    """The ids of ``prefix``'s orders an instance holds, read as its superuser (lab only)."""
    with psycopg.connect(
        host=address, port=port, user="postgres", dbname=database, connect_timeout=5
    ) as conn:
        rows = conn.execute("SELECT id FROM orders WHERE id LIKE %s", (f"{prefix}-%",)).fetchall()
    return {str(r[0]) for r in rows}
