"""MongoDB: stream databases out as raw BSON, and back in, in constant memory."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from prefect import get_run_logger
from pydantic import BaseModel
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from lifeboat import runtime
from lifeboat.insertion import BatchResult, WriteErrors, insert_in_parallel
from lifeboat.secrets import read_secret
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task

RAW = CodecOptions(document_class=RawBSONDocument)
SAMPLE_SIZE = 20
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


def scan_raw_batches(db: Database[RawBSONDocument], name: str) -> Iterator[bytes]:
    """Every document of a collection in natural order, as the server's batches of
    concatenated BSON (what a `.bson` file holds): no object per document."""
    yield from db.get_collection(name).find_raw_batches(batch_size=SCAN_BATCH)


class Sampler:
    """The documents with the smallest hashes: a deterministic sample in constant memory.

    A restore that holds the same documents yields the same sample, so the drill can
    compare documents, not only counts.
    """

    def __init__(self, size: int = SAMPLE_SIZE) -> None:
        self.size = size
        # A max-heap by hash (negated), so the top is the first to evict.
        self._heap: list[tuple[int, str, str]] = []
        self._worst = b""  # digest of the heap's top, once the heap is full

    def add(self, doc: RawBSONDocument) -> None:
        self.add_raw(doc.raw)

    def add_raw(self, raw: bytes | memoryview) -> None:
        """One document's BSON; its _id is decoded only when it joins the sample."""
        digest = hashlib.sha256(raw).digest()
        # Smaller hashes win; equal bytes order as the integers they spell.
        if len(self._heap) >= self.size and digest >= self._worst:
            return  # the common case: no _id decoding, no JSON
        entry = (
            -int.from_bytes(digest, "big"),
            digest.hex(),
            id_key(RawBSONDocument(bytes(raw))["_id"]),
        )
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heapreplace(self._heap, entry)
        self._worst = bytes.fromhex(self._heap[0][1])

    def sample(self) -> dict[str, str]:
        return {key: digest for _, digest, key in sorted(self._heap, reverse=True)}


def id_key(doc_id: Any) -> str:
    return json_util.dumps(doc_id, json_options=json_util.CANONICAL_JSON_OPTIONS)


def insert_raw(
    db: Database[RawBSONDocument],
    name: str,
    docs: Iterable[bytes],
    workers: int,
    source: str | None = None,
) -> int:
    """Insert raw BSON documents with ``workers`` unordered batches in flight.

    Returns how many went in. Raises `PermanentError` naming each refused document (a
    duplicate key, say) once the collection is done: none is skipped in silence. The
    message names ``source`` (where the documents came from) when given.
    """
    coll = db.get_collection(name, codec_options=RAW)
    what = f"{db.name}.{name}" if source is None else f"{source} → {db.name}.{name}"
    try:
        return insert_in_parallel(what, docs, _unordered(coll), workers)
    except WriteErrors as exc:
        raise PermanentError(f"mongo-restore: {exc}") from exc


def _unordered(coll: Collection[RawBSONDocument]) -> Callable[[list[bytes]], BatchResult]:
    def send(batch: list[bytes]) -> BatchResult:
        try:
            coll.insert_many([RawBSONDocument(raw) for raw in batch], ordered=False)
        except BulkWriteError as exc:
            details = exc.details
            if details.get("writeConcernErrors"):
                raise  # the batch may or may not have gone in: not a per-document answer
            refused = [
                (int(e["index"]), e.get("code"), _refusal(e)) for e in details["writeErrors"]
            ]
            return BatchResult(inserted=int(details.get("nInserted", 0)), failures=refused)
        # An acknowledged insert_many raises unless every document went in; its
        # inserted_ids stays empty for raw documents, so count the batch.
        return BatchResult(inserted=len(batch))

    return send


def _refusal(error: dict[str, Any]) -> str:
    """The server's message, with the document's _id when the message does not give it."""
    message = str(error.get("errmsg", "refused"))
    op = error.get("op")
    try:
        doc_id = json_util.dumps(op["_id"]) if op is not None else None
    except (KeyError, TypeError):
        doc_id = None
    return message if doc_id is None or doc_id in message else f"{message} (_id {doc_id})"


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
