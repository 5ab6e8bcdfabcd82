"""mongodump's directory layout: member paths and `<collection>.metadata.json`.

mongodump (mongo-tools `mongodump/metadata_dump.go`) writes, per collection, canonical
Extended JSON of

    {"options": {...}, "indexes": [{"v": 2, "key": {...}, "name": "...", ...}, ...],
     "uuid": "<32 hex digits>", "collectionName": "<name>", "type": "collection"}

with "options", "uuid" and "type" left out when empty; "indexes" is always a list. File
names escape the collection name as Go's `url.PathEscape` does (mongorestore unescapes it),
and mongorestore reads the file with `bson.UnmarshalExtJSON(..., canonical=true)`.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

from bson import json_util
from bson.binary import Binary

BSON_SUFFIX = ".bson"
METADATA_SUFFIX = ".metadata.json"
# Go's url.PathEscape leaves these reserved characters alone (it escapes / ; , ?).
_PATH_SEGMENT_SAFE = "$&+:=@"


def escape_collection(name: str) -> str:
    return quote(name, safe=_PATH_SEGMENT_SAFE)


def bson_path(database: str, collection: str) -> str:
    return f"{database}/{escape_collection(collection)}{BSON_SUFFIX}"


def metadata_path(database: str, collection: str) -> str:
    return f"{database}/{escape_collection(collection)}{METADATA_SUFFIX}"


def split_path(path: str) -> tuple[str, str, str]:
    """`db/coll.metadata.json` → (database, collection, "metadata"); `.bson` → "bson"."""
    database, sep, name = path.partition("/")
    if not sep or not database or "/" in name:
        raise ValueError(f"{path!r} is not <database>/<collection> in mongodump's layout")
    for suffix, kind in ((METADATA_SUFFIX, "metadata"), (BSON_SUFFIX, "bson")):
        if name.endswith(suffix) and len(name) > len(suffix):
            return database, unquote(name[: -len(suffix)], errors="strict"), kind
    raise ValueError(f"{path!r} is neither a .bson nor a .metadata.json file")


def _uuid_hex(value: uuid_module.UUID | Binary | bytes | str) -> str:
    if isinstance(value, uuid_module.UUID):
        return value.hex
    if isinstance(value, bytes):  # Binary is a bytes subclass
        if len(value) != 16:
            raise ValueError(f"a collection UUID has 16 bytes, not {len(value)}")
        return bytes(value).hex()
    return uuid_module.UUID(value).hex


def collection_metadata(
    collection: str,
    indexes: Iterable[Mapping[str, Any]] = (),
    options: Mapping[str, Any] | None = None,
    uuid: uuid_module.UUID | Binary | bytes | str | None = None,
    collection_type: str = "collection",
) -> bytes:
    """The `<collection>.metadata.json` mongodump would write, as UTF-8 bytes.

    `indexes` are `list_indexes()` documents as the server returns them (v, key, name and
    any options); `options` is `list_collections()`'s "options"; `uuid` its "info.uuid".
    """
    specs = [dict(index) for index in indexes]
    for number, spec in enumerate(specs):
        if "key" not in spec or "name" not in spec:
            raise ValueError(f"index {number} of {collection!r} has no 'key' or no 'name'")
    document: dict[str, Any] = {}
    if options:
        document["options"] = dict(options)
    document["indexes"] = specs
    if uuid is not None:
        document["uuid"] = _uuid_hex(uuid)
    document["collectionName"] = collection
    if collection_type:
        document["type"] = collection_type
    text = json_util.dumps(
        document,
        json_options=json_util.CANONICAL_JSON_OPTIONS,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return text.encode("utf-8")


def parse_metadata(data: bytes) -> dict[str, Any]:
    """Read a `.metadata.json` back into BSON types (Int32 stays int, Int64 stays Int64)."""
    document = json_util.loads(data.decode("utf-8"), json_options=json_util.CANONICAL_JSON_OPTIONS)
    if not isinstance(document, dict) or not isinstance(document.get("indexes"), list):
        raise ValueError("not a mongodump metadata document: no 'indexes' list")
    return document
