"""Cloud CDN: invalidate a url-map's cache, and read an invalidation's operation."""

from __future__ import annotations

import importlib
import threading

from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from tasks.retrying import calling, cloud_task


def cdn_import_ahead() -> None:
    """Start importing the Compute library on a thread, for a run that purges later.

    It takes about 2.5 s of CPU (its package loads every Compute service), and a
    recovery's purge comes after the DNS switch, inside the RTO; imported while the run
    reads its gates, it is ready by then. Importing a module twice at once is safe:
    Python's per-module import lock makes the second importer wait for the first.
    """
    threading.Thread(
        target=importlib.import_module,
        args=("google.cloud.compute_v1",),
        name="import-compute",
        daemon=True,
    ).start()


class Invalidation(BaseModel):
    url_map: str
    host: str
    path: str
    operation: str
    status: str


@cloud_task(timeout_seconds=120, task_run_name="cdn-invalidate-{path}")
def cdn_invalidate(environment: str, host: str, path: str, request_id: str) -> Invalidation:
    """Ask the url-map to purge ``path`` on ``host``; return without waiting for DONE.

    The purge takes effect in about 10 s but its operation stays RUNNING for minutes, so
    recovery waits for the effect (proved by verification), not for the operation.

    Idempotent: ``request_id`` makes Compute return the same operation for a repeat.
    """
    from google.cloud import compute_v1  # slow to import: only the run that purges pays

    topo = runtime.topology(environment)
    factory = runtime.clients(environment)
    with calling("cdn-invalidate", f"{topo.cdn.url_map} {host}{path}"):
        request = compute_v1.InvalidateCacheUrlMapRequest(
            project=topo.cdn.project,
            url_map=topo.cdn.url_map,
            request_id=request_id,
            cache_invalidation_rule_resource=compute_v1.CacheInvalidationRule(path=path, host=host),
        )
        op = factory.url_maps.invalidate_cache_unary(
            request=request, timeout=runtime.call_timeout(environment)
        )
    get_run_logger().info("CDN invalidation of %s%s: operation %s", host, path, op.name)
    return Invalidation(
        url_map=topo.cdn.url_map,
        host=host,
        path=path,
        operation=op.name,
        status=compute_v1.Operation.Status(op.status).name,
    )
