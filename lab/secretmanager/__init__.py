"""Secret Manager v1 emulator: secrets, versions, the ``latest`` alias, replication."""

from __future__ import annotations

from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.http import build_app
from lab.secretmanager.models import SecretManagerBackend
from lab.secretmanager.responses import SecretManagerResponses

__all__ = ["SecretManagerBackend", "create"]


def create(ctx: LabContext) -> tuple[SecretManagerBackend, ASGIApp]:
    """Build the backend, register it as ``ctx.backends["secretmanager"]``, wrap its routes."""
    backend = SecretManagerBackend(ctx)
    ctx.backends["secretmanager"] = backend
    return backend, build_app(ctx, "secretmanager", SecretManagerResponses(backend).routes())
