"""nx-27017 with the change-stream details MongoDB documents and nx-27017 leaves out.

The lab's MongoDB is a standalone nx-27017 server (no replica set, no `local.oplog.rs`)
whose change streams are backed by SQLite triggers writing a change log. This launcher
runs nx-27017 unchanged, with a change-stream manager that adds what MongoDB's change
events carry and what a consumer of them relies on:

- ``wallTime`` is the time of the write, and ``clusterTime`` a BSON Timestamp whose
  order is the order of the writes (nx-27017 stamps both with the time of the *read*);
- ``fullDocument`` holds the document's own BSON types (nx-27017 returns its storage
  JSON: ``{"__neosqlite_objectid__": …}``, ``{"$date": "…"}``), and ``documentKey``
  the document's ``_id`` as stored (nx-27017 returns an int ``_id`` as a string);
- a delete event has no ``fullDocument``;
- a resume token whose point has fallen off the change log (the oplog's window) fails
  with error 286 ``ChangeStreamHistoryLost``, instead of resuming after the gap in
  silence. The lab's control API rolls the window forward (``lab.mongo.history``);
- a command's reply carries ``operationTime``, the database's cluster time, and resume
  tokens are MongoDB's hex ``_data`` that begins with the token's cluster time; a batch's
  ``postBatchResumeToken`` is the last event's token while more changes wait, else a
  high-water mark at the clock (``lab.mongo.cluster_time``).

Sources (lab/FIDELITY.md, "MongoDB change streams"):
https://www.mongodb.com/docs/manual/reference/change-events/ (clusterTime, wallTime,
documentKey, fullDocument), https://www.mongodb.com/docs/manual/changeStreams/
(resumeAfter: "If the oplog entry for the resume token is no longer available … the
change stream cannot be resumed"), https://www.mongodb.com/docs/manual/reference/error-codes/
(286 ChangeStreamHistoryLost), https://www.mongodb.com/docs/manual/reference/method/db.runCommand/
(operationTime: for a read, "the timestamp of the most recent entry in the oplog").
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from bson.timestamp import Timestamp
from neosqlite.collection.json_helpers import neosqlite_json_loads
from nx_27017 import changestream, handler
from nx_27017.nx_27017 import main

from lab.mongo.cluster_time import clock, token, token_rowid
from lab.mongo.history import HORIZON_TABLE, WALL_TIME_TRIGGER, lost_through
from lab.mongo.post_images import (
    NO_MATCHING_DOCUMENT,
    OPTION,
    PostImageMissing,
    check_post_image,
    enabled_after,
    requested,
    set_option,
)

HISTORY_LOST = 286


class ChangeStreamHistoryLost(Exception):
    """The resume point is older than the oldest change the server still holds."""


class LabChangeStreamManager(changestream.ChangeStreamManager):  # type: ignore[misc]  # untyped
    def ensure_tracked(self, db_name: str, collection_name: str, get_collection: Any) -> Any:
        tracker = super().ensure_tracked(db_name, collection_name, get_collection)
        if tracker is not None:
            db = tracker["collection"].db
            db.execute(WALL_TIME_TRIGGER)
            db.execute(HORIZON_TABLE)
            if not db.in_transaction:
                db.commit()
        return tracker

    def _watermark_now(self, tracker: dict[str, Any]) -> int:
        # After a roll the log is empty; "now" is still past everything that was lost.
        lost = lost_through(tracker["collection"].db, tracker["collection"].name)
        return max(int(super()._watermark_now(tracker)), lost or 0)

    def check_resumable(
        self, db_name: str, collection_name: str, token: Any, get_collection: Any
    ) -> None:
        """Raise `ChangeStreamHistoryLost` when the token's point fell off the change log."""
        rowid = changestream._wire_rowid(token)
        if rowid is None:
            return
        tracker = self.ensure_tracked(db_name, collection_name, get_collection)
        if tracker is None:
            return
        lost = lost_through(tracker["collection"].db, collection_name)
        if lost is not None and rowid < lost:
            raise ChangeStreamHistoryLost(
                "Resume of change stream was not possible, as the resume point may "
                "no longer be in the oplog."
            )

    def _translate_row(
        self, stream: changestream.ChangeStreamCursor, rowid: int, row: Any
    ) -> dict[str, Any] | None:
        event: dict[str, Any] | None = super()._translate_row(stream, rowid, row)
        if event is None:
            return None
        operation, data = row[1], row[3]
        document = None
        if data:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            document = neosqlite_json_loads(text)
        if isinstance(document, dict) and "_id" in document:
            event["documentKey"] = {"_id": document["_id"]}
        event["fullDocument"] = (
            None if operation == "delete" or stream.full_document == "off" else document
        )
        if operation == "delete":
            event.pop("fullDocument")
        wall = self._wall_time(stream, rowid)
        event["wallTime"] = wall
        event["clusterTime"] = Timestamp(int(wall.timestamp()), rowid)
        event["_id"] = token(event["clusterTime"])
        if stream.full_document == "required" and operation in ("update", "replace"):
            tracker = self._trackers.get((stream.db_name, stream.collection_name))
            if tracker is not None:
                check_post_image(tracker["collection"].db, stream.collection_name, rowid, event)
        return event

    def pull_stream(
        self, stream: changestream.ChangeStreamCursor, batch_size: int = 101
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """A batch and its postBatchResumeToken: the last event's token while changes of
        the collection still wait, else a high-water mark at the database's clock (the
        stream has read every change logged so far)."""
        batch, _ = super().pull_stream(stream, batch_size)
        tracker = self._trackers.get((stream.db_name, stream.collection_name))
        if tracker is not None and stream._watermark >= self._watermark_now(tracker):
            stream.lab_token = token(clock(tracker["collection"].db))
        elif batch:
            stream.lab_token = batch[-1]["_id"]
        return batch, _resume_token(stream)

    def _wall_time(self, stream: changestream.ChangeStreamCursor, rowid: int) -> datetime:
        tracker = self._trackers.get((stream.db_name, stream.collection_name))
        stamp = None
        if tracker is not None:
            found = (
                tracker["collection"]
                .db.execute("SELECT timestamp FROM _neosqlite_changestream WHERE id = ?", (rowid,))
                .fetchone()
            )
            stamp = found[0] if found else None
        if not stamp:
            return datetime.now(UTC)
        at = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        return at if at.tzinfo else at.replace(tzinfo=UTC)


_plain_handle_change_stream = handler.NeoSQLiteHandler._handle_change_stream
_plain_wire_rowid = changestream._wire_rowid
_plain_resume_token = changestream.ChangeStreamCursor.get_resume_token


def _wire_rowid(value: Any) -> int | None:
    rowid = token_rowid(value)
    return rowid if rowid is not None else _plain_wire_rowid(value)


def _resume_token(stream: changestream.ChangeStreamCursor) -> dict[str, str]:
    return getattr(stream, "lab_token", None) or _plain_resume_token(stream)  # type: ignore[no-any-return]


def _handle_change_stream(
    self: Any,
    request_id: int,
    coll_name: str,
    pipeline: list[dict[str, Any]],
    db: Any,
    db_name: str = "test",
    owner: Any = None,
) -> Any:
    """Check the resume point first: nx-27017 answers every error without a code."""
    options = changestream.extract_change_stream_options(pipeline)
    resume_at = options.get("resume_after") or options.get("start_after")
    if resume_at is not None:
        try:
            self._change_stream_manager.check_resumable(
                db_name, coll_name, resume_at, lambda: db[coll_name]
            )
        except ChangeStreamHistoryLost as exc:
            return request_id, {
                "ok": 0,
                "errmsg": str(exc),
                "code": HISTORY_LOST,
                "codeName": "ChangeStreamHistoryLost",
            }
    request_id, reply = _plain_handle_change_stream(
        self, request_id, coll_name, pipeline, db, db_name, owner
    )
    stream = self._change_stream_manager.get_stream(reply.get("cursor", {}).get("id"))
    if stream is not None:
        # The first batch's postBatchResumeToken: the resume point, or the clock now.
        stream.lab_token = resume_at if resume_at is not None else _token_now(db)
        reply["cursor"]["postBatchResumeToken"] = stream.lab_token
    return request_id, reply


def _token_now(db: Any) -> dict[str, str]:
    return token(clock(db.db))


def _body(msg: dict[str, Any]) -> dict[str, Any]:
    for kind, doc in msg.get("sections") or []:
        if kind == "body" and isinstance(doc, dict):
            return doc
    return {}


def _with_lab_rules(plain: Any) -> Any:
    """A command as MongoDB answers it where nx-27017 does not: ``operationTime`` on the
    reply (a replica set's replies carry it; for a read it is the newest oplog entry's
    timestamp), read under the database's lock after the command, so no write falls
    between; the collection option changeStreamPreAndPostImages (``create``,
    ``collMod``, dropped with its collection); a missing post-image as error 47."""

    def handle(self: Any, msg: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        db_name = handler._msg_db_name(msg)
        command = _body(msg)
        with self._lock_for(db_name):
            if "collMod" in command:
                request_id, reply = _coll_mod(self, msg["request_id"], db_name, command)
            else:
                try:
                    request_id, reply = plain(self, msg)
                except PostImageMissing as exc:
                    request_id, reply = msg["request_id"], _post_image_missing(exc)
                if reply.get("ok") == 1:
                    _options_after(self, db_name, command)
            with self._dict_lock:
                conn = self._conns.get(db_name)  # never reopen a database just dropped
            if isinstance(reply, dict) and reply.get("ok") == 1 and conn is not None:
                reply.setdefault("operationTime", clock(conn.db))
        return request_id, reply

    return handle


def _post_image_missing(exc: PostImageMissing) -> dict[str, Any]:
    return {
        "ok": 0,
        "errmsg": f"Executor error during getMore :: caused by :: {exc}",
        "code": NO_MATCHING_DOCUMENT,
        "codeName": "NoMatchingDocument",
    }


def _options_after(self: Any, db_name: str, command: dict[str, Any]) -> None:
    if "create" in command and requested(command) is not None:
        set_option(self.get_database(db_name).db, str(command["create"]), bool(requested(command)))
    elif "drop" in command and isinstance(command["drop"], str):
        with self._dict_lock:
            conn = self._conns.get(db_name)
        if conn is not None:
            set_option(conn.db, command["drop"], False)


def _coll_mod(
    self: Any, request_id: int, db_name: str, command: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """collMod, for the one option the lab models (nx-27017 has no collMod)."""
    conn = self.get_database(db_name)
    name = str(command["collMod"])
    if name not in conn.list_collection_names():
        return request_id, {
            "ok": 0,
            "errmsg": f"ns does not exist: {db_name}.{name}",
            "code": 26,
            "codeName": "NamespaceNotFound",
        }
    value = requested(command)
    if value is not None:
        set_option(conn.db, name, value)
    return request_id, {"ok": 1}


_plain_list_collections = handler.NeoSQLiteHandler._handle_list_collections


def _list_collections(self: Any, request_id: int, db: Any, db_name: str = "test") -> Any:
    """listCollections with each collection's changeStreamPreAndPostImages option."""
    request_id, reply = _plain_list_collections(self, request_id, db, db_name)
    for info in reply.get("cursor", {}).get("firstBatch", []):
        if enabled_after(db.db, info["name"]) is not None:
            info["options"] = {**info.get("options", {}), OPTION: {"enabled": True}}
    return request_id, reply


def install() -> None:
    handler.ChangeStreamManager = LabChangeStreamManager
    handler.NeoSQLiteHandler._handle_change_stream = _handle_change_stream
    handler.NeoSQLiteHandler.handle_command = _with_lab_rules(
        handler.NeoSQLiteHandler.handle_command
    )
    handler.NeoSQLiteHandler.handle_insert = _with_lab_rules(handler.NeoSQLiteHandler.handle_insert)
    handler.NeoSQLiteHandler._handle_list_collections = _list_collections
    changestream._wire_rowid = _wire_rowid
    changestream.ChangeStreamCursor.get_resume_token = _resume_token


if __name__ == "__main__":
    install()
    sys.argv[0] = "nx-27017"
    sys.exit(main())
