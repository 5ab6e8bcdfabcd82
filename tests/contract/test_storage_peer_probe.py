"""Issue 14 §5: one behaviour per test, on the lab and on a peer emulator side by side.

Skipped unless ``LIFEBOAT_STORAGE_PEER_URL`` names a running peer (fake-gcs-server).
The contract tests stop at their first failed assertion; these probes split them into
single documented behaviours (each docstring cites Google), plus the three the issue
says the peer passes: gcloud cp of a small and a 20 MB file both ways, generation
preconditions, streaming resumable uploads through the Python client. Only public
API calls are used, so both targets are measured alike. Results: lab/STORAGE_PEER.md.
"""

from __future__ import annotations

import filecmp
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from lab.core.context import LabContext
from lab.storage import create
from tests.contract.gcloud_cli import GCLOUD, Gcloud, write_pattern
from tests.contract.storage_peer import PEER_URL, PeerBackend

pytestmark = pytest.mark.skipif(PEER_URL is None, reason="LIFEBOAT_STORAGE_PEER_URL is not set")

PROJECT = "lifeboat-lab"
BUCKET = "probe-bucket"
MiB = 1024 * 1024


@dataclass
class Target:
    url: str
    client: storage.Client
    backend: PeerBackend  # public-API seeding and reads, the same on both targets

    @property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(BUCKET)

    def http(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=60, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["lab", "peer"])
def target(
    request: pytest.FixtureRequest,
    lab_ctx: LabContext,
    serve: Callable[..., str],
    tmp_path: Path,
) -> Iterator[Target]:
    if request.param == "lab":
        _, app = create(lab_ctx)
        url = serve(app, "storage")
    else:
        assert PEER_URL is not None
        url = PEER_URL
    backend = PeerBackend(url, tmp_path)
    backend.reset()
    backend.create_bucket(PROJECT, BUCKET, location="us-central1")
    client = storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": url},
    )
    yield Target(url, client, backend)
    client.close()
    backend.close()


# Preconditions: cloud.google.com/storage/docs/request-preconditions


def test_multipart_if_generation_match_mismatch_is_412(target: Target) -> None:
    """ifGenerationMatch that does not match: 412, object unchanged."""
    blob = target.bucket.blob("lease")
    blob.upload_from_string(b"v1")
    with pytest.raises(exceptions.PreconditionFailed):
        target.bucket.blob("lease").upload_from_string(
            b"v2", if_generation_match=blob.generation + 1
        )  # type: ignore[operator]
    assert target.backend.read_object(BUCKET, "lease") == b"v1"


def test_resumable_if_generation_match_0_on_existing_is_412(target: Target) -> None:
    """A resumable upload (the Python client's, no size) with ifGenerationMatch=0 over an
    existing object: 412, the object keeps its bytes (create-only lease)."""
    target.bucket.blob("lease").upload_from_string(b"v1")
    with pytest.raises(exceptions.PreconditionFailed):
        target.bucket.blob("lease").upload_from_file(io.BytesIO(b"v3"), if_generation_match=0)
    assert target.backend.read_object(BUCKET, "lease") == b"v1"


def test_resumable_precondition_is_checked_at_commit(target: Target) -> None:
    """The precondition holds at the upload's end: another writer wins meanwhile, 412."""
    start = target.http(
        "POST",
        f"/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&ifGenerationMatch=0",
        json={"name": "lease"},
    )
    session = start.headers["location"]
    target.backend.insert_object(BUCKET, "lease", b"other writer")
    late = httpx.put(session, content=b"mine", headers={"Content-Range": "bytes 0-3/4"})
    assert late.status_code == 412
    assert target.backend.read_object(BUCKET, "lease") == b"other writer"


def test_patch_if_metageneration_match_mismatch_is_412(target: Target) -> None:
    blob = target.bucket.blob("state")
    blob.upload_from_string(b"{}")
    blob.metadata = {"owner": "east"}
    with pytest.raises(exceptions.PreconditionFailed):
        blob.patch(if_metageneration_match=7)


def test_patch_bumps_metageneration(target: Target) -> None:
    """objects.patch: metageneration 1 -> 2 (json_api/v1/objects)."""
    blob = target.bucket.blob("state")
    blob.upload_from_string(b"{}")
    blob.metadata = {"owner": "east"}
    blob.patch(if_metageneration_match=1)
    assert blob.metageneration == 2 and blob.metadata == {"owner": "east"}


def test_get_if_generation_not_match_failing_is_304(target: Target) -> None:
    """A failed *NotMatch on GET/HEAD is 304 Not Modified (request-preconditions)."""
    blob = target.bucket.blob("state")
    blob.upload_from_string(b"{}")
    with pytest.raises(exceptions.NotModified):
        target.bucket.blob("state").reload(if_generation_not_match=blob.generation)


def test_delete_if_generation_match_mismatch_is_412(target: Target) -> None:
    blob = target.bucket.blob("state")
    blob.upload_from_string(b"{}")
    with pytest.raises(exceptions.PreconditionFailed):
        blob.delete(if_generation_match=blob.generation + 1)  # type: ignore[operator]
    assert blob.exists()


# Uploads: cloud.google.com/storage/docs/uploading-objects, .../hashes-etags,
# .../performing-resumable-uploads


def _post_multipart(target: Target, body: bytes, boundary: str) -> httpx.Response:
    """A raw multipart upload (JSON metadata, then the media) into the test bucket."""
    return target.http(
        "POST",
        f"/upload/storage/v1/b/{BUCKET}/o?uploadType=multipart",
        content=body,
        headers={"Content-Type": f"multipart/related; boundary={boundary}"},
    )


def test_declared_md5_that_does_not_match_is_400_and_stores_nothing(target: Target) -> None:
    """A supplied MD5 that does not match the data: the upload is refused (hashes-etags)."""
    boundary = "b"
    meta = json.dumps({"name": "corrupt.bin", "md5Hash": "nhB9nTcrtoJr2B01QqQZ1g=="})  # md5("x")
    body = (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{meta}\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\nnot x\r\n--{boundary}--\r\n"
    ).encode()
    reply = _post_multipart(target, body, boundary)
    assert reply.status_code == 400
    assert target.bucket.get_blob("corrupt.bin") is None


def test_truncated_multipart_body_is_400_and_stores_nothing(target: Target) -> None:
    """A body without its closing delimiter is a client error (RFC 2046), not a 5xx."""
    boundary = "b"
    body = (
        f'--{boundary}\r\nContent-Type: application/json\r\n\r\n{{"name": "cut.txt"}}\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nhalf a bo"
    ).encode()
    reply = _post_multipart(target, body, boundary)
    assert reply.status_code == 400
    assert target.bucket.get_blob("cut.txt") is None


def test_python_client_streams_a_resumable_upload(target: Target) -> None:
    """blob.open('wb'): 256 KiB chunks answered 308, the last one 200; bytes intact."""
    payload = os.urandom(5 * MiB + 12_345)
    with target.bucket.blob("db.dump").open("wb", chunk_size=256 * 1024) as writer:
        for offset in range(0, len(payload), 700_000):
            writer.write(payload[offset : offset + 700_000])
    assert target.bucket.blob("db.dump").download_as_bytes() == payload


def test_resumable_status_query_is_308(target: Target) -> None:
    """PUT with ``Content-Range: bytes */*`` on an open session: 308 (resume-uploads)."""
    start = target.http(
        "POST", f"/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&name=r.bin", json={}
    )
    reply = httpx.put(start.headers["location"], headers={"Content-Range": "bytes */*"})
    assert reply.status_code == 308


def test_resumable_resent_chunk_is_not_doubled(target: Target) -> None:
    """A chunk resent after a lost reply overlaps what was kept: no byte is doubled."""
    start = target.http(
        "POST", f"/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&name=r.bin", json={}
    )
    session = start.headers["location"]
    first = httpx.put(session, content=b"a" * 10, headers={"Content-Range": "bytes 0-9/*"})
    assert first.status_code == 308 and first.headers.get("range") == "bytes=0-9"
    httpx.put(session, content=b"a" * 5 + b"b" * 5, headers={"Content-Range": "bytes 5-14/*"})
    done = httpx.put(session, headers={"Content-Range": "bytes */15"})
    assert done.status_code == 200
    assert target.backend.read_object(BUCKET, "r.bin") == b"a" * 10 + b"b" * 5


def test_resumable_path_of_the_discovery_document(target: Target) -> None:
    """objects.insert mediaUpload.protocols.resumable.path: /resumable/upload/storage/v1/..."""
    start = target.http(
        "POST",
        f"/resumable/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&name=r.bin",
        json={},
    )
    assert start.status_code == 200 and "location" in start.headers


# Reads: cloud.google.com/storage/docs/json_api/v1/objects/get, RFC 9110 §14


def test_suffix_range_is_206(target: Target) -> None:
    target.backend.insert_object(BUCKET, "r", b"0123456789abcdef")
    tail = target.http("GET", f"/download/storage/v1/b/{BUCKET}/o/r", headers={"Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.content == b"cdef"
    assert tail.headers.get("content-range") == "bytes 12-15/16"


def test_range_beyond_the_end_is_416_with_content_range(target: Target) -> None:
    """json_api/v1/status-codes#416; RFC 9110 §15.5.17 (``Content-Range: bytes */len``)."""
    target.backend.insert_object(BUCKET, "r", b"0123456789abcdef")
    beyond = target.http(
        "GET", f"/download/storage/v1/b/{BUCKET}/o/r", headers={"Range": "bytes=16-"}
    )
    assert beyond.status_code == 416 and beyond.headers.get("content-range") == "bytes */16"


# Listing, errors, buckets: json_api/v1/objects/list, json_api/v1/status-codes, buckets


def test_max_results_counts_prefixes_too(target: Target) -> None:
    """objects.list maxResults: "Maximum combined number of entries in items[] and
    prefixes[]" -> 2 items + 2 prefixes with maxResults=3 needs a second page."""
    for name in ["a.txt", "dir/1", "other/x", "z.txt"]:
        target.backend.insert_object(BUCKET, name, b"x")
    page = target.http(
        "GET", f"/storage/v1/b/{BUCKET}/o", params={"delimiter": "/", "maxResults": 3}
    )
    assert "nextPageToken" in page.json()


def test_not_found_reason_is_notFound(target: Target) -> None:
    """The error body's errors[0].reason is ``notFound`` (json_api/v1/status-codes#404)."""
    error = target.http("GET", f"/storage/v1/b/{BUCKET}/o/missing").json()["error"]
    assert error["code"] == 404 and error["errors"][0]["reason"] == "notFound"


def test_bucket_patch_keeps_labels(target: Target) -> None:
    created = target.client.create_bucket("probe-west", location="us-west1")
    created.labels = {"tier": "dr"}
    created.patch()
    assert target.client.get_bucket("probe-west").labels == {"tier": "dr"}


def test_bucket_location_is_kept(target: Target) -> None:
    """buckets.insert: the requested location, upper-cased (json_api/v1/buckets)."""
    target.client.create_bucket("probe-west", location="us-west1")
    assert target.client.get_bucket("probe-west").location == "US-WEST1"


def test_second_bucket_of_the_same_name_is_409(target: Target) -> None:
    with pytest.raises(exceptions.Conflict):
        target.client.create_bucket(BUCKET)


def test_deleting_a_bucket_that_holds_objects_is_409(target: Target) -> None:
    """buckets.delete: "the bucket must be empty" (json_api/v1/buckets/delete)."""
    target.backend.insert_object(BUCKET, "keep", b"x")
    with pytest.raises(exceptions.Conflict):
        target.client.bucket(BUCKET).delete()


# gcloud storage (SDK 528), JSON API with api_endpoint_overrides/storage


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
@pytest.mark.parametrize("size", [45, 20 * MiB + 7], ids=["small", "20MiB"])
def test_gcloud_cp_both_ways(target: Target, tmp_path: Path, size: int) -> None:
    gcloud = Gcloud(tmp_path / "gcloud", {"storage": target.url}, PROJECT)
    local = tmp_path / "up.bin"
    write_pattern(local, size)
    up = gcloud.run("storage", "cp", str(local), f"gs://{BUCKET}/f.bin")
    assert up.returncode == 0, up.stderr[-2000:]
    stored = target.backend.read_object(BUCKET, "f.bin")
    assert hashlib.sha256(stored).digest() == hashlib.sha256(local.read_bytes()).digest()
    back = tmp_path / "back.bin"
    down = gcloud.run("storage", "cp", f"gs://{BUCKET}/f.bin", str(back))
    assert down.returncode == 0, down.stderr[-2000:]
    assert filecmp.cmp(local, back, shallow=False)


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
def test_gcloud_rm(target: Target, tmp_path: Path) -> None:
    target.backend.insert_object(BUCKET, "gone.txt", b"x")
    gcloud = Gcloud(tmp_path / "gcloud", {"storage": target.url}, PROJECT)
    removed = gcloud.run("storage", "rm", f"gs://{BUCKET}/gone.txt")
    assert removed.returncode == 0, removed.stderr[-2000:]
    assert target.backend.list_objects(BUCKET) == []
