"""Cloud CDN: invalidate a url-map's cache."""

from __future__ import annotations

from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from tasks.retrying import calling, cloud_task


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
    topo = runtime.topology(environment)
    compute = runtime.clients(environment).compute
    with calling("cdn-invalidate", f"{topo.cdn.url_map} {host}{path}"):
        op = compute.call(
            lambda service: service.urlMaps().invalidateCache(
                project=topo.cdn.project,
                urlMap=topo.cdn.url_map,
                requestId=request_id,
                body={"path": path, "host": host},
            ),
            timeout=runtime.call_timeout(environment),
        )
    get_run_logger().info("CDN invalidation of %s%s: operation %s", host, path, op["name"])
    return Invalidation(
        url_map=topo.cdn.url_map, host=host, path=path, operation=op["name"], status=op["status"]
    )
