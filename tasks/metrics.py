"""Request metrics per service: counts, 5xx, failed checks and p95 latency over a window.

In production this is Cloud Monitoring's run.googleapis.com/request_count and
request_latencies; the lab serves the same figures at its control API's /_lab/metrics.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.endpoints import resolve
from tasks.errors import PermanentError
from tasks.retrying import calling, cloud_task


class PathCounts(BaseModel):
    requests: int = 0
    failures: int = 0


class ServiceMetrics(BaseModel):
    requests: int = 0
    errors: int = 0
    p95_s: float = 0.0
    paths: dict[str, PathCounts] = {}

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def failures_on(self, paths: list[str]) -> int:
        return sum(self.paths[p].failures for p in paths if p in self.paths)


@cloud_task(timeout_seconds=60, retries=2, task_run_name="metrics-{region}-{window_s}s")
def metrics_sample_services(
    environment: str, region: str, window_s: float
) -> dict[str, ServiceMetrics]:
    """Per-service request metrics of one region over the last ``window_s`` seconds.

    Args:
        environment: the topology to use.
        region: the region whose services are sampled.
        window_s: how far back to look.

    Returns:
        Service name → its metrics; a service with no traffic is absent.

    Idempotent: a read.
    """
    endpoints = resolve(runtime.topology(environment).endpoints)
    if endpoints.control is None:
        raise PermanentError(
            "metrics: this environment has no metrics source; Cloud Monitoring is not wired yet"
        )
    url = f"{endpoints.control}/_lab/metrics"
    with calling("sample-metrics", f"{region} {window_s:.0f}s"):
        response = httpx.get(
            url,
            params={"region": region, "window_s": window_s},
            timeout=runtime.call_timeout(environment),
        )
        response.raise_for_status()
    services = response.json().get("services", {})
    return {name: ServiceMetrics.model_validate(body) for name, body in services.items()}
