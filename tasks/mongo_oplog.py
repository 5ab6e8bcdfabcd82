"""MongoDB change streams in, oplog entries out, and oplog entries replayed into a database.

The lab's MongoDB (nx-27017) is a standalone with change streams and no oplog; a replica
set has both. Change streams work on either, so they are what Lifeboat reads: one
stream per collection (resume tokens are per stream), opened with
``fullDocument: "required"`` so that every insert and update carries its post-image.
On a MongoDB replica set that needs `changeStreamPreAndPostImages` on each collection
(https://www.mongodb.com/docs/manual/changeStreams/#change-streams-with-document-pre--and-post-images);
without it the stream fails at the first update, loudly, instead of capturing changes
that cannot be replayed.

A resume token older than the oplog's window fails with error 286
(ChangeStreamHistoryLost, https://www.mongodb.com/docs/manual/reference/error-codes/):
`HistoryLost` here, never a silent restart from "now".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from bson import json_util
from bson.raw_bson import RawBSONDocument
from pydantic import BaseModel, Field
from pymongo import MongoClient
from pymongo.change_stream import CollectionChangeStream
from pymongo.errors import OperationFailure

from lifeboat.manifest import OplogCoverage
from lifeboat.oplog import Entry, describe, entry_from_change, ordered, utc
from tasks.errors import PermanentError
from tasks.mongo import CollectionSpec, id_key

HISTORY_LOST = 286
Streams = dict[str, CollectionChangeStream[RawBSONDocument]]


class CaptureGap(PermanentError):
    """Changes the capture cannot carry on from: the chain ends, a new base starts one."""


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
    stream itself (after a network error) at a point the oplog has moved past."""
    try:
        yield
    except OperationFailure as exc:
        if exc.code == HISTORY_LOST:
            raise HistoryLost(
                f"change stream of {ns}: its resume token is no longer in the "
                f"server's history (ChangeStreamHistoryLost): changes were lost"
            ) from None
        raise


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


def drain(
    streams: Streams, until: datetime, ended: list[str] | None = None
) -> tuple[list[Entry], dict[str, str]]:
    """Every change before ``until``, in order, and each stream's token after its last.

    Reads each stream to its end; changes at or after ``until`` are left for the next
    drain (its token is that of the last change kept, so nothing is skipped). A drop,
    rename or invalidate event before ``until`` ends the stream: `CaptureGap`, unless
    ``ended`` is given (a base backup's dump): then the namespace goes there and has no
    token, and its changes are left out (the backup leaves the collection out).
    """
    cut = utc(until)
    kept: list[Entry] = []
    tokens: dict[str, str] = {}
    for ns, stream in streams.items():
        token = stream.resume_token
        while True:
            with _history_lost(ns):
                event = stream.try_next()
            if event is None:
                token = token if token is not None else stream.resume_token
                break
            if event.get("operationType") in STREAM_ENDS:
                if "wallTime" in event and utc(event["wallTime"]) >= cut:
                    break
                if ended is not None:
                    ended.append(ns)
                    token = None
                    break
                raise CaptureGap(
                    f"change stream of {ns}: a {event['operationType']} event: the "
                    "collection's changes after it are not in this stream"
                )
            entry = entry_from_change(event)
            if entry.wall >= cut:
                break
            kept.append(entry)
            token = event["_id"]
        if ended is not None and ns in ended:
            continue
        tokens[ns] = token_text(token)
    if ended:
        kept = [e for e in kept if describe(e.raw)[1] not in ended]
    return ordered(kept), tokens


def coverage(entries: list[Entry], tokens: dict[str, str], until: datetime) -> OplogCoverage:
    return OplogCoverage(
        entries=len(entries),
        first_wall=entries[0].wall if entries else None,
        last_wall=entries[-1].wall if entries else None,
        until=utc(until),
        tokens=tokens,
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
