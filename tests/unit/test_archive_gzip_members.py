"""Collections spooled as gzip members: the archive is still one gzip of one tar stream."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
import zlib

import bson
import pytest

from lifeboat.archive import ArchiveError, ArchiveWriter, read_archive, verify_archive
from lifeboat.archive.crypto import ChunkDecryptor
from lifeboat.archive.spool import SpooledCollection, spool_raw_batches

KEY = bytes(range(32))
MTIME = 1_700_000_000
CHUNK = 64 << 10


class Sink:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def value(self) -> bytes:
        return b"".join(self.parts)


def batches(seed: int, count: int = 2000) -> list[bytes]:
    # Seeded, not os.urandom: a test that flips a bit in the gzip must hit the same deflate
    # block every run. A random flip now and then lands in a block header, and the reader
    # then fails on the bad block before it reaches the missing final chunk.
    noise = random.Random(seed)
    docs = [
        bson.encode({"_id": seed * 10**6 + n, "pad": noise.randbytes(n % 400)})
        for n in range(count)
    ]
    return [b"".join(docs[i : i + 300]) for i in range(0, count, 300)]


def write(spools: dict[str, SpooledCollection]) -> tuple[bytes, ArchiveWriter]:
    sink = Sink()
    with ArchiveWriter(sink, KEY, compresslevel=1, chunk_size=CHUNK, mtime=MTIME) as writer:
        writer.add_bytes("README.txt", b"made by the test\n")
        for name, spooled in spools.items():
            writer.add_collection("shop", name, spooled, b'{"indexes":[]}')
        writer.add_bytes("oplog.bson", b"")
    return sink.value(), writer


def gzip_stream(archive: bytes) -> bytes:
    decryptor = ChunkDecryptor(io.BytesIO(archive), KEY)
    return b"".join(iter(lambda: decryptor.read(1 << 20), b""))


def members(stream: bytes) -> int:
    """How many gzip members the stream holds (RFC 1952 §2.2), each read to its end."""
    count = 0
    while stream:
        reader = zlib.decompressobj(wbits=31)
        reader.decompress(stream)
        assert reader.eof
        stream = reader.unused_data
        count += 1
    return count


def expected_tar(files: list[tuple[str, bytes]]) -> bytes:
    """What `tarfile` itself writes for these files, as a PAX stream."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files:
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_gzipped_and_plain_spools_make_the_same_tar_as_tarfile_does() -> None:
    data = {"orders": batches(1), "users": batches(2, 0), "carts": batches(3, 77)}
    plain, _ = write({n: spool_raw_batches(b) for n, b in data.items()})
    gzipped, writer = write({n: spool_raw_batches(b, compresslevel=1) for n, b in data.items()})
    tar = gzip.decompress(gzip_stream(gzipped))
    meta = b'{"indexes":[]}'
    files = [("README.txt", b"made by the test\n")]
    for name, parts in data.items():
        files += [(f"shop/{name}.metadata.json", meta), (f"shop/{name}.bson", b"".join(parts))]
    files.append(("oplog.bson", b""))
    assert tar == gzip.decompress(gzip_stream(plain)) == expected_tar(files)
    # Each collection's member sits between two of the writer's own: 1 + 2 per collection.
    assert members(gzip_stream(gzipped)) == 1 + 2 * len(data)
    assert members(gzip_stream(plain)) == 1
    summary = writer.summary
    assert summary is not None and summary.tar_bytes == len(tar)
    assert summary.compressed_bytes == len(gzip_stream(gzipped))


def test_a_gzipped_spool_reads_back_and_verifies_document_for_document() -> None:
    parts = batches(4)
    spooled = spool_raw_batches(parts, compresslevel=1)
    assert spooled.gzip is not None and spooled.gzip.size < spooled.size
    archive, writer = write({"orders": spooled})
    assert writer.summary is not None
    files = {path: digest.sha256 for path, digest in writer.summary.files.items()}
    verified = verify_archive(io.BytesIO(archive), KEY, writer.summary.object_sha256, files)
    assert verified.files["shop/orders.bson"].documents == 2000
    read = {m.path: m.stream.read() for m in read_archive(io.BytesIO(archive), KEY)}
    assert read["shop/orders.bson"] == b"".join(parts)


def test_a_gzipped_spool_that_changed_fails_the_archive() -> None:
    spooled = spool_raw_batches(batches(5), compresslevel=1)
    stored = bytearray(spooled.file.read())
    stored[len(stored) // 2] ^= 1
    spooled.file = io.BytesIO(bytes(stored))
    sink = Sink()
    writer = ArchiveWriter(sink, KEY, chunk_size=CHUNK)
    with pytest.raises(ArchiveError, match="content changed while archiving"):
        writer.add_collection("shop", "orders", spooled, b"{}")
    with pytest.raises(ArchiveError, match="abandoned after an error"):
        writer.close()
    with pytest.raises(ArchiveError, match="truncated"):
        verify_archive(io.BytesIO(sink.value()), KEY)


def test_a_gzipped_spool_cut_short_fails_the_archive() -> None:
    spooled = spool_raw_batches(batches(6), compresslevel=1)
    spooled.file = io.BytesIO(spooled.file.read()[:-10])
    writer = ArchiveWriter(Sink(), KEY, chunk_size=CHUNK)
    with pytest.raises(ArchiveError, match="compressed bytes, the spool ended after"):
        writer.add_collection("shop", "orders", spooled, b"{}")
