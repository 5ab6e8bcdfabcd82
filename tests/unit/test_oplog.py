"""Change events as oplog entries, their order and `--oplogLimit` (lifeboat/oplog.py), and
which slices a restore to a moment replays (lifeboat/slices.py): pure logic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp

from lifeboat.manifest import OplogCoverage, StoredObject
from lifeboat.oplog import (
    UnreplayableChange,
    before,
    describe,
    entry_from_change,
    ordered,
    reached_by,
    token_cluster_time,
)
from lifeboat.slices import (
    SliceManifest,
    chain,
    closing_gap,
    covered_until,
    has_guard,
    slices_needed,
)

T0 = datetime(2026, 12, 5, 12, tzinfo=UTC)


def event(kind: str, at: datetime, inc: int, doc: dict[str, Any] | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "_id": {"_data": f"nx:{inc}"},
        "operationType": kind,
        "clusterTime": Timestamp(int(at.timestamp()), inc),
        "wallTime": at.replace(tzinfo=None),  # pymongo's default: naive UTC
        "ns": {"db": "varai", "coll": "sessions"},
        "documentKey": {"_id": "s1"},
    }
    if doc is not None:
        found["fullDocument"] = doc
    return found


def test_an_insert_an_update_and_a_delete_become_mongodumps_oplog_entries() -> None:
    insert = entry_from_change(event("insert", T0, 1, {"_id": "s1", "n": 1}))
    update = entry_from_change(event("update", T0, 2, {"_id": "s1", "n": 2}))
    delete = entry_from_change(event("delete", T0, 3, None))
    assert [describe(e.raw) for e in (insert, update, delete)] == [
        ("i", "varai.sessions", "s1"),
        ("u", "varai.sessions", "s1"),
        ("d", "varai.sessions", "s1"),
    ]
    as_written = bson.decode(update.raw)
    assert as_written["o"] == {"_id": "s1", "n": 2} and as_written["o2"] == {"_id": "s1"}
    assert as_written["v"] == 2 and as_written["ts"] == Timestamp(int(T0.timestamp()), 2)
    assert bson.decode(delete.raw)["o"] == {"_id": "s1"}
    assert insert.wall == T0  # a naive wallTime is UTC


def test_a_change_that_cannot_be_replayed_is_refused_not_skipped() -> None:
    with pytest.raises(UnreplayableChange, match="no fullDocument"):
        entry_from_change(event("update", T0, 1, None))
    with pytest.raises(UnreplayableChange, match="drop"):
        entry_from_change(event("drop", T0, 1, None))


def test_the_raw_post_image_goes_in_byte_for_byte() -> None:
    doc = RawBSONDocument(bson.encode({"_id": "s1", "big": bson.int64.Int64(1)}))
    entry = entry_from_change(event("insert", T0, 1, doc))  # type: ignore[arg-type]
    assert RawBSONDocument(entry.raw)["o"].raw == doc.raw


def test_entries_of_several_streams_are_ordered_by_cluster_time() -> None:
    late = entry_from_change(event("insert", T0 + timedelta(seconds=1), 1, {"_id": "a"}))
    early_second = entry_from_change(event("insert", T0, 7, {"_id": "b"}))
    early_first = entry_from_change(event("insert", T0, 3, {"_id": "c"}))
    assert ordered([late, early_second, early_first]) == [early_first, early_second, late]


def test_the_limit_leaves_out_entries_at_or_after_it_only() -> None:
    stamps = [T0, T0 + timedelta(milliseconds=5), T0 + timedelta(seconds=1), T0]
    raws = [
        entry_from_change(event("insert", at, i, {"_id": i})).raw for i, at in enumerate(stamps)
    ]
    kept = list(before(raws, T0 + timedelta(milliseconds=5)))
    # The entry at the limit is out; one stamped before it after a later one is still in.
    assert [describe(r)[2] for r in kept] == [0, 3]


def piece(seq: int, since: datetime, until: datetime, status: str = "verified") -> SliceManifest:
    return SliceManifest(
        environment="lab",
        base_backup_id="20261205T120000Z",
        seq=seq,
        since=since,
        from_tokens={},
        oplog=OplogCoverage(entries=0, until=until, tokens={}),
        key_id="k",
        object=StoredObject(uri="gs://b/o", bytes=1, sha256="x"),
        sha256="y",
        status=status,  # type: ignore[arg-type]
        tool="test",
    )


def test_a_chain_ends_at_its_first_missing_or_unverified_slice() -> None:
    m = timedelta(minutes=5)
    one, two, four = piece(1, T0, T0 + m), piece(2, T0 + m, T0 + 2 * m), piece(4, T0, T0)
    assert chain([two, one, four]) == [one, two]
    assert covered_until(T0, [one, two, four]) == T0 + 2 * m
    bad = piece(2, T0 + m, T0 + 2 * m, status="unverified")
    assert covered_until(T0, [one, bad]) == T0 + m
    assert covered_until(T0, []) == T0


def test_a_restore_to_a_moment_replays_up_to_the_slice_reaching_past_it_and_one_more() -> None:
    m = timedelta(minutes=5)
    slices = [piece(n, T0 + (n - 1) * m, T0 + n * m) for n in (1, 2, 3, 4)]
    # A write stamped before slice n's cut may land in n+1: n+1 is read as a guard.
    assert [s.seq for s in slices_needed(slices, T0 + m + timedelta(seconds=1))] == [1, 2, 3]
    assert [s.seq for s in slices_needed(slices, T0 + m)] == [1, 2]
    assert [s.seq for s in slices_needed(slices, T0)] == [1]
    assert has_guard(slices_needed(slices, T0 + m), T0 + m)
    # The last slice reaches past the point and has no successor yet: the restore goes on.
    last = slices_needed(slices, T0 + 3 * m + timedelta(seconds=1))
    assert [s.seq for s in last] == [1, 2, 3, 4]
    assert not has_guard(last, T0 + 3 * m + timedelta(seconds=1))


def test_an_old_chain_reaches_a_new_base_only_through_a_verified_closing_slice() -> None:
    m = timedelta(minutes=5)
    base_end = T0 + m
    assert closing_gap(piece(3, T0, T0 + 2 * m), base_end) is None
    bad = piece(3, T0, T0 + 2 * m, status="unverified").model_copy(update={"error": "sha256"})
    gap = closing_gap(bad, base_end)
    assert gap is not None and "slice 3 is unverified (sha256)" in gap
    assert T0.isoformat() in gap and base_end.isoformat() in gap
    short = closing_gap(piece(3, T0, T0 + m / 2), base_end)
    assert short is not None and "before the new base's end" in short


def test_a_resume_tokens_cluster_time_is_read_as_mongodb_encodes_it() -> None:
    # A token MongoDB 6.0 gave with clusterTime Timestamp(1653586297, 1)
    # (jira.mongodb.org/browse/SERVER-66808).
    real = {
        "_data": "82628FB979000000012B022C0100296E5A1004EC71121BA6E44B5D97FB01ED73D7A21046"
        "645F69640064628FB966D440719E7C9887A00004"
    }
    assert token_cluster_time(real) == Timestamp(1653586297, 1)
    assert token_cluster_time({"_data": "nx:12"}) is None
    assert token_cluster_time(None) is None


def test_a_cut_is_reached_from_the_start_of_its_second_and_exact_from_the_next() -> None:
    cuts = {"varai": Timestamp(1653586297, 9), "other": Timestamp(1653586299, 2)}
    assert reached_by(cuts) == datetime.fromtimestamp(1653586297, UTC)
    cover = OplogCoverage(
        entries=0, until=reached_by(cuts), tokens={}, cut={"varai": "1653586297:9"}
    )
    assert cover.exact_from == datetime.fromtimestamp(1653586298, UTC)
