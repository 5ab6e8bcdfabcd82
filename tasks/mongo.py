"""MongoDB: stream databases out as raw BSON, and back in, in constant memory."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator
from typing import Any

from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from prefect import get_run_logger
from pydantic import BaseModel
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database

from lifeboat import runtime
from lifeboat.secrets import read_secret
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task

RAW = CodecOptions(document_class=RawBSONDocument)
SAMPLE_SIZE = 20
INSERT_BATCH_DOCS = 1000
INSERT_BATCH_BYTES = 8 << 20
SCAN_BATCH = 1000


class CollectionSpec(BaseModel):
    database: str
    name: str
    options: dict[str, Any]
    indexes: list[dict[str, Any]]
    uuid: str | None = None


def client(environment: str) -> MongoClient[RawBSONDocument]:
    """A client from the secret URI; the URI itself never reaches a log or an error."""
    mongo = runtime.topology(environment).mongodb
    uri = read_secret(mongo.uri_secret, mongo.uri_env)
    # The URI's own serverSelectionTimeoutMS wins; a keyword option would override it.
    timeout_ms = None if "serverselectiontimeoutms" in uri.lower() else 10_000
    try:
        if timeout_ms is None:
            return MongoClient(uri, document_class=RawBSONDocument)
        return MongoClient(uri, document_class=RawBSONDocument, serverSelectionTimeoutMS=timeout_ms)
    except Exception as exc:
        # pymongo's parse errors quote the URI, password included.
        raise PermanentError(
            f"mongodb: the URI in secret {mongo.uri_secret!r} is invalid ({type(exc).__name__})"
        ) from None


def list_collections(db: Database[RawBSONDocument]) -> list[CollectionSpec]:
    """Collections to dump, with their options and indexes; views and system ones skipped."""
    specs = []
    for info in db.list_collections(filter={"type": "collection"}):
        plain = json_util.loads(json_util.dumps(info))
        name = str(plain["name"])
        if name.startswith("system."):
            continue
        indexes = [json_util.loads(json_util.dumps(ix)) for ix in db[name].list_indexes()]
        uuid = plain.get("info", {}).get("uuid")
        specs.append(
            CollectionSpec(
                database=db.name,
                name=name,
                options=dict(plain.get("options", {})),
                indexes=indexes,
                uuid=str(uuid.hex if hasattr(uuid, "hex") else uuid).replace("-", "")
                if uuid
                else None,
            )
        )
    return specs


def scan(db: Database[RawBSONDocument], name: str) -> Iterator[RawBSONDocument]:
    """Every document of a collection in natural order, a batch at a time."""
    yield from db.get_collection(name, codec_options=RAW).find(batch_size=SCAN_BATCH)


class Sampler:
    """The documents with the smallest hashes: a deterministic sample in constant memory.

    A restore that holds the same documents yields the same sample, so the drill can
    compare documents, not only counts.
    """

    def __init__(self, size: int = SAMPLE_SIZE) -> None:
        self.size = size
        # A max-heap by hash (negated), so the top is the first to evict.
        self._heap: list[tuple[int, str, str]] = []

    def add(self, doc: RawBSONDocument) -> None:
        digest = hashlib.sha256(doc.raw).hexdigest()
        rank = -int(digest, 16)
        if len(self._heap) >= self.size and rank <= self._heap[0][0]:
            return  # the common case: no _id decoding, no JSON
        entry = (rank, digest, id_key(doc["_id"]))
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heapreplace(self._heap, entry)

    def sample(self) -> dict[str, str]:
        return {key: digest for _, digest, key in sorted(self._heap, reverse=True)}

    def watch(self, docs: Iterable[RawBSONDocument]) -> Iterator[RawBSONDocument]:
        for doc in docs:
            self.add(doc)
            yield doc


def id_key(doc_id: Any) -> str:
    return json_util.dumps(doc_id, json_options=json_util.CANONICAL_JSON_OPTIONS)


def insert_raw(db: Database[RawBSONDocument], name: str, docs: Iterable[bytes]) -> int:
    """Insert raw BSON documents in bounded batches; returns how many went in."""
    coll = db.get_collection(name, codec_options=RAW)
    batch: list[RawBSONDocument] = []
    size = inserted = 0
    for raw in docs:
        batch.append(RawBSONDocument(raw))
        size += len(raw)
        if len(batch) >= INSERT_BATCH_DOCS or size >= INSERT_BATCH_BYTES:
            inserted += _insert(coll, batch)
            batch, size = [], 0
    return inserted + (_insert(coll, batch) if batch else 0)


def _insert(coll: Collection[RawBSONDocument], batch: list[RawBSONDocument]) -> int:
    # An acknowledged insert_many raises unless every document went in; its inserted_ids
    # stays empty for raw documents, so count the batch.
    coll.insert_many(batch, ordered=True)
    return len(batch)


def create_indexes(db: Database[RawBSONDocument], name: str, indexes: list[dict[str, Any]]) -> int:
    """Re-create a collection's secondary indexes from its dump metadata."""
    made = 0
    for spec in indexes:
        if spec.get("name") == "_id_":
            continue
        options = {k: v for k, v in spec.items() if k not in ("key", "v", "ns")}
        db[name].create_index(list(dict(spec["key"]).items()), **options)
        made += 1
    return made


@cloud_task(timeout_seconds=600, task_run_name="mongo-drop-{database}")
def mongo_drop_database(environment: str, database: str) -> bool:
    """Drop a database; returns whether it existed.

    Idempotent: a database already gone is not an error.
    """
    with calling("mongo-drop", f"mongodb/{database}"), client(environment) as mongo:
        existed = database in mongo.list_database_names()
        if existed:
            mongo.drop_database(database)
    get_run_logger().info("dropped mongodb database %s: %s", database, existed)
    return existed


@cloud_task(timeout_seconds=600, task_run_name="mongo-sample-{database}.{collection}")
def mongo_sample_hashes(
    environment: str, database: str, collection: str, ids: list[str]
) -> dict[str, str]:
    """sha256 of each named document's BSON (ids as canonical Extended JSON).

    Idempotent: read-only. A missing document is absent from the answer.
    """
    found: dict[str, str] = {}
    with calling("mongo-sample", f"mongodb/{database}.{collection}"), client(environment) as mongo:
        coll = mongo[database].get_collection(collection, codec_options=RAW)
        for key in ids:
            doc = coll.find_one({"_id": json_util.loads(key)})
            if doc is not None:
                found[key] = hashlib.sha256(doc.raw).hexdigest()
    return found
