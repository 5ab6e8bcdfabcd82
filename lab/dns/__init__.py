"""Cloud DNS v1 emulator: managed zones, record sets and changes that finish after a delay."""

from __future__ import annotations

from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.http import build_app
from lab.dns.models import DnsBackend
from lab.dns.responses import DnsResponses

__all__ = ["DnsBackend", "create"]


def create(ctx: LabContext) -> tuple[DnsBackend, ASGIApp]:
    """Build the backend, register it as ``ctx.backends["dns"]`` and wrap its routes."""
    backend = DnsBackend(ctx)
    ctx.backends["dns"] = backend
    return backend, build_app(ctx, "dns", DnsResponses(backend).routes())
