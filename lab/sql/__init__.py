"""Cloud SQL Admin v1 emulator (gRPC), backed by real PostgreSQL 15 clusters.

``create(ctx, port)`` starts the gRPC server on 127.0.0.1:port and registers the backend
as ``ctx.backends["sql"]``. Each instance is a real cluster on its own loopback address
(``ctx.settings.pg_address_prefix`` + N, N from 2 up) and port ``ctx.settings.pg_port``,
with its data under ``<root>/sql/<project>/<instance>``.
"""

from __future__ import annotations

from concurrent import futures

import grpc

from lab.core.context import LabContext
from lab.sql.models import Backend, SqlBackend
from lab.sql.service import generic_handlers

__all__ = ["Backend", "SqlBackend", "create"]


def create(ctx: LabContext, port: int) -> tuple[SqlBackend, grpc.Server]:
    """Start the Cloud SQL emulator; the caller stops the server and calls ``shutdown``."""
    backend = SqlBackend(ctx)
    # Enough workers that clients polling operations never queue behind each other.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="lab-sql"))
    server.add_generic_rpc_handlers(generic_handlers(ctx, backend))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise RuntimeError(f"Cloud SQL emulator cannot bind 127.0.0.1:{port}")
    server.start()
    ctx.backends["sql"] = backend
    return backend, server
