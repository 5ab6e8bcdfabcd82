"""The collection option `changeStreamPreAndPostImages`, as the lab MongoDB keeps it.

MongoDB stores a post-image only for a change made while the option is on, and a stream
opened with ``fullDocument: "required"`` fails at the first update or replace event
without one (error 47 NoMatchingDocument). The option is set by ``create`` or ``collMod``
(``{changeStreamPreAndPostImages: {enabled: <bool>}}``) and listed by
``listCollections`` among the collection's options. Here a table per database file holds,
per collection, the newest change-log id logged before the option was turned on: the
changes after it have their post-image.
"""

from __future__ import annotations

from typing import Any

from lab.mongo.cluster_time import newest_id

OPTION = "changeStreamPreAndPostImages"
NO_MATCHING_DOCUMENT = 47
# The _neosqlite_ prefix keeps it out of listCollections, as nx-27017 keeps its own tables.
TABLE = """
CREATE TABLE IF NOT EXISTS _neosqlite_lab_post_images (
    collection_name TEXT PRIMARY KEY,
    enabled_after INTEGER NOT NULL
)
"""


class PostImageMissing(Exception):
    """An update event of a ``fullDocument: "required"`` stream has no post-image."""


def requested(command: dict[str, Any]) -> bool | None:
    """The option's value a create or collMod command sets, or None when it sets none."""
    value = command.get(OPTION)
    if not isinstance(value, dict) or "enabled" not in value:
        return None
    return bool(value["enabled"])


def set_option(db: Any, collection: str, enabled: bool) -> None:
    db.execute(TABLE)
    if enabled:
        db.execute(
            "INSERT INTO _neosqlite_lab_post_images (collection_name, enabled_after) "
            "VALUES (?, ?) ON CONFLICT(collection_name) DO NOTHING",
            (collection, newest_id(db)),
        )
    else:
        db.execute(
            "DELETE FROM _neosqlite_lab_post_images WHERE collection_name = ?", (collection,)
        )
    if db.in_transaction:
        db.commit()


def enabled_after(db: Any, collection: str) -> int | None:
    """The change-log id after which the collection's changes have post-images, or None."""
    db.execute(TABLE)
    row = db.execute(
        "SELECT enabled_after FROM _neosqlite_lab_post_images WHERE collection_name = ?",
        (collection,),
    ).fetchone()
    return int(row[0]) if row else None


def check_post_image(db: Any, collection: str, rowid: int, event: dict[str, Any]) -> None:
    """Raise `PostImageMissing` for an update logged while the option was off."""
    after = enabled_after(db, collection)
    if after is None or rowid <= after:
        raise PostImageMissing(
            "Change stream was configured to require a post-image for all update, delete "
            "and replace events, but the post-image was not found for event: "
            f"{{operationType: {event.get('operationType')!r}, ns: {event.get('ns')}, "
            f"documentKey: {event.get('documentKey')}}}"
        )
