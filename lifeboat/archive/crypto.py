"""AES-256-GCM in independent chunks: the encrypted envelope around the gzip stream.

Layout of the object (all integers big-endian):

    offset  size  field
    0       8     magic            b"LIFEBOAT"
    8       1     format version   1
    9       1     cipher           1 = AES-256-GCM with a 16-byte tag
    10      4     chunk size       plaintext bytes per chunk (1 KiB .. 64 MiB)
    14      8     key id           the key's fingerprint (`key_id()`, 16 hex digits)
    22      8     nonce prefix     random, new for every object
    30      4     header check     first 4 bytes of SHA-256(bytes 0..29)
    34      ...   chunks

Chunk i (i = 0, 1, ...) is AES-256-GCM(key, nonce, plaintext, associated data) =
ciphertext || 16-byte tag, where

    nonce            = nonce prefix (8) || uint32(i)
    associated data  = the 34-byte header || uint64(i) || final flag (1 byte: 0 or 1)

Every chunk but the last holds exactly `chunk size` plaintext bytes; the last holds
0..chunk size bytes (0 only when the whole payload is empty) and alone has the final flag.
So a header edit, a wrong key, a flipped bit, chunks swapped, dropped or duplicated, a
truncation (even at a chunk boundary) and data appended after the final chunk all fail
authentication. The header check tells a damaged header from a wrong key; the key id is
compared before any decryption.

Chunks are authenticated one at a time, so damage near the end of a large object is only
found at the end: read it through once (`verify_archive`) before acting on its content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lifeboat.archive.digests import Readable, Writable, read_exact
from lifeboat.archive.errors import ArchiveError, CorruptArchive, WrongKey

MAGIC = b"LIFEBOAT"
FORMAT_VERSION = 1
CIPHER_AES_256_GCM = 1
KEY_BYTES = 32
TAG_BYTES = 16
NONCE_PREFIX_BYTES = 8
MIN_CHUNK_SIZE = 1 << 10
MAX_CHUNK_SIZE = 1 << 26
DEFAULT_CHUNK_SIZE = 1 << 20
_MAX_CHUNKS = 1 << 32
_HEADER = struct.Struct(">8sBBI8s8s")
_CHECK_BYTES = 4
HEADER_BYTES = _HEADER.size + _CHECK_BYTES
_KEY_ID_DOMAIN = b"lifeboat/archive/key-id/v1\x00"


def parse_key(secret_text: str) -> bytes:
    """The 32-byte key from a secret's text: base64 (standard or URL-safe) or 64 hex digits.

    Errors say what is wrong with the text, never what it holds.
    """
    text = "".join(secret_text.split())
    if len(text) == 2 * KEY_BYTES and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    try:
        if "-" in text or "_" in text:
            key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        else:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ArchiveError(
            f"the encryption key secret is not valid base64 ({len(text)} characters); "
            "it must hold 32 random bytes, base64-encoded (e.g. `openssl rand -base64 32`)"
        ) from None
    if len(key) != KEY_BYTES:
        raise ArchiveError(
            f"the encryption key secret decodes to {len(key)} bytes; AES-256 needs "
            f"{KEY_BYTES} (e.g. `openssl rand -base64 32`)"
        )
    return key


def key_id(key: bytes) -> str:
    """A short fingerprint of the key, safe to publish in manifests and logs."""
    _check_key(key)
    return hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:16]


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise ArchiveError(f"the encryption key must be {KEY_BYTES} bytes (see parse_key)")


@dataclass(frozen=True)
class Header:
    chunk_size: int
    key_id: str
    nonce_prefix: bytes

    def encode(self) -> bytes:
        body = _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            CIPHER_AES_256_GCM,
            self.chunk_size,
            bytes.fromhex(self.key_id),
            self.nonce_prefix,
        )
        return body + hashlib.sha256(body).digest()[:_CHECK_BYTES]

    @classmethod
    def decode(cls, data: bytes) -> Header:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            raise CorruptArchive(
                f"truncated archive: the object has {len(data)} bytes, less than its "
                f"{HEADER_BYTES}-byte header"
            )
        if data[: len(MAGIC)] != MAGIC:
            raise CorruptArchive(
                "not a Lifeboat archive: bad magic at offset 0 "
                f"(expected {MAGIC!r}, found {data[: len(MAGIC)]!r})"
            )
        if len(data) > len(MAGIC) and data[len(MAGIC)] != FORMAT_VERSION:
            raise CorruptArchive(
                f"unsupported archive format version {data[len(MAGIC)]} at offset "
                f"{len(MAGIC)}; this Lifeboat reads version {FORMAT_VERSION}"
            )
        if len(data) < HEADER_BYTES:
            raise CorruptArchive(
                f"truncated archive: the header needs {HEADER_BYTES} bytes, the object has "
                f"{len(data)}"
            )
        body, check = data[: _HEADER.size], data[_HEADER.size : HEADER_BYTES]
        if hashlib.sha256(body).digest()[:_CHECK_BYTES] != check:
            raise CorruptArchive(
                f"damaged archive header: its check value (offset {_HEADER.size}) does not "
                f"match bytes 0..{_HEADER.size - 1}"
            )
        _, _, cipher, chunk_size, raw_key_id, nonce_prefix = _HEADER.unpack(body)
        if cipher != CIPHER_AES_256_GCM:
            raise CorruptArchive(f"unknown cipher {cipher} in the archive header (offset 9)")
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise CorruptArchive(
                f"chunk size {chunk_size} in the archive header (offset 10) is outside "
                f"{MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}"
            )
        return cls(chunk_size=chunk_size, key_id=raw_key_id.hex(), nonce_prefix=nonce_prefix)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _associated_data(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


class ChunkEncryptor:
    """A write-only stream: buffers plaintext and writes sealed chunks to `sink`.

    The header is written at once. `finish()` seals the final chunk; `abort()` drops
    everything still buffered so that an interrupted object can never pass as complete.
    """

    def __init__(self, sink: Writable, key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        _check_key(key)
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be in {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
        self._sink = sink
        self._aead = AESGCM(bytes(key))
        self._chunk_size = chunk_size
        self.header = Header(chunk_size, key_id(key), os.urandom(NONCE_PREFIX_BYTES))
        self._header_bytes = self.header.encode()
        self._buffer = bytearray()
        self.chunks = 0
        self.plaintext_bytes = 0
        self._state = "open"
        sink.write(self._header_bytes)

    def write(self, data: bytes, /) -> int:
        if self._state == "aborted":
            return len(data)
        if self._state != "open":
            raise ValueError("write to a finished archive")
        self._buffer += data
        self.plaintext_bytes += len(data)
        # Hold back a full chunk until more data proves it is not the final one.
        while len(self._buffer) > self._chunk_size:
            # The slice is released here, not when collected: a sink that keeps an
            # error it retried (its traceback holds `_seal`'s frame, and so the slice)
            # would otherwise leave the buffer exported, and `del` would fail.
            with memoryview(self._buffer) as view, view[: self._chunk_size] as piece:
                self._seal(piece, final=False)
            del self._buffer[: self._chunk_size]
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        if self._state != "open":
            raise ValueError(f"cannot finish an archive that is {self._state}")
        self._seal(bytes(self._buffer), final=True)
        self._buffer = bytearray()
        self._state = "finished"

    def abort(self) -> None:
        self._buffer = bytearray()
        self._state = "aborted"

    def _seal(self, plaintext: bytes | memoryview, final: bool) -> None:
        index = self.chunks
        if index >= _MAX_CHUNKS:
            raise ArchiveError("archive too large: more than 2**32 chunks")
        sealed = self._aead.encrypt(
            _nonce(self.header.nonce_prefix, index),
            plaintext,
            _associated_data(self._header_bytes, index, final),
        )
        self._sink.write(sealed)
        self.chunks += 1


class ChunkDecryptor:
    """A read-only stream of the authenticated plaintext of an encrypted object.

    Reads one chunk ahead, so that it knows which chunk is the last one. Raises
    `WrongKey` before any decryption when the key id differs, and `CorruptArchive`
    naming the chunk and offset when a chunk fails authentication.
    """

    def __init__(self, source: Readable, key: bytes) -> None:
        _check_key(key)
        self._source = source
        self._aead = AESGCM(bytes(key))
        raw = read_exact(source, HEADER_BYTES)
        self.header = Header.decode(raw)
        expected = key_id(key)
        if self.header.key_id != expected:
            raise WrongKey(
                f"wrong key: archive key id {self.header.key_id}, secret's key id {expected}"
            )
        self._header_bytes = raw
        self._record = self.header.chunk_size + TAG_BYTES
        self._offset = HEADER_BYTES  # object offset of `self._pending`
        self._pending: bytes | None = read_exact(source, self._record)
        self._plain = b""
        self._position = 0
        self.chunks = 0
        self.plaintext_bytes = 0
        if not self._pending:
            raise CorruptArchive(
                f"truncated archive: it ends after the header (offset {HEADER_BYTES}) "
                "and holds no chunk"
            )

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        while self._position >= len(self._plain):
            if self._pending is None:
                return b""
            self._plain = self._open_next()
            self._position = 0
        start = self._position
        self._position = min(start + size, len(self._plain))
        return self._plain[start : self._position]

    def _open_next(self) -> bytes:
        current = self._pending
        assert current is not None
        offset = self._offset
        if len(current) == self._record:
            following = read_exact(self._source, self._record)
            final = not following
        else:
            following = b""
            final = True
        index = self.chunks
        plain = self._decrypt(current, index, final, offset, extra=len(following))
        self.chunks += 1
        self.plaintext_bytes += len(plain)
        self._offset = offset + len(current)
        self._pending = following or None
        return plain

    def _decrypt(self, sealed: bytes, index: int, final: bool, offset: int, extra: int) -> bytes:
        where = f"chunk {index} (object bytes {offset}..{offset + len(sealed) - 1})"
        if len(sealed) < TAG_BYTES:
            raise CorruptArchive(
                f"truncated archive: {where} has {len(sealed)} bytes, "
                f"fewer than its {TAG_BYTES}-byte tag"
            )
        try:
            return self._attempt(sealed, index, final)
        except InvalidTag:
            pass
        # Authentication failed; find out why, to say it clearly.
        if final and self._authenticates(sealed, index, final=False):
            raise CorruptArchive(
                f"truncated archive: the object ends after {where}, which is not the final chunk"
            )
        if not final and self._authenticates(sealed, index, final=True):
            raise CorruptArchive(
                f"unexpected data after the final chunk: {where} is the final chunk, "
                f"yet at least {extra} more bytes follow from offset {offset + len(sealed)}"
            )
        raise CorruptArchive(
            f"{where} failed authentication: the object was damaged, altered, reordered "
            "or truncated"
        )

    def _attempt(self, sealed: bytes, index: int, final: bool) -> bytes:
        return self._aead.decrypt(
            _nonce(self.header.nonce_prefix, index),
            sealed,
            _associated_data(self._header_bytes, index, final),
        )

    def _authenticates(self, sealed: bytes, index: int, final: bool) -> bool:
        try:
            self._attempt(sealed, index, final)
        except InvalidTag:
            return False
        return True
