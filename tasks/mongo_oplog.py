"""MongoDB change streams in, oplog entries out, and oplog entries replayed into a database.

The lab's MongoDB (nx-27017) is a standalone with change streams and no oplog; a replica
set has both. Change streams work on either, so they are what Lifeboat reads: one
stream per collection (resume tokens are per stream), opened with
``fullDocument: "required"`` so that every insert and update carries its post-image.
That needs the collection option `changeStreamPreAndPostImages`
(https://www.mongodb.com/docs/manual/changeStreams/#change-streams-with-document-pre--and-post-images):
without it the stream fails at the first update with error 47 NoMatchingDocument. A base
backup turns it on (`enable_post_images`) before its streams open; a slice of a chain
finds it off (or meets error 47) as a gap: updates made meanwhile cannot be replayed.

A resume token older than the oplog's window fails with error 286
(ChangeStreamHistoryLost, https://www.mongodb.com/docs/manual/reference/error-codes/):
`HistoryLost` here, never a silent restart from "now".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

from bson import json_util
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp
from pydantic import BaseModel, Field
from pymongo import MongoClient
from pymongo.change_stream import CollectionChangeStream
from pymongo.errors import OperationFailure

from lifeboat.manifest import OplogCoverage
from lifeboat.oplog import (
    Entry,
    cut_text,
    describe,
    entry_from_change,
    ordered,
    reached_by,
    token_cluster_time,
)
from lifeboat.slice_cap import Kept, StreamRead, lowered_cuts, trimmed
from tasks.errors import PermanentError, TransientError
from tasks.mongo import CollectionSpec, id_key

HISTORY_LOST = 286
# MongoDB's answer to a getMore of a `fullDocument: "required"` stream at an update whose
# post-image was not stored (the collection option was off when it happened).
NO_MATCHING_DOCUMENT = 47
POST_IMAGES = "changeStreamPreAndPostImages"
# How long a drain waits for a stream to read through its cut. MongoDB moves a stream's
# postBatchResumeToken on as it reads the oplog, and a replica set writes a no-op to it
# every 10 s when idle; a stream still short after a minute is a server falling behind:
# the task is retried.
REACH_SECONDS = 60.0
POLL_SECONDS = 0.05
Streams = dict[str, CollectionChangeStream[RawBSONDocument]]


class CaptureGap(PermanentError):
    """Changes the capture cannot carry on from: the chain ends, a new base starts one."""


class CutNotReached(TransientError):
    """A stream did not read through its cut in time: retried, never shipped short."""


class HistoryLost(CaptureGap):
    """A stored resume token is no longer in the server's change history: a gap."""


# Events after which a collection's stream carries no more of its changes: MongoDB
# sends `invalidate` after a drop or a rename of the watched collection, or a drop of its
# database (https://www.mongodb.com/docs/manual/reference/change-events/invalidate/).
STREAM_ENDS = frozenset({"drop", "rename", "dropDatabase", "invalidate"})


def token_text(token: Any) -> str:
    return json_util.dumps(token, json_options=json_util.CANONICAL_JSON_OPTIONS)


def open_streams(
    mongo: MongoClient[RawBSONDocument],
    specs: list[CollectionSpec],
    tokens: dict[str, str] | None = None,
) -> Streams:
    """One change stream per collection, resumed from ``tokens`` when given.

    Without ``tokens`` (a base backup) every stream starts now. With them (a chain going
    on), every namespace needs its token: a collection created since the chain's base
    has none (its writes so far are in no slice), and a token whose collection is gone
    (dropped, renamed) resumes nothing; both raise `CaptureGap`, as a token whose point
    is gone from the server's history raises `HistoryLost`, naming the namespace.
    """
    if tokens is not None:
        _check_namespaces({f"{s.database}.{s.name}" for s in specs}, tokens)
        _check_post_images(specs)
    streams: Streams = {}
    try:
        for spec in specs:
            ns = f"{spec.database}.{spec.name}"
            token = json_util.loads(tokens[ns]) if tokens and ns in tokens else None
            with _history_lost(ns):
                streams[ns] = mongo[spec.database][spec.name].watch(
                    full_document="required", resume_after=token
                )
    except BaseException:
        close_streams(streams)
        raise
    return streams


@contextlib.contextmanager
def _history_lost(ns: str) -> Iterator[None]:
    """Error 286 as `HistoryLost`: from `watch()`, or from a `try_next` that resumes the
    stream itself (after a network error) at a point the oplog has moved past; error 47
    (an update without its post-image) as `CaptureGap`."""
    try:
        yield
    except OperationFailure as exc:
        if exc.code == HISTORY_LOST:
            raise HistoryLost(
                f"change stream of {ns}: its resume token is no longer in the "
                f"server's history (ChangeStreamHistoryLost): changes were lost"
            ) from None
        if exc.code == NO_MATCHING_DOCUMENT:
            raise CaptureGap(
                f"change stream of {ns}: an update without its post-image ({POST_IMAGES} "
                "was off when it happened): it cannot be replayed"
            ) from None
        raise


def without_post_images(specs: list[CollectionSpec]) -> list[str]:
    """The namespaces whose collection option changeStreamPreAndPostImages is not on."""
    return sorted(
        f"{s.database}.{s.name}"
        for s in specs
        if not (s.options.get(POST_IMAGES) or {}).get("enabled")
    )


def enable_post_images(
    mongo: MongoClient[RawBSONDocument], specs: list[CollectionSpec]
) -> list[str]:
    """Turn changeStreamPreAndPostImages on where it is off (``collMod``); the namespaces
    changed. A base backup does it before its streams open: every update they carry
    happens after, so each has its post-image. Idempotent."""
    missing = without_post_images(specs)
    for ns in missing:
        database, _, name = ns.partition(".")
        mongo[database].command({"collMod": name, POST_IMAGES: {"enabled": True}})
    return missing


def _check_post_images(specs: list[CollectionSpec]) -> None:
    missing = without_post_images(specs)
    if missing:
        raise CaptureGap(
            f"collection(s) {', '.join(missing)} have no {POST_IMAGES}: their updates "
            "carry no post-image and cannot be replayed (a new base backup turns it on)"
        )


def _check_namespaces(listed: set[str], tokens: dict[str, str]) -> None:
    new = sorted(listed - tokens.keys())
    gone = sorted(tokens.keys() - listed)
    if new:
        raise CaptureGap(
            f"collection(s) {', '.join(new)} created since the chain's base: "
            "their changes until now are in no slice"
        )
    if gone:
        raise CaptureGap(
            f"collection(s) {', '.join(gone)} of the chain's tokens are gone "
            "(dropped or renamed): their last changes cannot be read"
        )


def close_streams(streams: Streams) -> None:
    for stream in streams.values():
        with contextlib.suppress(Exception):
            stream.close()


def server_cuts(mongo: MongoClient[RawBSONDocument], databases: list[str]) -> dict[str, Timestamp]:
    """Each database's cluster time now, from the server: a command reply's
    ``operationTime``, for a read "the timestamp of the most recent entry in the oplog"
    (https://www.mongodb.com/docs/manual/reference/method/db.runCommand/). Every change
    committed before it is at or before it; the worker's clock decides nothing."""
    cuts: dict[str, Timestamp] = {}
    for database in databases:
        reply = mongo[database].command("ping")
        at = reply.get("operationTime")
        if not isinstance(at, Timestamp):
            raise PermanentError(
                f"MongoDB gave no operationTime for {database}: change capture needs a "
                "replica set (a standalone has neither an oplog nor change streams)"
            )
        cuts[database] = at
    return cuts


def drain(
    streams: Streams,
    cuts: dict[str, Timestamp],
    ended: list[str] | None = None,
    wait_seconds: float = REACH_SECONDS,
    max_bytes: int | None = None,
) -> tuple[list[Entry], dict[str, str], dict[str, Timestamp]]:
    """Every change at or before its database's cut, in order, each stream's token, and
    the cuts the changes reach (the server's, or lower when ``max_bytes`` stopped it).

    Each stream is read until its postBatchResumeToken (the point it has read the oplog
    to) is at or past the cut: a change committed before the cut but visible a moment
    later is waited for, not left to the next slice. Changes after the cut are left for
    the next drain (the token is that of the last change kept, or the high-water mark
    when nothing after the cut was seen). The streams are read in turn, one change at a
    time, so that a cap stops them all near the same point (`lifeboat.slice_cap`). A
    drop, rename or invalidate event at or before the cut ends the stream: `CaptureGap`,
    unless ``ended`` is given (a base backup's dump): then the namespace goes there and
    has no token, and its changes are left out (the backup leaves the collection out).
    """
    reads = {
        ns: StreamRead(
            database=ns.partition(".")[0],
            start=stream.resume_token,
            start_at=_stands_at(ns, stream.resume_token),
        )
        for ns, stream in streams.items()
    }
    entries: dict[str, list[Entry]] = {ns: [] for ns in streams}
    active = list(streams)
    size, capped = 0, False
    deadline = time.monotonic() + wait_seconds
    while active:
        moved = False
        for ns in list(active):
            read = reads[ns]
            step = _step(ns, streams[ns], read, cuts[read.database], entries[ns], ended)
            if step == "kept":
                moved, size = True, size + read.kept[-1].size
            elif step != "waiting":
                active.remove(ns)
        if active and max_bytes is not None and size >= max_bytes:
            capped = True
            break
        if active and not moved:
            if time.monotonic() > deadline:
                short = ", ".join(f"{ns} at {cut_text(reads[ns].stands_at())}" for ns in active)
                raise CutNotReached(
                    f"change streams short of their cut after {wait_seconds:.0f} s: {short} "
                    f"(cuts {', '.join(f'{d} {cut_text(c)}' for d, c in cuts.items())})"
                )
            time.sleep(POLL_SECONDS)
        elif moved:
            deadline = time.monotonic() + wait_seconds
    reached = lowered_cuts(cuts, list(reads.values())) if capped else dict(cuts)
    kept: list[Entry] = []
    tokens: dict[str, str] = {}
    for ns, read in reads.items():
        if ended is not None and ns in ended:
            continue
        keep, token = trimmed(read, reached[read.database])
        kept += entries[ns][: len(keep)]
        tokens[ns] = token_text(token)
    return ordered(kept), tokens, reached


def _stands_at(ns: str, token: Any) -> Timestamp:
    at = token_cluster_time(token)
    if at is None:
        raise PermanentError(
            f"change stream of {ns}: its resume token {token!r} carries no cluster time; "
            "the capture cannot tell it read through its cut"
        )
    return at


def _step(
    ns: str,
    stream: CollectionChangeStream[RawBSONDocument],
    read: StreamRead,
    cut: Timestamp,
    into: list[Entry],
    ended: list[str] | None,
) -> str:
    """One read of a stream: "kept" a change, "waiting" short of the cut, "done" through
    it, or "ended" (a drop, rename or invalidate in a base backup's dump)."""
    with _history_lost(ns):
        event = stream.try_next()
    if event is None:
        if _stands_at(ns, stream.resume_token) < cut:
            return "waiting"
        read.through, read.token = cut, stream.resume_token
        return "done"
    if event["clusterTime"] > cut:
        read.through = cut
        read.token = read.kept[-1].token if read.kept else read.start
        return "done"
    if event.get("operationType") in STREAM_ENDS:
        if ended is None:
            raise CaptureGap(
                f"change stream of {ns}: a {event['operationType']} event: the "
                "collection's changes after it are not in this stream"
            )
        ended.append(ns)
        return "ended"
    entry = entry_from_change(event)
    into.append(entry)
    read.kept.append(Kept(ts=entry.ts, size=len(entry.raw), token=event["_id"]))
    return "kept"


def coverage(
    entries: list[Entry], tokens: dict[str, str], cuts: dict[str, Timestamp]
) -> OplogCoverage:
    return OplogCoverage(
        entries=len(entries),
        first_wall=entries[0].wall if entries else None,
        last_wall=entries[-1].wall if entries else None,
        until=reached_by(cuts),
        tokens=tokens,
        cut={database: cut_text(at) for database, at in cuts.items()},
    )


class Replayed(BaseModel):
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    changed_samples: dict[str, list[str]] = Field(
        default_factory=dict,
        description="namespace → the manifest's sampled _ids a replayed entry changed",
    )


def replay(
    mongo: MongoClient[RawBSONDocument],
    targets: dict[str, str],
    entries: Iterable[bytes],
    into: Replayed | None = None,
    samples: dict[str, set[str]] | None = None,
    leave_out: frozenset[str] = frozenset(),
) -> Replayed:
    """Apply oplog entries in order, each idempotent; namespaces outside ``targets`` (or
    in ``leave_out``, collections the backup left out) skip.

    ``targets`` maps a source database to the database restored into. ``samples`` (per
    namespace, the manifest's sampled ``_id`` keys) are noted when an entry changes one:
    the dump's hash of it no longer describes the restored document.
    """
    done = into or Replayed()
    for raw in entries:
        op, ns, doc_id = describe(raw)
        database, _, collection = ns.partition(".")
        if database not in targets or ns in leave_out:
            continue
        if samples and (key := id_key(doc_id)) in samples.get(ns, ()):
            done.changed_samples.setdefault(ns, []).append(key)
        coll = mongo[targets[database]][collection]
        if op == "d":
            coll.delete_one({"_id": doc_id})
            done.deleted += 1
            continue
        document = RawBSONDocument(raw)["o"]
        coll.replace_one({"_id": doc_id}, document, upsert=True)
        if op == "i":
            done.inserted += 1
        else:
            done.updated += 1
    return done


def raws(entries: list[Entry]) -> Iterator[bytes]:
    for entry in entries:
        yield entry.raw
