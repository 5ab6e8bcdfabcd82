"""Contract tests: objects.rewrite across locations, with rewriteToken continuation.

Google: "For large objects, this method requires the use of multiple requests ... the
method responds with the done flag set to false and also returns a rewriteToken ... keep
calling the endpoint using the rewriteToken returned in the prior response until the done
flag is true"; maxBytesRewrittenPerCall must be "an integral multiple of 1 MiB" and
"must not change across rewrite calls"
(https://cloud.google.com/storage/docs/json_api/v1/objects/rewrite).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from lab.core.context import LabContext
from lab.storage import StorageBackend, create

PROJECT = "lifeboat-lab"
SOURCE = "lifeboat-backups"
MiB = 1024 * 1024


@dataclass
class RewriteLab:
    backend: StorageBackend
    url: str
    client: storage.Client

    def rewrite_raw(self, dest_bucket: str, name: str, **query: Any) -> httpx.Response:
        path = (
            f"/storage/v1/b/{SOURCE}/o/{quote(name, safe='')}"
            f"/rewriteTo/b/{dest_bucket}/o/{quote(name, safe='')}"
        )
        return httpx.post(self.url + path, params=query, json={}, timeout=30)


@pytest.fixture
def lab(lab_ctx: LabContext, serve: Callable[..., str]) -> Iterator[RewriteLab]:
    backend, app = create(lab_ctx)
    url = serve(app, "storage")
    backend.create_bucket(PROJECT, SOURCE, location="US")
    backend.create_bucket(PROJECT, "copies-europe-west1", location="europe-west1")
    backend.create_bucket(PROJECT, "copies-us", location="US")
    client = storage.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
    )
    yield RewriteLab(backend, url, client)
    client.close()


def _upload(lab: RewriteLab, name: str, size: int) -> storage.Blob:
    blob = lab.client.bucket(SOURCE).blob(name)
    blob.upload_from_string(os.urandom(size))
    blob.reload()
    return blob


def test_a_rewrite_across_locations_takes_a_call_per_step_each_with_a_token(
    lab: RewriteLab,
) -> None:
    source = _upload(lab, "big.bin", 2 * MiB + MiB // 2)
    dest = lab.client.bucket("copies-europe-west1").blob("big.bin")
    progress, token = [], None
    while True:
        token, written, total = dest.rewrite(source, token=token)
        progress.append((token is not None, written, total))
        if token is None:
            break
    size = source.size
    assert progress == [(True, MiB, size), (True, 2 * MiB, size), (False, size, size)]
    # The copy is the source's bytes: Cloud Storage's own checksums say so.
    assert (dest.size, dest.crc32c, dest.md5_hash) == (source.size, source.crc32c, source.md5_hash)
    assert dest.download_as_bytes() == source.download_as_bytes()


def test_a_rewrite_within_one_location_and_class_is_done_in_one_call(lab: RewriteLab) -> None:
    source = _upload(lab, "big.bin", 3 * MiB)
    token, written, total = lab.client.bucket("copies-us").blob("big.bin").rewrite(source)
    assert token is None and written == total == 3 * MiB


def test_max_bytes_rewritten_per_call_is_honoured_and_must_stay_the_same(lab: RewriteLab) -> None:
    _upload(lab, "big.bin", 3 * MiB)
    bad = lab.rewrite_raw("copies-europe-west1", "big.bin", maxBytesRewrittenPerCall=1000)
    assert bad.status_code == 400 and "1 MiB" in bad.json()["error"]["message"]

    first = lab.rewrite_raw("copies-europe-west1", "big.bin", maxBytesRewrittenPerCall=2 * MiB)
    body = first.json()
    assert first.status_code == 200, body
    assert body["done"] is False and body["totalBytesRewritten"] == str(2 * MiB)
    changed = lab.rewrite_raw(
        "copies-europe-west1",
        "big.bin",
        maxBytesRewrittenPerCall=MiB,
        rewriteToken=body["rewriteToken"],
    )
    assert changed.status_code == 400 and "rewriteToken" in changed.json()["error"]["message"]
    unknown = lab.rewrite_raw(
        "copies-europe-west1", "big.bin", maxBytesRewrittenPerCall=2 * MiB, rewriteToken="nope"
    )
    assert unknown.status_code == 400
    last = lab.rewrite_raw(
        "copies-europe-west1",
        "big.bin",
        maxBytesRewrittenPerCall=2 * MiB,
        rewriteToken=body["rewriteToken"],
    ).json()
    assert last["done"] is True and last["resource"]["size"] == str(3 * MiB)


def test_a_rewrite_the_lab_is_told_to_corrupt_lands_with_other_checksums(lab: RewriteLab) -> None:
    source = _upload(lab, "small.bin", 1000)
    lab.backend.rewrites.configure(corrupt={"copies-europe-west1": 1})
    damaged = lab.client.bucket("copies-europe-west1").blob("small.bin")
    damaged.rewrite(source)
    assert damaged.size == source.size and damaged.crc32c != source.crc32c
    again = lab.client.bucket("copies-europe-west1").blob("again.bin")
    again.rewrite(source)  # only the one copy it was told of
    assert again.crc32c == source.crc32c
