"""Compute Engine emulator: url maps and the backend services they name (get, list), url-map
cache invalidation and the global operations it starts, also reachable through the batch
endpoint ``POST /batch/compute/v1`` that gcloud uses."""

from __future__ import annotations

from starlette.routing import Route
from starlette.types import ASGIApp

from lab.compute.models import ComputeBackend
from lab.compute.responses import ComputeResponses
from lab.core.batch import BatchEndpoint
from lab.core.context import LabContext
from lab.core.http import build_app

__all__ = ["ComputeBackend", "create"]


def create(ctx: LabContext) -> tuple[ComputeBackend, ASGIApp]:
    """Build the backend, register it as ``ctx.backends["compute"]`` and wrap its routes."""
    backend = ComputeBackend(ctx)
    ctx.backends["compute"] = backend
    # batchPath "batch/compute/v1" in the compute v1 discovery document.
    batch = BatchEndpoint("/compute/v1/")
    routes = [Route("/batch/compute/v1", batch.handle, methods=["POST"])]
    app = build_app(ctx, "compute", routes + ComputeResponses(backend).routes())
    batch.target = app  # each part goes through the whole app: logged and faulted alone
    return backend, app
