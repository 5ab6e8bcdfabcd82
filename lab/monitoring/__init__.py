"""Cloud Monitoring v3 emulator: Cloud Run's request metrics as time series."""

from __future__ import annotations

from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.http import build_app
from lab.monitoring.models import MonitoringBackend
from lab.monitoring.responses import MonitoringResponses
from lab.regions.metrics import RequestMetrics

__all__ = ["MonitoringBackend", "create"]


def create(ctx: LabContext) -> tuple[MonitoringBackend, ASGIApp]:
    """Build the backend over the region apps' one sample store, wrap its routes."""
    store: RequestMetrics = ctx.backends.setdefault("metrics", RequestMetrics())
    backend = MonitoringBackend(ctx, store.samples)
    ctx.backends["monitoring"] = backend
    return backend, build_app(ctx, "monitoring", MonitoringResponses(backend).routes())
