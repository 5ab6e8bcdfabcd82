"""Cloud Run Admin API v2 emulator (REST), for ``run_v2.ServicesClient(transport="rest")``."""

from __future__ import annotations

from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.http import build_app
from lab.run.models import RunBackend
from lab.run.responses import routes

__all__ = ["RunBackend", "create"]


def create(ctx: LabContext) -> tuple[RunBackend, ASGIApp]:
    """The backend (registered as ``ctx.backends["run"]``) and its ASGI app."""
    backend = RunBackend(ctx)
    ctx.backends["run"] = backend
    return backend, build_app(ctx, "run", routes(backend))
