"""Cloud SQL Admin v1 emulator (REST, as Google serves it), backed by real PostgreSQL 15.

``create(ctx)`` registers the backend as ``ctx.backends["sql"]`` and returns it with its
ASGI app. Each instance is a real cluster on its own loopback address
(``ctx.settings.pg_address_prefix`` + N, N from 2 up) and port ``ctx.settings.pg_port``,
with its data under ``<root>/sql/<project>/<instance>``.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from lab.core.context import LabContext
from lab.core.http import build_app
from lab.sql.models import Backend, SqlBackend
from lab.sql.responses import SqlResponses

__all__ = ["Backend", "SqlBackend", "create"]


def create(ctx: LabContext) -> tuple[SqlBackend, ASGIApp]:
    """The Cloud SQL backend and its app; the caller serves it and calls ``shutdown``."""
    backend = SqlBackend(ctx)
    ctx.backends["sql"] = backend
    return backend, build_app(ctx, "sql", SqlResponses(backend).routes())
