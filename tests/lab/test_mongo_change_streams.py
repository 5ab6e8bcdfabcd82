"""The lab's MongoDB change streams, with pymongo: what MongoDB documents for change events
and resume tokens (lab/FIDELITY.md, "MongoDB change streams")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from bson import ObjectId, Timestamp
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure

from tests.labharness import Lab

DATABASE = "change_streams_contract"


@pytest.fixture
def db(lab: Lab) -> Iterator[Database[dict[str, object]]]:
    client: MongoClient[dict[str, object]] = MongoClient(
        str(lab.endpoints["mongodb_uri"]), tz_aware=True
    )
    try:
        client.drop_database(DATABASE)
        yield client[DATABASE]
    finally:
        client.drop_database(DATABASE)
        client.close()


def test_events_carry_the_writes_time_order_and_bson_types(db: Database[dict[str, object]]) -> None:
    oid, at = ObjectId(), datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    with db.things.watch(full_document="required") as stream:
        before = datetime.now(UTC)
        db.things.insert_one({"_id": oid, "at": at, "n": 1})
        db.things.update_one({"_id": oid}, {"$set": {"n": 2}})
        db.things.insert_one({"_id": 7, "n": 3})
        db.things.delete_one({"_id": 7})
        after = datetime.now(UTC)
        time.sleep(0.1)
        events = [stream.try_next() for _ in range(4)]
    assert all(e is not None for e in events)
    kinds = [e["operationType"] for e in events if e]
    assert kinds == ["insert", "update", "insert", "delete"]
    stamps = [e["clusterTime"] for e in events if e]
    assert all(isinstance(t, Timestamp) for t in stamps) and stamps == sorted(stamps)
    for event in events:
        assert event is not None
        wall = event["wallTime"]
        assert isinstance(wall, datetime)
        # The server stamps milliseconds: the write's time, not the read's.
        assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= wall <= after
    first, second, third, fourth = (e for e in events if e)
    assert first["fullDocument"] == {"_id": oid, "at": at, "n": 1}
    assert second["fullDocument"] == {"_id": oid, "at": at, "n": 2}
    assert third["documentKey"] == {"_id": 7}  # an int _id stays an int
    assert "fullDocument" not in fourth and fourth["documentKey"] == {"_id": 7}


def test_a_token_off_the_history_is_change_stream_history_lost(
    lab: Lab, db: Database[dict[str, object]]
) -> None:
    with db.things.watch() as stream:
        start = stream.resume_token
    db.things.insert_one({"_id": 1})
    with db.things.watch(resume_after=start) as stream:
        time.sleep(0.1)
        event = stream.try_next()
        assert event is not None
        newest = event["_id"]
    lab.roll_oplog(DATABASE)
    db.things.insert_one({"_id": 2})
    with pytest.raises(OperationFailure) as lost:
        db.things.watch(resume_after=start)
    assert lost.value.code == 286
    assert (lost.value.details or {}).get("codeName") == "ChangeStreamHistoryLost"
    # A token at the newest change dropped lost nothing after it: it still resumes.
    with db.things.watch(resume_after=newest) as stream:
        time.sleep(0.1)
        event = stream.try_next()
    assert event is not None and event["documentKey"] == {"_id": 2}
