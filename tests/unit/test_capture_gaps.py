"""What a change capture cannot carry on from is a gap (tasks/mongo_oplog.py): a
collection created or dropped since the chain's base, a drop, rename or invalidate
event in a drain. Pure logic: streams here are lists of MongoDB's change events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from bson.timestamp import Timestamp
from pymongo.errors import OperationFailure

from tasks.errors import PermanentError
from tasks.mongo import CollectionSpec
from tasks.mongo_oplog import (
    CaptureGap,
    CutNotReached,
    HistoryLost,
    Streams,
    drain,
    open_streams,
    token_text,
    without_post_images,
)

T0 = datetime(2026, 12, 5, 12, tzinfo=UTC)


def token(at: Timestamp) -> dict[str, str]:
    """MongoDB's resume token: 0x82 (a Timestamp), then seconds and increment, in hex."""
    return {"_data": f"82{at.time:08X}{at.inc:08X}2B0229"}


def ts(at: datetime, inc: int = 0) -> Timestamp:
    return Timestamp(int(at.timestamp()), inc)


CUT = ts(T0 + timedelta(minutes=5))
CUTS = {"varai": CUT}


class ListedStream:
    """A change stream's reading side: ``try_next`` until None, and its resume token.

    Each item of ``batches`` is what one getMore returns: events, then an empty batch whose
    postBatchResumeToken is ``high_water`` (by default past the cut: the stream is caught up).
    """

    def __init__(
        self, events: list[dict[str, Any]], high_water: list[Timestamp] | None = None
    ) -> None:
        self._events = events
        self._marks = list(high_water or [ts(T0 + timedelta(hours=1))])
        self.resume_token: Any = token(ts(T0 - timedelta(minutes=5)))
        self.reads = 0

    def try_next(self) -> dict[str, Any] | None:
        self.reads += 1
        if not self._events:
            mark = self._marks.pop(0) if len(self._marks) > 1 else self._marks[0]
            self.resume_token = token(mark)
            return None
        event = self._events.pop(0)
        self.resume_token = event["_id"]
        return event


def change(kind: str, at: datetime, inc: int, coll: str = "sessions") -> dict[str, Any]:
    event: dict[str, Any] = {
        "_id": token(ts(at, inc)),
        "operationType": kind,
        "clusterTime": ts(at, inc),
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
        drain(streams(events), CUTS)


def test_a_stream_that_ends_after_the_cut_is_left_for_the_next_drain() -> None:
    events = [change("insert", T0, 1), change("drop", T0 + timedelta(minutes=6), 2)]
    entries, tokens, _ = drain(streams(events), CUTS)
    assert len(entries) == 1 and token(ts(T0, 1))["_data"] in tokens["varai.sessions"]


def test_a_change_committed_just_before_the_cut_but_seen_later_is_waited_for() -> None:
    # The stream has read the oplog only to before the cut (an oplog hole: the write has
    # its cluster time, its commit is not visible yet); the next getMore shows it.
    late = change("insert", T0 + timedelta(minutes=4, seconds=59), 7)
    stream = ListedStream([], high_water=[ts(T0 + timedelta(minutes=4)), CUT])
    original = stream.try_next

    def show_late_write_on_second_read() -> dict[str, Any] | None:
        if stream.reads == 1:
            stream._events.append(late)
        return original()

    stream.try_next = show_late_write_on_second_read  # type: ignore[method-assign]
    entries, tokens, _ = drain(cast(Streams, {"varai.sessions": stream}), CUTS, wait_seconds=5)
    assert [e.ts for e in entries] == [late["clusterTime"]]  # in this slice, not the next
    assert tokens["varai.sessions"] == token_text(token(CUT))  # read through the cut


def test_a_change_after_the_cut_is_left_for_the_next_slice_and_its_token_not_taken() -> None:
    events = [change("insert", T0, 1), change("insert", T0 + timedelta(minutes=5, seconds=1), 2)]
    entries, tokens, _ = drain(streams(events), CUTS)
    assert [e.ts.inc for e in entries] == [1]
    assert tokens["varai.sessions"] == token_text(token(ts(T0, 1)))


def test_a_change_at_the_cut_itself_is_in_the_slice() -> None:
    entries, _, _ = drain(streams([change("insert", T0 + timedelta(minutes=5), 0)]), CUTS)
    assert [e.ts for e in entries] == [CUT]


def test_a_stream_that_never_reads_through_its_cut_is_retried_not_shipped_short() -> None:
    stuck = ListedStream([], high_water=[ts(T0)])
    with pytest.raises(CutNotReached, match="short of their cut"):
        drain(cast(Streams, {"varai.sessions": stuck}), CUTS, wait_seconds=0.2)


def test_a_token_without_a_cluster_time_is_refused() -> None:
    odd = ListedStream([])
    odd._marks = []
    odd.try_next = lambda: None  # type: ignore[method-assign]
    odd.resume_token = {"_data": "nx:3"}
    with pytest.raises(PermanentError, match="carries no cluster time"):
        drain(cast(Streams, {"varai.sessions": odd}), CUTS)


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
    entries, tokens, _ = drain(both, CUTS, ended)
    assert ended == ["varai.sessions"]
    assert tokens.keys() == {"varai.products"}  # no token: its chain does not go on
    assert len(entries) == 1  # the dropped collection's changes are left out with it


class LostStream(ListedStream):
    """A stream whose own resume, inside ``try_next``, finds its point gone (error 286)."""

    def try_next(self) -> dict[str, Any] | None:
        raise OperationFailure("Resume of change stream was not possible", code=286)


def test_history_lost_while_draining_is_a_gap_as_it_is_when_opening() -> None:
    with pytest.raises(HistoryLost, match=r"varai\.sessions.*ChangeStreamHistoryLost"):
        drain(cast(Streams, {"varai.sessions": LostStream([])}), CUTS)


def test_a_chain_over_a_collection_without_post_images_is_a_gap() -> None:
    tokens = {"varai.sessions": '{"_data": "a"}'}
    with pytest.raises(CaptureGap, match=r"varai\.sessions have no changeStreamPreAndPostImages"):
        open_streams(cast(Any, None), [spec("sessions")], tokens)


def test_which_collections_lack_post_images() -> None:
    on = CollectionSpec(
        database="varai",
        name="carts",
        options={"changeStreamPreAndPostImages": {"enabled": True}},
        indexes=[],
    )
    off = CollectionSpec(
        database="varai",
        name="wishes",
        options={"changeStreamPreAndPostImages": {"enabled": False}},
        indexes=[],
    )
    assert without_post_images([on, off, spec("sessions")]) == ["varai.sessions", "varai.wishes"]


class NoImageStream(ListedStream):
    """A `fullDocument: "required"` stream meeting an update without its post-image."""

    def try_next(self) -> dict[str, Any] | None:
        raise OperationFailure("post-image was not found", code=47)


def test_an_update_without_its_post_image_is_a_gap() -> None:
    with pytest.raises(CaptureGap, match=r"varai\.sessions: an update without its post-image"):
        drain(cast(Streams, {"varai.sessions": NoImageStream([])}), CUTS)
