"""How far a slice reaches when its changes outgrow the cap: the decision, pure.

A slice is built in memory. After a long outage the changes waiting can be far larger
than five minutes' worth, so a drain stops once the changes it kept reach a cap in
bytes, and the run ships what it has as one slice and goes on with the next. A slice cut
short must still hold *everything* up to its own cut, so its cut comes down to the
point every stream has read through: for a stream stopped by the cap, the cluster time
of its token (its last change kept, or its high-water mark); for a stream read through
the server's cut, that cut. Changes kept past the lowered cut are let go and read again
by the next slice, whose streams resume from the last change kept at or before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bson.timestamp import Timestamp

# A slice is built in memory twice (the entries, then its tar.gz.enc), beside the
# pymongo batches being read: 64 MiB of changes keeps a capture near 200 MiB, well
# inside a small worker, and is still about an hour of a busy shop's writes.
SLICE_MAX_BYTES = 64 << 20


@dataclass
class Kept:
    """One change kept from a stream: its cluster time, its size and the token after it."""

    ts: Timestamp
    size: int
    token: Any


@dataclass
class StreamRead:
    """What one stream gave a drain: where it started, what it kept, where it stands."""

    database: str
    start: Any
    start_at: Timestamp
    kept: list[Kept] = field(default_factory=list)
    through: Timestamp | None = None  # read through this point (None: stopped by the cap)
    token: Any = None

    def stands_at(self) -> Timestamp:
        """How far the stream has read: through its cut, or to its last change kept."""
        if self.through is not None:
            return self.through
        return self.kept[-1].ts if self.kept else self.start_at


def lowered_cuts(cuts: dict[str, Timestamp], reads: list[StreamRead]) -> dict[str, Timestamp]:
    """Per database, the point every one of its streams has read through (at most the
    server's cut)."""
    lowered = dict(cuts)
    for read in reads:
        lowered[read.database] = min(lowered[read.database], read.stands_at())
    return lowered


def trimmed(read: StreamRead, cut: Timestamp) -> tuple[list[Kept], Any]:
    """The changes a stream keeps at or before ``cut``, and the token to resume from.

    Read through the cut, the stream resumes after what it read (its high-water mark may
    be past the cut: it saw nothing there). Cut short, it resumes after its last change
    kept, or where it started.
    """
    keep = [k for k in read.kept if k.ts <= cut]
    if len(keep) == len(read.kept) and read.through is not None:
        return keep, read.token
    return keep, keep[-1].token if keep else read.start
