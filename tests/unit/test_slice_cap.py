"""A slice cut short by the size cap still holds everything up to its own cut
(lifeboat/slice_cap.py, and the drain that applies it in tasks/mongo_oplog.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from bson.timestamp import Timestamp

from lifeboat.slice_cap import Kept, StreamRead, lowered_cuts, trimmed
from tasks.mongo_oplog import Streams, drain, token_text
from tests.unit.test_capture_gaps import CUT, CUTS, T0, ListedStream, change, token, ts


def read(start: int, kept: list[int], through: Timestamp | None = None) -> StreamRead:
    out = StreamRead(database="varai", start={"at": start}, start_at=Timestamp(start, 0))
    out.kept = [Kept(ts=Timestamp(t, 0), size=10, token={"at": t}) for t in kept]
    if through is not None:
        out.through, out.token = through, {"hwm": through.time}
    return out


def test_uncapped_streams_keep_the_servers_cut() -> None:
    cuts = {"varai": Timestamp(100, 0)}
    assert lowered_cuts(cuts, [read(10, [20, 30], Timestamp(100, 0))]) == cuts


def test_a_capped_stream_lowers_the_cut_to_its_last_change_and_the_others_trim_to_it() -> None:
    stopped = read(10, [20, 40])  # the cap stopped it: it has read to 40 only
    through = read(10, [30, 50, 60], Timestamp(100, 0))
    cut = lowered_cuts({"varai": Timestamp(100, 0)}, [stopped, through])["varai"]
    assert cut == Timestamp(40, 0)
    # The stream read through keeps what is at or before 40 and resumes after its 30.
    assert trimmed(through, cut) == (through.kept[:1], {"at": 30})
    assert trimmed(stopped, cut) == (stopped.kept, {"at": 40})


def test_a_stream_capped_before_it_kept_anything_holds_the_cut_where_it_started() -> None:
    idle = read(15, [])
    busy = read(10, [20, 30], Timestamp(100, 0))
    cut = lowered_cuts({"varai": Timestamp(100, 0)}, [idle, busy])["varai"]
    assert cut == Timestamp(15, 0)
    assert trimmed(busy, cut) == ([], {"at": 10})  # starts over from its own start
    assert trimmed(idle, cut) == ([], {"at": 15})


def test_a_stream_read_through_with_nothing_past_the_lowered_cut_keeps_its_high_water_mark() -> (
    None
):
    quiet = read(10, [20], Timestamp(100, 0))
    assert trimmed(quiet, Timestamp(40, 0)) == (quiet.kept, {"hwm": 100})


def test_a_drain_over_the_cap_ships_a_shorter_slice_and_the_next_takes_the_rest() -> None:
    sessions = [change("insert", T0 + timedelta(seconds=s), s) for s in range(1, 7)]
    carts = [change("insert", T0 + timedelta(seconds=s), 10 + s, "carts") for s in range(1, 3)]
    streams = cast(
        Streams,
        {"varai.sessions": ListedStream(list(sessions)), "varai.carts": ListedStream(list(carts))},
    )
    one_entry = len(drain(cast(Streams, {"varai.x": ListedStream([sessions[0]])}), CUTS)[0][0].raw)
    entries, tokens, reached = drain(streams, CUTS, max_bytes=3 * one_entry)
    assert reached["varai"] < CUT
    assert all(e.ts <= reached["varai"] for e in entries)
    first = {e.ts for e in entries}
    # The rest, resumed from the tokens, reaches the server's cut: nothing lost, nothing twice.
    rest_sessions = [e for e in sessions if e["clusterTime"] > reached["varai"]]
    rest_carts = [e for e in carts if e["clusterTime"] > reached["varai"]]
    assert tokens["varai.sessions"] == token_text(token(max(t for t in first if t.inc < 10)))
    again = cast(
        Streams,
        {"varai.sessions": ListedStream(rest_sessions), "varai.carts": ListedStream(rest_carts)},
    )
    rest, _, to = drain(again, CUTS)
    assert to == CUTS
    assert first.isdisjoint({e.ts for e in rest})
    assert first | {e.ts for e in rest} == {e["clusterTime"] for e in sessions + carts}
    assert ts(T0) < reached["varai"]  # the capped slice made progress
