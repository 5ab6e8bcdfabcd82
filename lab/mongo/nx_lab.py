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
  silence. The lab's control API rolls the window forward (``lab.mongo.history``).

Sources (lab/FIDELITY.md, "MongoDB change streams"):
https://www.mongodb.com/docs/manual/reference/change-events/ (clusterTime, wallTime,
documentKey, fullDocument), https://www.mongodb.com/docs/manual/changeStreams/
(resumeAfter: "If the oplog entry for the resume token is no longer available … the
change stream cannot be resumed"), https://www.mongodb.com/docs/manual/reference/error-codes/
(286 ChangeStreamHistoryLost).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from bson.timestamp import Timestamp
from neosqlite.collection.json_helpers import neosqlite_json_loads
from nx_27017 import changestream, handler
from nx_27017.nx_27017 import main

from lab.mongo.history import HORIZON_TABLE, WALL_TIME_TRIGGER, lost_through

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
        return event

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
    token = options.get("resume_after") or options.get("start_after")
    if token is not None:
        try:
            self._change_stream_manager.check_resumable(
                db_name, coll_name, token, lambda: db[coll_name]
            )
        except ChangeStreamHistoryLost as exc:
            return request_id, {
                "ok": 0,
                "errmsg": str(exc),
                "code": HISTORY_LOST,
                "codeName": "ChangeStreamHistoryLost",
            }
    return _plain_handle_change_stream(self, request_id, coll_name, pipeline, db, db_name, owner)


def install() -> None:
    handler.ChangeStreamManager = LabChangeStreamManager
    handler.NeoSQLiteHandler._handle_change_stream = _handle_change_stream


if __name__ == "__main__":
    install()
    sys.argv[0] = "nx-27017"
    sys.exit(main())
