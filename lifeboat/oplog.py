"""Change events as oplog entries: what `mongodump --oplog` writes and `--oplogReplay` reads.

A change stream event (MongoDB's change events) becomes one oplog entry of the shape
`mongodump --oplog` stores in `oplog.bson` (one BSON document after another):

    {ts: Timestamp, v: 2, op: "i" | "u" | "d", ns: "<db>.<coll>", wall: Date,
     o: <document> | {_id}, o2: {_id}}          # o2 on updates only

An update is written as a replacement by the whole post-image (``fullDocument``), which
`mongorestore --oplogReplay` applies as it applies a replacement update. Every entry is
idempotent (an insert or an update sets the whole document, a delete removes it), so
replaying entries over a dump taken while they happened converges on the state at the
last entry replayed: how mongodump's own `--oplog` backups are consistent.

`before(limit)` is `mongorestore --oplogLimit`: entries at or after the limit are left out.

Sources: https://www.mongodb.com/docs/database-tools/mongodump/ (`--oplog`),
https://www.mongodb.com/docs/database-tools/mongorestore/ (`--oplogReplay`, `--oplogLimit`),
https://www.mongodb.com/docs/manual/reference/change-events/ (clusterTime, wallTime,
documentKey, fullDocument).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp

OPLOG_FILE = "oplog.bson"
OPS = {"insert": "i", "update": "u", "replace": "u", "delete": "d"}


class UnreplayableChange(ValueError):
    """A change event that cannot become an oplog entry (no post-image, an unknown op)."""


@dataclass(frozen=True)
class Entry:
    """One oplog entry: its order (``ts``), its wall time and its BSON."""

    ts: Timestamp
    wall: datetime
    raw: bytes


def utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def utc_moment(at: datetime, field: str = "point_in_time") -> datetime:
    """A moment a person gave, in UTC; without a UTC offset it is refused (ValueError
    naming ``field``): read as UTC, a local time would be off by hours, in silence."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(
            f"{field}: {at.isoformat()} has no UTC offset; give one, e.g. 2026-12-05T14:30:00Z"
        )
    return at.astimezone(UTC)


def parse_moment(text: str, field: str = "point_in_time") -> datetime:
    """`utc_moment` of an RFC 3339 string; a malformed one is refused the same way."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{field}: {text!r} is not an RFC 3339 time, e.g. 2026-12-05T14:30:00Z"
        ) from None
    return utc_moment(at, field)


def entry_from_change(event: Mapping[str, Any]) -> Entry:
    """The oplog entry that replays one change event; raises `UnreplayableChange`.

    Needs the event's ``fullDocument`` on inserts and updates (a post-image): a delta
    alone cannot be replayed over a dump taken at an unknown moment.
    """
    kind = str(event.get("operationType"))
    op = OPS.get(kind)
    if op is None:
        raise UnreplayableChange(f"a {kind!r} change event cannot be replayed")
    ns = event["ns"]
    doc_key = event["documentKey"]
    ts = event["clusterTime"]
    wall = utc(event["wallTime"])
    entry: dict[str, Any] = {
        "ts": ts,
        "v": 2,
        "op": op,
        "ns": f"{ns['db']}.{ns['coll']}",
        "wall": wall,
    }
    if op == "d":
        entry["o"] = {"_id": doc_key["_id"]}
    else:
        full = event.get("fullDocument")
        if full is None:
            raise UnreplayableChange(
                f"the {kind} of {entry['ns']} {doc_key['_id']!r} has no fullDocument "
                "(the stream needs post-images)"
            )
        entry["o"] = full
        if op == "u":
            entry["o2"] = {"_id": doc_key["_id"]}
    return Entry(ts=ts, wall=wall, raw=bson.encode(entry))


def ordered(entries: Iterable[Entry]) -> list[Entry]:
    """Entries of several collections' streams in the order they happened."""
    return sorted(entries, key=lambda e: (e.ts.time, e.ts.inc))


def before(entries: Iterable[bytes], limit: datetime) -> Iterator[bytes]:
    """Entries written before ``limit`` (`--oplogLimit`: the limit itself is excluded).

    Filters rather than stops at the first later entry: a write stamped just before a
    slice's cut can be committed after it, and then sits in the next slice.
    """
    cut = utc(limit)
    for raw in entries:
        if utc(RawBSONDocument(raw)["wall"]) < cut:
            yield raw


def token_cluster_time(token: Any) -> Timestamp | None:
    """The cluster time a resume token stands at, or None when it cannot be read.

    MongoDB's tokens are ``{"_data": <hex>}``: a KeyString whose first value is the
    cluster time, type byte 0x82 then 8 bytes (seconds, increment), big-endian: the first
    18 hex characters (jira.mongodb.org/browse/SERVER-133517). A postBatchResumeToken
    after an empty batch is a high-water mark: the stream has read everything up to it.
    """
    data = token.get("_data") if isinstance(token, Mapping) else None
    if not isinstance(data, str) or len(data) < 18 or data[:2] != "82":
        return None
    try:
        return Timestamp(int(data[2:10], 16), int(data[10:18], 16))
    except ValueError:
        return None


def cut_text(cut: Timestamp) -> str:
    return f"{cut.time}:{cut.inc}"


def reached_by(cuts: Mapping[str, Timestamp]) -> datetime:
    """The moment every change before which is at or before the cuts: the start of the
    earliest cut's second (a change's cluster time counts the whole seconds of its wall
    time, so one written before that second has a cluster time before the cut)."""
    return datetime.fromtimestamp(min(c.time for c in cuts.values()), UTC)


def describe(raw: bytes) -> tuple[str, str, Any]:
    """An entry's (op, ns, _id)."""
    entry = RawBSONDocument(raw)
    key = entry["o2"] if entry["op"] == "u" else entry["o"]
    return str(entry["op"]), str(entry["ns"]), key["_id"]
