"""A writer that inserts, updates and deletes while a backup runs, and what it did when.

Each operation is logged with the time before it was sent and after it was acknowledged,
and the document as it was just after (read back), so a test can say what a collection
held at any moment: every operation acknowledged before it, none sent after it, and at
most one in flight (either way).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.collection import Collection

# How far the server's millisecond change stamps may sit from the writer's own clock reads.
SLACK = timedelta(milliseconds=5)


@dataclass
class Operation:
    sent: datetime
    acked: datetime
    key: bytes
    after: bytes | None  # the document's BSON just after, None when deleted


@dataclass
class Writer:
    uri: str
    database: str
    collection: str
    pause: float = 0.02
    log: list[Operation] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            with MongoClient(self.uri, document_class=RawBSONDocument) as client:
                coll = client[self.database][self.collection]
                i = 0
                while not self._stop.is_set():
                    self._step(coll, i)
                    i += 1
                    time.sleep(self.pause)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def _step(self, coll: Collection[RawBSONDocument], i: int) -> None:
        """Three kinds in turn: insert w<i>, update w<i-1>, delete w<i-5>."""
        kind = i % 3
        sent = datetime.now(UTC)
        if kind == 0:
            doc_id = f"w{i}"
            coll.insert_one({"_id": doc_id, "n": i, "tag": "new"})
        elif kind == 1:
            doc_id = f"w{i - 1}"
            coll.update_one({"_id": doc_id}, {"$set": {"n": -i, "tag": "changed"}})
        else:
            doc_id = f"w{i - 5}"
            coll.delete_one({"_id": doc_id})
        acked = datetime.now(UTC)
        after = coll.find_one({"_id": doc_id})
        self.log.append(
            Operation(sent, acked, _id_key_of(doc_id), bytes(after.raw) if after else None)
        )


def _id_key_of(doc_id: str) -> bytes:
    import bson

    return bson.encode({"_id": doc_id})


def state_at(
    before: dict[bytes, bytes], log: list[Operation], moment: datetime
) -> list[dict[bytes, bytes]]:
    """The collection at ``moment``: one candidate, or two when an operation was in flight."""
    settled = dict(before)
    in_flight = []
    for op in log:
        if op.acked + SLACK < moment:
            _apply(settled, op)
        elif op.sent - SLACK <= moment:
            in_flight.append(op)
    assert len(in_flight) <= 1, "the writer's pause is shorter than the clocks' slack"
    if not in_flight:
        return [settled]
    with_it = dict(settled)
    _apply(with_it, in_flight[0])
    return [settled, with_it]


def _apply(state: dict[bytes, bytes], op: Operation) -> None:
    if op.after is None:
        state.pop(op.key, None)
    else:
        state[op.key] = op.after
