"""The lab MongoDB's change log as an oplog with a window: the SQL both processes share.

The nx-27017 process (``lab.mongo.nx_lab``) stamps each change with its wall time and
refuses a resume point older than the horizon; the lab daemon's control API rolls the
window forward (``roll_history``), as a capped oplog drops its oldest entries.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

# Millisecond wall time of each change, set when the change is logged.
WALL_TIME_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS _lab_changestream_wall_time
AFTER INSERT ON _neosqlite_changestream
BEGIN
    UPDATE _neosqlite_changestream
    SET timestamp = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END
"""
# Per collection: the newest change id that is gone from the log. The _neosqlite_ prefix
# keeps it out of listCollections, as nx-27017 keeps its own tables.
HORIZON_TABLE = """
CREATE TABLE IF NOT EXISTS _neosqlite_lab_oplog_horizon (
    collection_name TEXT PRIMARY KEY,
    lost_through INTEGER NOT NULL
)
"""


def lost_through(db: Any, collection: str) -> int | None:
    row = db.execute(
        "SELECT lost_through FROM _neosqlite_lab_oplog_horizon WHERE collection_name = ?",
        (collection,),
    ).fetchone()
    return int(row[0]) if row else None


def roll_history(data_dir: Path, database: str) -> dict[str, int]:
    """Drop every logged change of ``database``; returns collection → newest id dropped.

    A stream resumed from a token older than that fails with ChangeStreamHistoryLost.
    """
    path = data_dir / f"{database}.db"
    if not path.exists():
        return {}
    with sqlite3.connect(path, timeout=30) as db:
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = '_neosqlite_changestream'"
        ).fetchone()
        if not exists:
            return {}
        db.execute(HORIZON_TABLE)
        newest = dict(
            db.execute(
                "SELECT collection_name, MAX(id) FROM _neosqlite_changestream "
                "GROUP BY collection_name"
            ).fetchall()
        )
        for collection, rowid in newest.items():
            db.execute(
                "INSERT INTO _neosqlite_lab_oplog_horizon (collection_name, lost_through) "
                "VALUES (?, ?) "
                "ON CONFLICT(collection_name) DO UPDATE SET lost_through = "
                "MAX(lost_through, excluded.lost_through)",
                (collection, rowid),
            )
        db.execute("DELETE FROM _neosqlite_changestream")
    return {str(k): int(v) for k, v in newest.items()}
