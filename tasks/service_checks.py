"""One service's own checks (topology ``services[].checks``) over real HTTP, straight at a region.

The environment-wide checks live in tasks/health.py; a rollback verifies only the
service it moved, with the paths that service declares (seed 004: /auth/status for
auth-service, /ai/status for ai-service, ...).
"""

from __future__ import annotations

import time

import httpx
from prefect import get_run_logger

from lifeboat import runtime
from tasks.errors import TransientError
from tasks.health import (
    VERIFY_BUDGET_S,
    CheckResult,
    HealthReport,
    Target,
    base_url,
    probe_client,
    probe_get,
)
from tasks.polling import wait_until
from tasks.retrying import cloud_task


def probe_service(environment: str, target: Target, service: str) -> HealthReport:
    topo = runtime.topology(environment)
    base = base_url(topo, target)
    results = []
    with probe_client(topo) as client:
        for path in topo.service(service).checks:
            started = time.perf_counter()
            try:
                response = probe_get(client, base + path, topo.health.host)
                results.append(
                    CheckResult(
                        path=path,
                        status=response.status_code,
                        ok=response.status_code == 200,
                        elapsed_ms=(time.perf_counter() - started) * 1000,
                    )
                )
            except httpx.HTTPError as exc:
                results.append(
                    CheckResult(
                        path=path,
                        status=None,
                        ok=False,
                        error=type(exc).__name__,
                        elapsed_ms=(time.perf_counter() - started) * 1000,
                    )
                )
    return HealthReport(target=target, checks=results)


# The same poll as health_verify's, for the same topology setting: the same budget.
@cloud_task(timeout_seconds=VERIFY_BUDGET_S, retries=0, task_run_name="checks-{service}-{target}")
def health_verify_service(
    environment: str, target: Target, service: str, timeout_s: float
) -> HealthReport:
    """Poll the service's own checks until all pass, or fail after ``timeout_s``.

    Bounded: ``wait_until`` backs off between probes and gives up at the deadline.

    Idempotent: a read.
    """
    last: list[HealthReport] = []

    def passing() -> HealthReport | None:
        report = probe_service(environment, target, service)
        last.append(report)
        return report if report.all_ok else None

    try:
        report = wait_until(
            passing, timeout=timeout_s, interval=(0.05, 1.0), what=f"{service} checks"
        )
    except TransientError as exc:
        summary = last[-1].summary() if last else "no probe ran"
        raise TransientError(
            f"verify {service}: checks on {target.value} did not pass within "
            f"{timeout_s:.0f} s: {summary}"
        ) from exc
    get_run_logger().info(
        "verified %s on %s after %d probe(s): %s",
        service,
        target.value,
        len(last),
        report.summary(),
    )
    return report
