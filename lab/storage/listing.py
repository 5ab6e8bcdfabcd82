"""objects.list paging: prefix, delimiter → prefixes, maxResults → nextPageToken."""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from dataclasses import dataclass, field

from lab.storage.exceptions import InvalidArgument

MAX_RESULTS = 1000


@dataclass(frozen=True)
class ListQuery:
    """The objects.list parameters the lab honours."""

    prefix: str = ""
    delimiter: str = ""
    max_results: int = MAX_RESULTS
    page_token: str | None = None
    start_offset: str = ""
    end_offset: str = ""


@dataclass
class Page:
    names: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    next_page_token: str | None = None


def encode_token(kind: str, value: str) -> str:
    """An opaque token; the kind matters because a prefix resumes after all its names."""
    raw = json.dumps([kind, value]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_token(token: str) -> tuple[str, str]:
    try:
        kind, value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError):
        raise InvalidArgument(f"Invalid pageToken {token!r}") from None
    if kind not in ("o", "p") or not isinstance(value, str):
        raise InvalidArgument(f"Invalid pageToken {token!r}")
    return kind, value


def paginate(names: list[str], query: ListQuery) -> Page:
    """One page over ``names`` (sorted). maxResults counts items and prefixes together,
    as GCS does, and a prefix is reported once even when it spans pages."""
    if query.max_results < 1:
        raise InvalidArgument("maxResults must be positive")
    after = decode_token(query.page_token) if query.page_token else None
    page = Page()
    last: tuple[str, str] | None = None
    start = bisect.bisect_left(names, max(query.prefix, query.start_offset))
    for name in names[start:]:
        if not name.startswith(query.prefix):
            break  # names sharing the prefix are contiguous once sorted
        if query.end_offset and name >= query.end_offset:
            break
        if after is not None and _already_listed(name, after):
            continue
        entry = ("o", name)
        if query.delimiter:
            cut = name.find(query.delimiter, len(query.prefix))
            if cut >= 0:
                entry = ("p", name[: cut + len(query.delimiter)])
        if entry[0] == "p" and page.prefixes and page.prefixes[-1] == entry[1]:
            continue
        if len(page.names) + len(page.prefixes) == query.max_results:
            assert last is not None
            page.next_page_token = encode_token(*last)
            break
        (page.prefixes if entry[0] == "p" else page.names).append(entry[1])
        last = entry
    return page


def _already_listed(name: str, after: tuple[str, str]) -> bool:
    kind, value = after
    return name <= value or (kind == "p" and name.startswith(value))
