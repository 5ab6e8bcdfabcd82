"""gcloud storage, Google's own CLI, against the lab's Cloud Storage (seeds 003 and 000).

gcloud's apitools client frames multipart uploads with LF line breaks and a boundary in
single quotes, starts resumable uploads under ``/resumable/upload/storage/v1`` (the
discovery document's resumable path), and downloads big objects in parallel ranges.
Only the storage API is overridden, so nothing reaches Google.
"""

from __future__ import annotations

import base64
import filecmp
import hashlib
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from lab.core.context import LabContext
from lab.core.faults import FaultRule
from lab.storage import StorageBackend, create
from tests.contract.gcloud_cli import GCLOUD, SKIP_REASON, Gcloud, write_pattern
from tests.contract.storage_peer import PEER_URL, PeerBackend, lab_only, peer_backend
from tests.discovery import assert_valid

PROJECT = "ml-datadriven-recos"
BUCKET = "varai-backups"
MiB = 1024 * 1024
# "a file over 100 MB": 105 MiB, under gcloud's 150M parallel-composite threshold, so
# it goes up as one resumable upload and comes back in sliced ranged downloads.
BIG_SIZE = 105 * MiB + 12_345

pytestmark = pytest.mark.skipif(GCLOUD is None, reason=SKIP_REASON)


class StorageCli:
    def __init__(
        self, ctx: LabContext, backend: StorageBackend | PeerBackend, url: str, gcloud: Gcloud
    ):
        self.ctx = ctx
        self.backend = backend
        self.url = url
        self.gcloud = gcloud

    def calls(self, since: int, count: int) -> list[tuple[str, str, int]]:
        """(method, path, status) of the storage calls since ``since``; the log is
        written as each reply starts, so wait until ``count`` are in."""
        deadline = time.monotonic() + 5
        while len(entries := self.ctx.requests.entries(api="storage", since=since)) < count:
            assert time.monotonic() < deadline, entries
            time.sleep(0.01)
        return [(e.method, e.path, e.status) for e in entries]


@pytest.fixture
def cli(lab_ctx: LabContext, serve: Callable[..., str], tmp_path: Path) -> StorageCli:
    backend: StorageBackend | PeerBackend
    if PEER_URL is None:
        backend, app = create(lab_ctx)
        url = serve(app, "storage")
    else:  # LIFEBOAT_STORAGE_PEER_URL: the same commands against a peer emulator
        backend, url = peer_backend(tmp_path), PEER_URL
    backend.create_bucket(PROJECT, BUCKET, location="US")
    gcloud = Gcloud(
        tmp_path / "gcloud",
        {"storage": url},
        PROJECT,
        # A small resumable threshold lets the resume test use a small file.
        {"storage": {"resumable_threshold": "1Mi"}},
    )
    return StorageCli(lab_ctx, backend, url, gcloud)


def month_prefix() -> str:
    """The seed's ``$(date +%Y)/$(date +%m)/``."""
    return datetime.now(UTC).strftime("%Y/%m/")


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def test_gcloud_ls_cp_cat_rm_a_small_file(cli: StorageCli, tmp_path: Path) -> None:
    prefix = month_prefix()
    cli.backend.insert_object(BUCKET, f"{prefix}backup-old.tar.gz", b"old backup")
    cli.backend.insert_object(BUCKET, "2020/01/backup.tar.gz", b"elsewhere")
    local = tmp_path / "small.txt"
    local.write_bytes(b"orders: 42\r\nline two\n--boundary-like line\n")
    target = f"gs://{BUCKET}/{prefix}small.txt"

    since = cli.ctx.requests.last_seq
    up = cli.gcloud.run("storage", "cp", str(local), target)
    assert up.returncode == 0, up.stderr
    stored = cli.backend.get_object(BUCKET, f"{prefix}small.txt")
    assert cli.backend.read_object(BUCKET, f"{prefix}small.txt") == local.read_bytes()
    assert stored.md5_hash == md5_of(local)
    # One multipart upload: gcloud's framing (LF, single-quoted boundary) is understood.
    # (The peer's request log is not ours: what went over the wire is checked on the lab.)
    assert PEER_URL or ("POST", f"/upload/storage/v1/b/{BUCKET}/o", 200) in cli.calls(since, 1)

    listed = cli.gcloud.run("storage", "ls", f"gs://{BUCKET}/{prefix}")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [
        f"gs://{BUCKET}/{prefix}backup-old.tar.gz",
        f"gs://{BUCKET}/{prefix}small.txt",
    ]
    top = cli.gcloud.run("storage", "ls", f"gs://{BUCKET}")
    assert top.returncode == 0 and set(top.stdout.split()) == {
        f"gs://{BUCKET}/2020/",
        f"gs://{BUCKET}/{prefix.split('/')[0]}/",
    }

    cat = cli.gcloud.run("storage", "cat", target)
    assert cat.returncode == 0 and cat.stdout.encode() == local.read_bytes().replace(b"\r", b"")
    back = tmp_path / "back.txt"
    down = cli.gcloud.run("storage", "cp", target, str(back))
    assert down.returncode == 0, down.stderr
    assert filecmp.cmp(local, back, shallow=False)

    since = cli.ctx.requests.last_seq
    removed = cli.gcloud.run("storage", "rm", target)
    assert removed.returncode == 0, removed.stderr
    assert [o["name"] for o in cli.backend.list_objects(BUCKET, prefix)] == [
        f"{prefix}backup-old.tar.gz"
    ]
    assert PEER_URL or (
        "DELETE",
        f"/storage/v1/b/{BUCKET}/o/{prefix}small.txt",
        204,
    ) in cli.calls(since, 1)


def test_gcloud_errors_change_nothing(cli: StorageCli, tmp_path: Path) -> None:
    local = tmp_path / "small.txt"
    local.write_bytes(b"x")
    missing = f"gs://{BUCKET}/nope.txt"
    assert cli.gcloud.run("storage", "cat", missing).returncode != 0
    assert cli.gcloud.run("storage", "cp", missing, str(tmp_path / "n")).returncode != 0
    assert not (tmp_path / "n").exists()
    rm = cli.gcloud.run("storage", "rm", missing)
    assert rm.returncode != 0 and "matched no objects" in rm.stderr

    no_bucket = cli.gcloud.run("storage", "cp", str(local), "gs://no-such-bucket/x.txt")
    assert no_bucket.returncode != 0
    assert "bucket does not exist" in no_bucket.stderr or "404" in no_bucket.stderr
    assert cli.gcloud.run("storage", "ls", "gs://no-such-bucket").returncode != 0
    assert cli.backend.list_objects(BUCKET) == []
    assert PEER_URL or list((cli.ctx.settings.root / "storage" / "staging").iterdir()) == []


@lab_only("fault injection and request log")
def test_gcloud_resumes_an_upload_whose_chunk_failed(cli: StorageCli, tmp_path: Path) -> None:
    """A 503 on the upload's PUT: gcloud asks the session how far it got (``bytes */*``,
    answered 308) and sends the rest, as performing-resumable-uploads describes."""
    local = tmp_path / "three.bin"
    write_pattern(local, 3 * MiB + 7)
    cli.ctx.faults.add(FaultRule(api="storage", method="PUT", status=503, count=1))
    since = cli.ctx.requests.last_seq
    up = cli.gcloud.run("storage", "cp", str(local), f"gs://{BUCKET}/three.bin")
    assert up.returncode == 0, up.stderr

    assert cli.backend.get_object(BUCKET, "three.bin").md5_hash == md5_of(local)
    calls = cli.calls(since, 4)
    assert ("POST", f"/resumable/upload/storage/v1/b/{BUCKET}/o", 200) in calls
    puts = [status for method, _, status in calls if method == "PUT"]
    assert puts[0] == 503 and puts[-1] == 200 and 308 in puts


def test_an_interrupted_chunk_is_resumed_from_what_the_session_kept(cli: StorageCli) -> None:
    """The connection drops in the middle of a chunk. The status query (``bytes */N``)
    answers 308 with ``Range`` covering only what was persisted, and the client resumes
    from the next byte (cloud.google.com/storage/docs/performing-resumable-uploads)."""
    data = bytes(range(256)) * (16 * 1024)  # 4 MiB
    total = len(data)
    start = httpx.post(
        f"{cli.url}/resumable/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&name=cut.bin",
        json={"contentType": "application/octet-stream"},
        headers={"X-Upload-Content-Length": str(total)},
    )
    assert start.status_code == 200
    session = start.headers["location"]
    assert "upload_id=" in session

    # Send half the declared body by hand, then drop the connection.
    sent = 3 * MiB + 100
    parts = urlsplit(session)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        head = (
            f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {total}\r\nContent-Range: bytes 0-{total - 1}/{total}\r\n\r\n"
        )
        sock.sendall(head.encode() + data[:sent])
        time.sleep(0.3)  # let the server read what arrived before the connection drops

    kept = -1
    deadline = time.monotonic() + 5
    while kept < 0:  # the server notices the drop a moment later
        status = httpx.put(session, headers={"Content-Range": f"bytes */{total}"})
        assert status.status_code in (308, 503), status.text
        if status.status_code == 308:
            kept = (
                int(status.headers["range"].rsplit("-", 1)[1]) + 1
                if "range" in status.headers
                else 0
            )
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert 0 < kept <= sent

    done = httpx.put(
        session,
        content=data[kept:],
        headers={"Content-Range": f"bytes {kept}-{total - 1}/{total}"},
    )
    assert done.status_code == 200, done.text
    assert_valid("storage.v1", "Object", done.json())
    assert cli.backend.read_object(BUCKET, "cut.bin") == data

    # Bad path: a chunk that would leave a gap after what the session kept is refused.
    again = httpx.post(
        f"{cli.url}/resumable/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&name=gap.bin",
        json={},
    ).headers["location"]
    gap = httpx.put(again, content=b"x", headers={"Content-Range": "bytes 5-5/6"})
    assert gap.status_code == 400 and gap.json()["error"]["code"] == 400
    assert cli.backend.list_objects(BUCKET, "gap") == []


@pytest.mark.big_file
def test_gcloud_cp_of_a_file_over_100_mb_both_ways(cli: StorageCli, tmp_path: Path) -> None:
    """Marked ``big_file``: deselect with ``-m 'not big_file'`` when time is short."""
    local = tmp_path / "backup.tar.gz"
    write_pattern(local, BIG_SIZE)
    target = f"gs://{BUCKET}/{month_prefix()}backup.tar.gz"

    since = cli.ctx.requests.last_seq
    up = cli.gcloud.run("storage", "cp", str(local), target)
    assert up.returncode == 0, up.stderr
    name = urlsplit(target).path.lstrip("/")
    stored = cli.backend.get_object(BUCKET, name)
    assert stored.size == BIG_SIZE and stored.md5_hash == md5_of(local)
    assert filecmp.cmp(local, stored.path, shallow=False)
    resumable = ("POST", f"/resumable/upload/storage/v1/b/{BUCKET}/o", 200)
    assert PEER_URL or resumable in cli.calls(since, 2)
    local_md5 = md5_of(local)

    back = tmp_path / "restored.tar.gz"
    down = cli.gcloud.run("storage", "cp", target, str(back))
    assert down.returncode == 0, down.stderr
    assert back.stat().st_size == BIG_SIZE
    assert filecmp.cmp(local, back, shallow=False)
    assert md5_of(back) == local_md5
