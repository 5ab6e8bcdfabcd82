"""Reading change slices back from Cloud Storage: their bytes and the entries inside."""

from __future__ import annotations

import io
from collections.abc import Iterator

from lifeboat import runtime
from lifeboat.archive import iter_bson, read_archive
from lifeboat.oplog import OPLOG_FILE
from lifeboat.slices import SliceManifest
from tasks.catalog import backups_bucket
from tasks.retrying import calling


def slice_bytes(environment: str, manifest: SliceManifest) -> bytes:
    """The slice's encrypted object, as its manifest pinned it (generation)."""
    bucket = backups_bucket(environment)
    name = manifest.object.uri.removeprefix(f"gs://{bucket.name}/")
    blob = bucket.blob(name, generation=manifest.object.generation)
    with calling("mongo-slice-read", manifest.object.uri):
        data: bytes = blob.download_as_bytes(timeout=runtime.call_timeout(environment))
    return data


def slice_entries(environment: str, manifest: SliceManifest, key: bytes) -> Iterator[bytes]:
    """The oplog entries of one slice, in order (the caller verified the slice first)."""
    for member in read_archive(io.BytesIO(slice_bytes(environment, manifest)), key):
        if member.path == OPLOG_FILE:
            yield from iter_bson(member.stream)
