"""Cloud Storage JSON API emulator (api name "storage") for the real google-cloud-storage
client: buckets, objects with generations and preconditions, media and resumable
uploads, ranged downloads. Object data lives on disk under ``<lab root>/storage``."""

from __future__ import annotations

from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.http import build_app
from lab.storage.models import StorageBackend
from lab.storage.responses import StorageResponses

__all__ = ["StorageBackend", "create"]


def create(ctx: LabContext) -> tuple[StorageBackend, ASGIApp]:
    """Build the backend, register it as ``ctx.backends["storage"]``, and return it with
    the ASGI app to serve."""
    backend = StorageBackend(ctx.settings.root / "storage", ctx.settings.url("storage"))
    ctx.backends["storage"] = backend
    return backend, build_app(
        ctx, "storage", StorageResponses(backend, ctx.settings.page_cap).routes()
    )
