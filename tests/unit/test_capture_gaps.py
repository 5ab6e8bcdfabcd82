"""What a change capture cannot carry on from is a gap (tasks/mongo_oplog.py): a
collection created or dropped since the chain's base, a drop, rename or invalidate
event in a drain. Pure logic: streams here are lists of MongoDB's change events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from bson.timestamp import Timestamp
from pymongo.errors import OperationFailure

from tasks.mongo import CollectionSpec
from tasks.mongo_oplog import CaptureGap, HistoryLost, Streams, drain, open_streams

T0 = datetime(2026, 12, 5, 12, tzinfo=UTC)


class ListedStream:
    """A change stream's reading side: ``try_next`` until None, and its resume token."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events
        self.resume_token: Any = {"_data": "start"}

    def try_next(self) -> dict[str, Any] | None:
        if not self._events:
            return None
        event = self._events.pop(0)
        self.resume_token = event["_id"]
        return event


def change(kind: str, at: datetime, inc: int, coll: str = "sessions") -> dict[str, Any]:
    event: dict[str, Any] = {
        "_id": {"_data": f"nx:{inc}"},
        "operationType": kind,
        "clusterTime": Timestamp(int(at.timestamp()), inc),
        "wallTime": at.replace(tzinfo=None),
        "ns": {"db": "varai", "coll": coll},
    }
    if kind in ("insert", "update", "delete"):
        event["documentKey"] = {"_id": inc}
    if kind in ("insert", "update"):
        event["fullDocument"] = {"_id": inc}
    return event


def streams(events: list[dict[str, Any]]) -> Streams:
    return cast(Streams, {"varai.sessions": ListedStream(events)})


@pytest.mark.parametrize("kind", ["drop", "rename", "dropDatabase", "invalidate"])
def test_a_stream_that_ends_inside_a_drain_is_a_gap(kind: str) -> None:
    events = [change("insert", T0, 1), change(kind, T0 + timedelta(seconds=1), 2)]
    with pytest.raises(CaptureGap, match=f"varai.sessions: a {kind} event"):
        drain(streams(events), T0 + timedelta(minutes=5))


def test_a_stream_that_ends_after_the_cut_is_left_for_the_next_drain() -> None:
    events = [change("insert", T0, 1), change("drop", T0 + timedelta(minutes=6), 2)]
    entries, tokens = drain(streams(events), T0 + timedelta(minutes=5))
    assert len(entries) == 1 and "nx:1" in tokens["varai.sessions"]


def spec(name: str) -> CollectionSpec:
    return CollectionSpec(database="varai", name=name, options={}, indexes=[])


def test_a_collection_created_since_the_chains_base_is_a_gap() -> None:
    tokens = {"varai.sessions": '{"_data": "a"}'}
    with pytest.raises(CaptureGap, match=r"varai\.carts created since the chain's base"):
        open_streams(cast(Any, None), [spec("sessions"), spec("carts")], tokens)


def test_a_token_whose_collection_is_gone_is_a_gap() -> None:
    tokens = {"varai.sessions": '{"_data": "a"}', "varai.carts": '{"_data": "b"}'}
    with pytest.raises(CaptureGap, match=r"varai\.carts of the chain's tokens are gone"):
        open_streams(cast(Any, None), [spec("sessions")], tokens)


def test_in_a_base_backups_dump_a_dropped_collections_capture_ends_and_is_left_out() -> None:
    dropped = ListedStream([change("insert", T0, 1), change("drop", T0, 2)])
    kept = ListedStream([change("insert", T0, 3, coll="products")])
    both = cast(Streams, {"varai.sessions": dropped, "varai.products": kept})
    ended: list[str] = []
    entries, tokens = drain(both, T0 + timedelta(minutes=5), ended)
    assert ended == ["varai.sessions"]
    assert tokens.keys() == {"varai.products"}  # no token: its chain does not go on
    assert len(entries) == 1  # the dropped collection's changes are left out with it


class LostStream(ListedStream):
    """A stream whose own resume, inside ``try_next``, finds its point gone (error 286)."""

    def try_next(self) -> dict[str, Any] | None:
        raise OperationFailure("Resume of change stream was not possible", code=286)


def test_history_lost_while_draining_is_a_gap_as_it_is_when_opening() -> None:
    with pytest.raises(HistoryLost, match=r"varai\.sessions.*ChangeStreamHistoryLost"):
        drain(cast(Streams, {"varai.sessions": LostStream([])}), T0)
