"""Compute Engine emulator: url-map cache invalidation and the global operations it starts."""

from __future__ import annotations

from starlette.types import ASGIApp

from lab.compute.models import ComputeBackend
from lab.compute.responses import ComputeResponses
from lab.core.context import LabContext
from lab.core.http import build_app

__all__ = ["ComputeBackend", "create"]


def create(ctx: LabContext) -> tuple[ComputeBackend, ASGIApp]:
    """Build the backend, register it as ``ctx.backends["compute"]`` and wrap its routes."""
    backend = ComputeBackend(ctx)
    ctx.backends["compute"] = backend
    return backend, build_app(ctx, "compute", ComputeResponses(backend).routes())
