"""Contract tests: the real google-cloud-storage client against the lab's storage emulator."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import httpx
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from lab.core.context import LabContext
from lab.core.faults import FaultRule
from lab.storage import StorageBackend, create
from lab.storage.exceptions import BucketNotFound
from tests.contract.storage_peer import PEER_URL, PeerBackend, lab_only, peer_backend
from tests.discovery import assert_valid

PROJECT = "lifeboat-lab"
BUCKET = "lifeboat-backups"
MiB = 1024 * 1024


@dataclass
class StorageLab:
    ctx: LabContext
    backend: StorageBackend | PeerBackend  # the peer's, when LIFEBOAT_STORAGE_PEER_URL is set
    url: str
    client: storage.Client

    @property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(BUCKET)

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=30, **kwargs)


@pytest.fixture
def lab(lab_ctx: LabContext, serve: Callable[..., str], tmp_path: Path) -> Iterator[StorageLab]:
    backend: StorageBackend | PeerBackend
    if PEER_URL is None:
        backend, app = create(lab_ctx)
        url = serve(app, "storage")
    else:
        backend, url = peer_backend(tmp_path), PEER_URL
    backend.create_bucket(PROJECT, BUCKET, location="us-central1", labels={"env": "lab"})
    client = storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": url},
    )
    yield StorageLab(lab_ctx, backend, url, client)
    client.close()


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def test_upload_from_string_and_download(lab: StorageLab) -> None:
    blob = lab.bucket.blob("manifests/2024 run#1.json")
    blob.metadata = {"incident": "inc-7"}
    blob.upload_from_string(b'{"ok": true}', content_type="application/json")

    assert blob.generation is not None and blob.metageneration == 1
    assert blob.md5_hash == b64(hashlib.md5(b'{"ok": true}').digest())
    crc = google_crc32c.Checksum(b'{"ok": true}').digest()
    assert blob.crc32c == b64(crc)
    fresh = lab.bucket.get_blob("manifests/2024 run#1.json")
    assert fresh is not None
    assert fresh.content_type == "application/json" and fresh.metadata == {"incident": "inc-7"}
    assert fresh.download_as_bytes() == b'{"ok": true}'

    raw = lab.raw("GET", "/storage/v1/b/lifeboat-backups/o/manifests%2F2024%20run%231.json")
    assert raw.status_code == 200
    assert_valid("storage.v1", "Object", raw.json())
    assert raw.json()["size"] == "12"


def test_gzip_object_is_served_as_stored_and_verified(lab: StorageLab) -> None:
    text = b"log line\n" * 1000
    blob = lab.bucket.blob("logs/app.log.gz")
    blob.content_encoding = "gzip"
    blob.upload_from_string(gzip.compress(text), content_type="text/plain")

    assert lab.bucket.blob("logs/app.log.gz").download_as_bytes() == text
    stored = lab.bucket.blob("logs/app.log.gz").download_as_bytes(raw_download=True)
    assert gzip.decompress(stored) == text


def test_multipart_upload_and_declared_checksum(lab: StorageLab) -> None:
    payload = os.urandom(3 * MiB + 17)  # multipart (size known, < 8 MiB), several blocks
    since = lab.ctx.requests.last_seq
    blob = lab.bucket.blob("multipart.bin")
    blob.upload_from_file(io.BytesIO(payload), size=len(payload), content_type="image/png")
    # One POST, no resumable PUTs. (The client also GETs bucket metadata in the background.)
    uploads = [e for e in lab.ctx.requests.entries(api="storage", since=since) if "/o" in e.path]
    assert PEER_URL or [e.method for e in uploads] == ["POST"]  # the peer's log is not ours
    assert lab.bucket.blob("multipart.bin").download_as_bytes() == payload
    assert lab.backend.read_object(BUCKET, "multipart.bin") == payload

    # A body whose declared md5Hash is wrong must be refused and store nothing.
    boundary = "lab-boundary"
    meta = json.dumps({"name": "corrupt.bin", "md5Hash": b64(hashlib.md5(b"x").digest())})
    body = (
        (
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{meta}\r\n"
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + b"not x"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = lab.raw(
        "POST",
        f"/upload/storage/v1/b/{BUCKET}/o?uploadType=multipart",
        content=body,
        headers={"Content-Type": f"multipart/related; boundary={boundary}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["errors"][0]["reason"] == "invalid"
    assert lab.bucket.get_blob("corrupt.bin") is None


def test_resumable_upload_streams_and_reads_back_in_ranges(lab: StorageLab) -> None:
    payload = os.urandom(5 * MiB + 12_345)
    since = lab.ctx.requests.last_seq
    with lab.bucket.blob("backups/db.dump").open("wb", chunk_size=256 * 1024) as writer:
        for offset in range(0, len(payload), 700_000):
            writer.write(payload[offset : offset + 700_000])

    puts = lab.ctx.requests.entries(api="storage", method="PUT", since=since)
    # 20 full 256 KiB chunks get 308; the final short one completes the upload.
    assert PEER_URL or [e.status for e in puts].count(308) == 20  # the peer's log is not ours
    blob = lab.bucket.get_blob("backups/db.dump")
    assert blob is not None and blob.size == len(payload)
    assert blob.download_as_bytes() == payload  # the client verifies the checksum too
    assert blob.download_as_bytes(start=MiB, end=MiB + 99) == payload[MiB : MiB + 100]
    with blob.open("rb", chunk_size=MiB) as reader:
        reader.seek(3 * MiB + 7)
        assert reader.read(2 * MiB) == payload[3 * MiB + 7 : 5 * MiB + 7]
        assert reader.read() == payload[5 * MiB + 7 :]

    path = f"/download/storage/v1/b/{BUCKET}/o/backups%2Fdb.dump"
    tail = lab.raw("GET", path, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == payload[-10:]
    assert (
        tail.headers["content-range"]
        == f"bytes {len(payload) - 10}-{len(payload) - 1}/{len(payload)}"
    )
    beyond = lab.raw("GET", path, headers={"Range": f"bytes={len(payload)}-"})
    assert (
        beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(payload)}"
    )


def test_resumable_protocol_status_query_and_resent_chunk(lab: StorageLab) -> None:
    start = lab.raw(
        "POST",
        f"/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&name=raw.bin",
        json={"contentType": "text/plain"},
    )
    assert start.status_code == 200
    session = start.headers["location"]
    assert httpx.put(session, headers={"Content-Range": "bytes */*"}).status_code == 308

    first = httpx.put(session, content=b"a" * 10, headers={"Content-Range": "bytes 0-9/*"})
    assert first.status_code == 308 and first.headers["range"] == "bytes=0-9"
    # The client resends bytes 5-14 after losing a reply: bytes 5-9 must not be doubled.
    again = httpx.put(
        session, content=b"a" * 5 + b"b" * 5, headers={"Content-Range": "bytes 5-14/*"}
    )
    assert again.headers["range"] == "bytes=0-14"
    status = httpx.put(session, headers={"Content-Range": "bytes */*"})
    assert status.status_code == 308 and status.headers["range"] == "bytes=0-14"

    done = httpx.put(session, headers={"Content-Range": "bytes */15"})
    assert done.status_code == 200
    assert_valid("storage.v1", "Object", done.json())
    assert done.json()["contentType"] == "text/plain"
    assert lab.backend.read_object(BUCKET, "raw.bin") == b"a" * 10 + b"b" * 5
    # Asking again after completion returns the same object, as GCS does.
    assert httpx.put(session, headers={"Content-Range": "bytes */*"}).json() == done.json()


def test_resumable_precondition_is_checked_again_at_commit(lab: StorageLab) -> None:
    start = lab.raw(
        "POST",
        f"/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&ifGenerationMatch=0",
        json={"name": "lease"},
    )
    session = start.headers["location"]
    lab.backend.insert_object(BUCKET, "lease", b"other writer")  # wins the race meanwhile

    late = httpx.put(session, content=b"mine", headers={"Content-Range": "bytes 0-3/4"})
    assert late.status_code == 412
    assert late.json()["error"]["errors"][0]["reason"] == "conditionNotMet"
    assert lab.backend.read_object(BUCKET, "lease") == b"other writer"
    assert PEER_URL or list((lab.ctx.settings.root / "storage" / "staging").iterdir()) == []


def test_list_pagination_prefix_and_delimiter(lab: StorageLab) -> None:
    names = ["a.txt", "dir/1", "dir/2", "dir/sub/3", "other/x", "z.txt"]
    for name in names:
        lab.backend.insert_object(BUCKET, name, name.encode())

    pages = lab.client.list_blobs(BUCKET, page_size=2).pages
    assert [[b.name for b in page] for page in pages] == [names[0:2], names[2:4], names[4:6]]

    iterator = lab.client.list_blobs(BUCKET, delimiter="/", page_size=1)
    assert [b.name for b in iterator] == ["a.txt", "z.txt"]
    assert iterator.prefixes == {"dir/", "other/"}
    under_dir = lab.client.list_blobs(BUCKET, prefix="dir/", delimiter="/")
    assert [b.name for b in under_dir] == ["dir/1", "dir/2"]
    assert under_dir.prefixes == {"dir/sub/"}

    # maxResults above the lab's page cap gets a capped page: items and prefixes count
    # together, and the token leads on past the prefix.
    raw = lab.raw("GET", f"/storage/v1/b/{BUCKET}/o", params={"delimiter": "/", "maxResults": 3})
    assert_valid("storage.v1", "Objects", raw.json())
    assert [o["name"] for o in raw.json()["items"]] == ["a.txt"]
    assert raw.json()["prefixes"] == ["dir/"] and "nextPageToken" in raw.json()
    assert [o["name"] for o in lab.backend.list_objects(BUCKET, prefix="dir/")] == names[1:4]


def test_generation_mismatch_is_412_and_changes_nothing(lab: StorageLab) -> None:
    blob = lab.bucket.blob("lease.json")
    blob.upload_from_string(b"v1")
    first_generation = blob.generation

    with pytest.raises(exceptions.PreconditionFailed):
        lab.bucket.blob("lease.json").upload_from_string(
            b"v2", if_generation_match=first_generation + 1
        )
    with pytest.raises(exceptions.PreconditionFailed):  # no size given: a resumable upload
        lab.bucket.blob("lease.json").upload_from_file(io.BytesIO(b"v3"), if_generation_match=0)

    current = lab.bucket.get_blob("lease.json")
    assert current is not None and current.generation == first_generation
    assert current.download_as_bytes() == b"v1"
    lab.bucket.blob("lease.json").upload_from_string(b"v4", if_generation_match=first_generation)
    replaced = lab.bucket.get_blob("lease.json")
    assert replaced is not None and replaced.generation > first_generation


def test_a_download_names_the_generation_it_served(lab: StorageLab) -> None:
    # The region lease is read by one download and written on the generation it names
    # (tasks/storage.py): body and generation come from the same reply.
    lab.bucket.blob("lease.json").upload_from_string(b"v1")
    reader = lab.bucket.blob("lease.json")
    assert reader.download_as_bytes() == b"v1"
    first = reader.generation
    assert first is not None
    lab.bucket.blob("lease.json").upload_from_string(b"v2", if_generation_match=first)
    # The reader now asks for the generation it saw, which is gone (no versioning): 404.
    with pytest.raises(exceptions.NotFound):
        reader.download_as_bytes()
    again = lab.bucket.blob("lease.json")
    assert again.download_as_bytes() == b"v2" and again.generation is not None
    assert again.generation > first


def test_create_only_lease_has_exactly_one_winner(lab: StorageLab) -> None:
    def acquire(name: str, owner: str, barrier: threading.Barrier, won: list[str]) -> None:
        barrier.wait()
        try:
            lab.bucket.blob(name).upload_from_string(owner.encode(), if_generation_match=0)
            won.append(owner)
        except exceptions.PreconditionFailed:
            pass

    for round_number in range(5):
        name = f"leases/failover-{round_number}"
        barrier = threading.Barrier(2)
        won: list[str] = []
        writers = [
            threading.Thread(target=acquire, args=(name, owner, barrier, won))
            for owner in ("east", "west")
        ]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(timeout=30)

        assert len(won) == 1
        assert lab.backend.read_object(BUCKET, name) == won[0].encode()


def test_delete_and_patch_with_preconditions(lab: StorageLab) -> None:
    blob = lab.bucket.blob("state.json")
    blob.upload_from_string(b"{}")

    blob.metadata = {"owner": "east"}
    with pytest.raises(exceptions.PreconditionFailed):
        blob.patch(if_metageneration_match=7)
    blob.patch(if_metageneration_match=1)
    assert blob.metageneration == 2 and blob.metadata == {"owner": "east"}
    with pytest.raises(exceptions.NotModified):  # GCS answers a failed *NotMatch read with 304
        lab.bucket.blob("state.json").reload(if_generation_not_match=blob.generation)

    with pytest.raises(exceptions.PreconditionFailed):
        blob.delete(if_generation_match=blob.generation + 1)
    assert blob.exists()
    blob.delete(if_generation_match=blob.generation)
    assert not blob.exists()


def test_missing_bucket_and_object_are_404(lab: StorageLab) -> None:
    with pytest.raises(exceptions.NotFound):
        lab.client.get_bucket("no-such-bucket")
    with pytest.raises(exceptions.NotFound):
        lab.bucket.blob("missing").download_as_bytes()
    with pytest.raises(exceptions.NotFound):
        lab.bucket.blob("missing").delete()
    assert lab.bucket.get_blob("missing") is None

    raw = lab.raw("GET", f"/storage/v1/b/{BUCKET}/o/missing")
    error = raw.json()["error"]
    assert raw.status_code == 404 and error["code"] == 404
    assert error["errors"][0]["reason"] == "notFound"


def test_bucket_lifecycle(lab: StorageLab) -> None:
    created = lab.client.create_bucket("lifeboat-dr-west", location="us-west1")
    created.labels = {"tier": "dr"}
    created.patch()
    assert lab.client.get_bucket("lifeboat-dr-west").labels == {"tier": "dr"}
    with pytest.raises(exceptions.Conflict):
        lab.client.create_bucket("lifeboat-dr-west")
    assert [b.name for b in lab.client.list_buckets()] == [BUCKET, "lifeboat-dr-west"]

    raw = lab.raw("GET", "/storage/v1/b", params={"project": PROJECT})
    assert_valid("storage.v1", "Buckets", raw.json())
    assert_valid("storage.v1", "Bucket", lab.raw("GET", f"/storage/v1/b/{BUCKET}").json())
    assert raw.json()["items"][0]["location"] == "US-CENTRAL1"

    created.blob("keep").upload_from_string(b"x")
    with pytest.raises(exceptions.Conflict):
        created.delete()
    created.blob("keep").delete()
    created.delete()
    assert lab.client.lookup_bucket("lifeboat-dr-west") is None


def test_copy_rewrite_and_compose(lab: StorageLab) -> None:
    lab.bucket.blob("part-1").upload_from_string(b"hello ")
    lab.bucket.blob("part-2").upload_from_string(b"world")
    lab.client.create_bucket("lifeboat-dr-west")
    west = lab.client.bucket("lifeboat-dr-west")

    copied = lab.bucket.copy_blob(lab.bucket.blob("part-1"), west, "copied")
    assert copied.download_as_bytes() == b"hello "
    token, written, total = west.blob("rewritten").rewrite(lab.bucket.blob("part-2"))
    assert token is None and written == total == 5
    whole = lab.bucket.blob("whole")
    whole.compose([lab.bucket.blob("part-1"), lab.bucket.blob("part-2")])
    assert whole.download_as_bytes() == b"hello world"


@lab_only("fault injection and request log")
def test_injected_503_on_a_resumable_chunk_is_retried(lab: StorageLab) -> None:
    payload = os.urandom(3 * MiB + 1)
    lab.ctx.faults.add(FaultRule(api="storage", method="PUT", status=503, count=1))
    since = lab.ctx.requests.last_seq
    with lab.bucket.blob("retried.bin").open("wb", chunk_size=MiB) as writer:
        writer.write(payload)

    stored = lab.bucket.blob("retried.bin").download_as_bytes()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(payload).digest()
    puts = lab.ctx.requests.entries(api="storage", method="PUT", since=since)
    assert [(e.status, e.injected) for e in puts][:2] == [(503, True), (308, False)]


@lab_only("backend interface for other emulators")
def test_backend_interface_for_other_emulators(lab_ctx: LabContext) -> None:
    backend, _ = create(lab_ctx)
    assert lab_ctx.backends["storage"] is backend
    bucket = backend.create_bucket(PROJECT, "sql-exports", labels={"k": "v"})
    assert_valid("storage.v1", "Bucket", bucket)
    obj = backend.insert_object("sql-exports", "db/dump.sql", b"SELECT 1;", "application/sql")
    assert_valid("storage.v1", "Object", obj)
    assert backend.read_object("sql-exports", "db/dump.sql") == b"SELECT 1;"
    assert backend.object_path("sql-exports", "db/dump.sql").read_bytes() == b"SELECT 1;"
    assert [o["name"] for o in backend.list_objects("sql-exports", "db/")] == ["db/dump.sql"]
    assert obj["mediaLink"].startswith(lab_ctx.settings.url("storage"))

    backend.reset()
    assert list((lab_ctx.settings.root / "storage" / "data").iterdir()) == []
    with pytest.raises(BucketNotFound):
        backend.read_object("sql-exports", "db/dump.sql")


def test_multipart_framed_as_gcloud_frames_it(lab: StorageLab) -> None:
    """gcloud's apitools writes the body with Python's email generator: bare LF line
    breaks and the boundary quoted with ``%r``. The line break before a delimiter belongs
    to the delimiter (RFC 2046), so the media keeps its own trailing newline."""
    boundary = "===============7330845974216740156=="
    media = b"line one\r\nline two\n\n--not-a-boundary\n"
    body = (
        (
            f"--{boundary}\nContent-Type: application/json\nMIME-Version: 1.0\n\n"
            '{"name": "lf.txt", "metadata": {"k": "v"}}\n'
            f"--{boundary}\nContent-Type: text/plain\nMIME-Version: 1.0\n"
            "Content-Transfer-Encoding: binary\n\n"
        ).encode()
        + media
        + f"\n--{boundary}--\n".encode()
    )
    reply = lab.raw(
        "POST",
        f"/upload/storage/v1/b/{BUCKET}/o?uploadType=multipart",
        content=body,
        headers={"Content-Type": f"multipart/related; boundary='{boundary}'"},
    )
    assert reply.status_code == 200, reply.text
    assert_valid("storage.v1", "Object", reply.json())
    assert reply.json()["contentType"] == "text/plain" and reply.json()["metadata"] == {"k": "v"}
    assert lab.backend.read_object(BUCKET, "lf.txt") == media

    truncated = lab.raw(
        "POST",
        f"/upload/storage/v1/b/{BUCKET}/o?uploadType=multipart",
        content=body[: -len(f"\n--{boundary}--\n")],
        headers={"Content-Type": f"multipart/related; boundary='{boundary}'"},
    )
    assert truncated.status_code == 400
    assert "closing boundary" in truncated.json()["error"]["message"]
    assert [o["name"] for o in lab.backend.list_objects(BUCKET)] == ["lf.txt"]
    assert PEER_URL or list((lab.ctx.settings.root / "storage" / "staging").iterdir()) == []


def test_a_bucket_reports_its_location_and_location_type(lab: StorageLab) -> None:
    """Readiness's region-independence check reads these (lifeboat/independence.py)."""
    expected = {"us-east1": "region", "nam4": "dual-region", "eu": "multi-region"}
    for given, kind in expected.items():
        name = f"located-{given}"
        lab.client.create_bucket(name, location=given)
        got = lab.client.get_bucket(name)
        assert (got.location, got.location_type) == (given.upper(), kind)
    assert lab.client.get_bucket(BUCKET).location_type == "region"  # us-central1
