"""Cloud Resource Manager v3 emulator: ``projects.testIamPermissions`` on the lab's projects."""

from __future__ import annotations

from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.http import build_app
from lab.resourcemanager.models import ResourceManagerBackend
from lab.resourcemanager.responses import ResourceManagerResponses

__all__ = ["ResourceManagerBackend", "create"]


def create(ctx: LabContext) -> tuple[ResourceManagerBackend, ASGIApp]:
    """Build the backend, register it as ``ctx.backends["resourcemanager"]``, wrap its routes."""
    backend = ResourceManagerBackend()
    ctx.backends["resourcemanager"] = backend
    return backend, build_app(ctx, "resourcemanager", ResourceManagerResponses(backend).routes())
