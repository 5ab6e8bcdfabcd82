"""Cloud Storage state: buckets and live object generations, metadata in memory, data on disk.

Every write lands in a staging file first and becomes live in ``commit_object``: under
the lock the preconditions are checked, a generation allocated and the file renamed into
place. A failed precondition therefore changes nothing, and of two racing
``ifGenerationMatch=0`` writers exactly one wins.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from lab.storage.conditions import UNCONDITIONAL, Preconditions
from lab.storage.exceptions import (
    BucketAlreadyExists,
    BucketNotEmpty,
    BucketNotFound,
    InvalidArgument,
    ObjectNotFound,
)
from lab.storage.listing import ListQuery, paginate
from lab.storage.resources import (
    DEFAULT_CONTENT_TYPE,
    Bucket,
    StoredObject,
    check_object_name,
    labels_from,
    now,
    patched_fields,
    writable_fields,
)
from lab.storage.rewrites import RewriteSessions
from lab.storage.uploads import HashingWriter, ResumableSession, UploadSessions

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


class StorageBackend:
    """The emulated buckets and objects. Methods are named after storage/v1 operations;
    the dict-returning ones are the interface other lab code uses."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")
        self._lock = threading.RLock()
        self._buckets: dict[str, Bucket] = {}
        self.uploads = UploadSessions()
        self.rewrites = RewriteSessions()
        self._last_generation = 0
        self.reset()

    def reset(self) -> None:
        """Forget every bucket and upload; data left by an earlier lab run is garbage too,
        since its metadata lived only in memory."""
        with self._lock:
            self._buckets.clear()
            self.uploads.clear()
            self.rewrites.clear()
            shutil.rmtree(self.root, ignore_errors=True)
            (self.root / "data").mkdir(parents=True)
            (self.root / "staging").mkdir(parents=True)

    # -- buckets ---------------------------------------------------------------------

    def insert_bucket(
        self,
        project: str,
        name: str,
        location: str = "US",
        labels: Mapping[str, str] | None = None,
        storage_class: str = "STANDARD",
    ) -> Bucket:
        if not _BUCKET_NAME.match(name) or ".." in name:
            raise InvalidArgument(f"Invalid bucket name: {name!r}")
        with self._lock:
            if name in self._buckets:
                raise BucketAlreadyExists(name)
            moment = now()
            bucket = Bucket(
                name, project, location.upper(), storage_class, labels_from(labels), moment, moment
            )
            self._buckets[name] = bucket
            return bucket

    def create_bucket(
        self,
        project: str,
        name: str,
        location: str = "US",
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a bucket (seeding, tools); its storage/v1 JSON."""
        return self.insert_bucket(project, name, location, labels).to_json(self.base_url)

    def get_bucket(self, name: str) -> Bucket:
        with self._lock:
            return self._bucket(name)

    def list_buckets(self, project: str | None, prefix: str = "") -> list[Bucket]:
        with self._lock:
            return [
                b
                for _, b in sorted(self._buckets.items())
                if (project is None or b.project == project) and b.name.startswith(prefix)
            ]

    def patch_bucket(
        self,
        name: str,
        changes: Mapping[str, Any],
        conditions: Preconditions = UNCONDITIONAL,
        *,
        replace_all: bool = False,
    ) -> Bucket:
        """buckets.patch (or, with ``replace_all``, buckets.update). Labels are the only
        setting the lab models; on patch a null label value deletes that label."""
        with self._lock:
            bucket = self._bucket(name)
            conditions.check_write(1, bucket.metageneration)
            if "labels" in changes or replace_all:
                labels = {} if replace_all else dict(bucket.labels)
                for key, value in (changes["labels"] or {}).items():
                    if value is None:
                        labels.pop(key, None)
                    else:
                        labels[key] = str(value)
                bucket.labels = labels
            bucket.metageneration += 1
            bucket.updated = now()
            return bucket

    def delete_bucket(self, name: str, conditions: Preconditions = UNCONDITIONAL) -> None:
        with self._lock:
            bucket = self._bucket(name)
            conditions.check_write(1, bucket.metageneration)
            if bucket.objects:
                raise BucketNotEmpty(name)
            del self._buckets[name]

    # -- object metadata ---------------------------------------------------------------

    def get_object(
        self,
        bucket: str,
        name: str,
        conditions: Preconditions = UNCONDITIONAL,
        generation: int | None = None,
    ) -> StoredObject:
        with self._lock:
            obj = self._live(bucket, name, generation)
            conditions.check_read(obj.generation, obj.metageneration)
            return obj

    def list_objects_page(
        self, bucket: str, query: ListQuery
    ) -> tuple[list[StoredObject], list[str], str | None]:
        """One objects.list page: (items, prefixes, nextPageToken)."""
        with self._lock:
            objects = dict(self._bucket(bucket).objects)
        page = paginate(sorted(objects), query)
        return [objects[n] for n in page.names], page.prefixes, page.next_page_token

    def list_objects(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        """Every live object under ``prefix``, as storage/v1 JSON, sorted by name."""
        with self._lock:
            objects = self._bucket(bucket).objects
            chosen = [objects[n] for n in sorted(objects) if n.startswith(prefix)]
        return [obj.to_json(self.base_url) for obj in chosen]

    def patch_object(
        self,
        bucket: str,
        name: str,
        changes: Mapping[str, Any],
        conditions: Preconditions = UNCONDITIONAL,
        *,
        replace_all: bool = False,
        generation: int | None = None,
    ) -> StoredObject:
        """objects.patch (or, with ``replace_all``, objects.update): bumps metageneration."""
        with self._lock:
            current = self._live(bucket, name, generation)
            conditions.check_write(current.generation, current.metageneration)
            fields = (
                writable_fields(changes) if replace_all else patched_fields(current.fields, changes)
            )
            fields.setdefault("contentType", current.content_type)
            updated = replace(
                current, metageneration=current.metageneration + 1, updated=now(), fields=fields
            )
            self._buckets[bucket].objects[name] = updated
            return updated

    def delete_object(
        self,
        bucket: str,
        name: str,
        conditions: Preconditions = UNCONDITIONAL,
        generation: int | None = None,
    ) -> None:
        with self._lock:
            current = self._live(bucket, name, generation)
            conditions.check_write(current.generation, current.metageneration)
            del self._buckets[bucket].objects[name]
        current.path.unlink(missing_ok=True)

    # -- object data -------------------------------------------------------------------

    def new_writer(self) -> HashingWriter:
        """A fresh staging file; hand it to ``commit_object`` or ``discard`` it."""
        return HashingWriter(self.root / "staging" / uuid.uuid4().hex)

    def commit_object(
        self,
        bucket: str,
        name: str,
        writer: HashingWriter,
        fields: Mapping[str, Any],
        conditions: Preconditions = UNCONDITIONAL,
        declared: Mapping[str, Any] | None = None,
    ) -> StoredObject:
        """Make a staged file the object's new live generation, atomically.

        ``declared`` may carry the client's md5Hash/crc32c; a mismatch is a 400.
        """
        try:
            check_object_name(name)
            writer.verify(declared or {})
            with self._lock:
                target = self._bucket(bucket)
                previous = self._check_replace(target, name, conditions)
                generation = self._next_generation()
                path = self.root / "data" / str(generation)
                os.replace(writer.path, path)
                moment = now()
                fields = {"contentType": DEFAULT_CONTENT_TYPE, **fields}
                obj = StoredObject(
                    bucket, name, generation, 1, writer.size, writer.md5_hash,
                    writer.crc32c, path, moment, moment, target.storage_class, fields,
                )  # fmt: skip
                target.objects[name] = obj
        except BaseException:
            writer.discard()
            raise
        if previous is not None:
            # Readers that already opened the old generation keep their file handle.
            previous.path.unlink(missing_ok=True)
        return obj

    def insert_object(
        self,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Write a whole object from memory (e.g. a Cloud SQL export); its JSON."""
        writer = self.new_writer()
        with writer:
            writer.write(data)
        fields: dict[str, Any] = {"contentType": content_type}
        if metadata:
            fields["metadata"] = dict(metadata)
        return self.commit_object(bucket, name, writer, fields).to_json(self.base_url)

    def open_object(
        self,
        bucket: str,
        name: str,
        conditions: Preconditions = UNCONDITIONAL,
        generation: int | None = None,
    ) -> tuple[StoredObject, BinaryIO]:
        """The live generation and an open handle on its data. Opening under the lock
        means a concurrent overwrite cannot delete the file between lookup and read."""
        with self._lock:
            obj = self.get_object(bucket, name, conditions, generation)
            return obj, obj.path.open("rb")

    def read_object(self, bucket: str, name: str) -> bytes:
        """A whole object's bytes (small objects: tests and tools)."""
        _, handle = self.open_object(bucket, name)
        with handle:
            return handle.read()

    def object_path(self, bucket: str, name: str) -> Path:
        """The data file of the live generation. It is removed once a newer generation or
        a delete replaces it, so open it promptly."""
        return self.get_object(bucket, name).path

    # -- resumable uploads -------------------------------------------------------------

    def start_resumable_upload(
        self,
        bucket: str,
        name: str,
        fields: Mapping[str, Any],
        conditions: Preconditions,
        total: int | None,
    ) -> ResumableSession:
        """Open a session. Preconditions are checked now, to fail before a long upload,
        and again when the last chunk commits."""
        check_object_name(name)
        with self._lock:
            self._check_replace(self._bucket(bucket), name, conditions)
            session = ResumableSession(
                uuid.uuid4().hex, bucket, name, dict(fields), conditions, self.new_writer(), total
            )
            self.uploads.add(session)
            return session

    # -- helpers -----------------------------------------------------------------------

    def _bucket(self, name: str) -> Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            raise BucketNotFound(name)
        return bucket

    def _live(self, bucket: str, name: str, generation: int | None = None) -> StoredObject:
        obj = self._bucket(bucket).objects.get(name)
        # Versioning is not modelled: only the live generation can be named.
        if obj is None or (generation is not None and generation != obj.generation):
            raise ObjectNotFound(bucket, name)
        return obj

    @staticmethod
    def _check_replace(bucket: Bucket, name: str, conditions: Preconditions) -> StoredObject | None:
        """The object a write would replace, after checking it may (412 otherwise)."""
        previous = bucket.objects.get(name)
        conditions.check_write(
            previous.generation if previous else None,
            previous.metageneration if previous else None,
        )
        return previous

    def _next_generation(self) -> int:
        """Microseconds since the epoch like Google's, but strictly increasing."""
        self._last_generation = max(time.time_ns() // 1000, self._last_generation + 1)
        return self._last_generation
