"""The lab MongoDB's logical clock: `operationTime` on replies, resume tokens that carry it.

A database's change log (one SQLite table per database file, ``id`` increasing with every
logged change) plays the oplog. A change's cluster time is ``Timestamp(<second of its
wall time>, <its id>)``; the clock of a database, what a reply's ``operationTime``
says, is ``Timestamp(<now>, <newest id logged or lost>)``: at or after every change
already logged, before every change logged later (a later one has a larger id, in the
same second or a later one).

Resume tokens are MongoDB's: ``{"_data": <hex>}`` whose first byte is 0x82 (a Timestamp
in MongoDB's KeyString encoding) followed by the 8 bytes of the cluster time, big-endian,
seconds then increment: the first 18 hex characters hold the token's cluster time
(jira.mongodb.org/browse/SERVER-133517). Here the increment is the change-log id, so a
token says where a stream resumes.
"""

from __future__ import annotations

import time
from typing import Any

from bson.timestamp import Timestamp

TIMESTAMP_TYPE = "82"
CHANGE_LOG = "_neosqlite_changestream"


def token(at: Timestamp) -> dict[str, str]:
    return {"_data": f"{TIMESTAMP_TYPE}{at.time:08X}{at.inc:08X}"}


def token_rowid(value: Any) -> int | None:
    """The change-log id a token resumes after, or None for a token that is not the lab's."""
    data = value.get("_data") if isinstance(value, dict) else None
    if not isinstance(data, str) or not data.upper().startswith(TIMESTAMP_TYPE) or len(data) < 18:
        return None
    try:
        return int(data[10:18], 16)
    except ValueError:
        return None


def newest_id(db: Any) -> int:
    """The newest change-log id of a database's file, logged or already rolled off."""
    found = db.execute(
        "SELECT name FROM sqlite_master WHERE name IN (?, '_neosqlite_lab_oplog_horizon')",
        (CHANGE_LOG,),
    ).fetchall()
    tables = {row[0] for row in found}
    newest = 0
    if CHANGE_LOG in tables:
        newest = int(db.execute(f"SELECT COALESCE(MAX(id), 0) FROM {CHANGE_LOG}").fetchone()[0])
    if "_neosqlite_lab_oplog_horizon" in tables:
        lost = db.execute(
            "SELECT COALESCE(MAX(lost_through), 0) FROM _neosqlite_lab_oplog_horizon"
        ).fetchone()[0]
        newest = max(newest, int(lost))
    return newest


def clock(db: Any) -> Timestamp:
    """The database's cluster time now (the caller holds the database's lock)."""
    return Timestamp(int(time.time()), newest_id(db))
