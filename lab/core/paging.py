"""Page tokens for list calls: an opaque offset, as good as Google's for a static list."""

from __future__ import annotations

import base64
from typing import TypeVar

from lab.core.errors import BadRequest

T = TypeVar("T")


def paginate(
    items: list[T], page_size: int, page_token: str, *, default: int = 100, maximum: int = 1000
) -> tuple[list[T], str]:
    """One page of ``items`` and the token of the next page ("" on the last page)."""
    if page_size < 0:
        raise BadRequest(f"pageSize must not be negative, got {page_size}")
    size = min(page_size or default, maximum)
    start = _decode(page_token) if page_token else 0
    end = start + size
    next_token = _encode(end) if end < len(items) else ""
    return items[start:end], next_token


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode(token: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "offset":
            raise ValueError(kind)
        return max(int(value), 0)
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise BadRequest(f"pageToken {token!r} is not valid") from exc
