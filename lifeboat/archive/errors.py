"""Errors raised while writing or reading a Lifeboat backup archive.

    ArchiveError          anything wrong with an archive or its key
    ├── WrongKey          the secret's key is not the key the archive was written with
    └── CorruptArchive    the object is damaged, altered, truncated or extended

Messages name the chunk and the byte offset in the object, never the key.
"""

from __future__ import annotations


class ArchiveError(Exception):
    pass


class WrongKey(ArchiveError):
    pass


class CorruptArchive(ArchiveError):
    pass
