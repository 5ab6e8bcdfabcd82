"""Health checks over real HTTP: through the public path, or straight at one region.

Two sets of checks, one way of probing: the environment-wide checks (``health.checks``),
and each service's own (``services[].checks``), which a rollback verifies for the
service it moved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

import httpx
from prefect import get_run_logger
from pydantic import BaseModel

from lifeboat import runtime
from lifeboat.endpoints import resolve
from lifeboat.topology import RegionRole, Topology
from tasks.errors import BudgetExhausted, PermanentError, TransientError
from tasks.polling import wait_until
from tasks.probe_tls import tls_extensions, trust
from tasks.retrying import cloud_task

# The verify steps poll for the topology's ``health.verify_timeout_s``, which may be set up
# to 3600 s (lifeboat/topology.py); their declared budget must hold the longest poll a
# valid topology asks for, plus 300 s for the probe round in flight when it ends. (It was
# 900 s, unenforced; enforced, it would cut short a verify the topology allows.)
VERIFY_BUDGET_S = 3600 + 300


class Target(StrEnum):
    public = "public"  # what users reach: DNS → CDN → region
    primary = "primary"
    secondary = "secondary"


class CheckResult(BaseModel):
    path: str
    status: int | None
    ok: bool
    region: str | None = None
    error: str | None = None
    elapsed_ms: float


class HealthReport(BaseModel):
    target: Target
    checks: list[CheckResult]

    @property
    def failed(self) -> int:
        return sum(not c.ok for c in self.checks)

    @property
    def all_ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        return ", ".join(f"{c.path}={c.status or c.error}" for c in self.checks)


def base_url(topo: Topology, target: Target) -> str:
    """Where to connect; the lab's names (lab:front_door) resolve through its endpoints."""
    health = topo.health
    connect = (
        health.connect_to
        if target is Target.public
        else health.regional_connect_to.get(RegionRole(target.value))
    )
    if connect is None:
        if target is not Target.public:
            raise PermanentError(
                f"health: no regional_connect_to for {target.value} in the topology"
            )
        return f"{health.scheme}://{health.host}"
    if connect.startswith("lab:"):
        return _lab_url(topo, connect.removeprefix("lab:"))
    return f"{health.scheme}://{connect}"


def _lab_url(topo: Topology, name: str) -> str:
    """The lab listener for ``name``, on the topology's scheme (the lab serves both)."""
    endpoints = resolve(topo.endpoints)
    https = topo.health.scheme == "https"
    front_door = endpoints.front_door_https if https else endpoints.front_door
    regions = endpoints.region_apps_https if https else endpoints.region_apps
    if name == "front_door" and front_door:
        return front_door
    if name.startswith("region/") and name.removeprefix("region/") in regions:
        return regions[name.removeprefix("region/")]
    raise PermanentError(f"health: the lab has no {topo.health.scheme} endpoint {name!r}")


def probe_client(topo: Topology) -> httpx.Client:
    """One client for a round of probes: the public Host header, the topology's trust."""
    return httpx.Client(
        timeout=topo.health.timeout_s, headers={"host": topo.health.host}, verify=trust(topo)
    )


def probe_get(client: httpx.Client, url: str, host: str) -> httpx.Response:
    return client.get(url, extensions=tls_extensions(url, host))


def _served_region(response: httpx.Response) -> str | None:
    """The region the app says served this reply (the seeds' apps put it in the body)."""
    try:
        body = response.json()
    except ValueError:
        return None
    region = body.get("region") if isinstance(body, dict) else None
    return str(region) if region else None


def probe_paths(environment: str, target: Target, checks: list[tuple[str, int]]) -> HealthReport:
    """One GET of each ``(path, expected status)`` against ``target``, in order."""
    topo = runtime.topology(environment)
    base = base_url(topo, target)
    results = []
    with probe_client(topo) as client:
        for path, expected in checks:
            started = time.perf_counter()
            try:
                response = probe_get(client, base + path, topo.health.host)
                results.append(
                    CheckResult(
                        path=path,
                        status=response.status_code,
                        ok=response.status_code == expected,
                        region=_served_region(response),
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


def probe(environment: str, target: Target) -> HealthReport:
    """The environment-wide checks (topology ``health.checks``)."""
    checks = runtime.topology(environment).health.checks
    return probe_paths(environment, target, [(c.path, c.expected_status) for c in checks])


def probe_service(environment: str, target: Target, service: str) -> HealthReport:
    """One service's own checks (topology ``services[].checks``; seed 004: /auth/status for
    auth-service, ...): a rollback verifies only the service it moved."""
    paths = runtime.topology(environment).service(service).checks
    return probe_paths(environment, target, [(path, 200) for path in paths])


def poll_until_passing(
    probe_once: Callable[[], HealthReport],
    timeout_s: float,
    what: str,
    accept: Callable[[HealthReport], bool] = lambda report: report.all_ok,
) -> HealthReport:
    """Probe until ``accept`` says the report passes; fail after ``timeout_s`` with the
    last report's summary. Bounded: ``wait_until`` backs off and gives up at the deadline."""
    last: list[HealthReport] = []

    def passing() -> HealthReport | None:
        report = probe_once()
        last.append(report)
        return report if accept(report) else None

    try:
        report = wait_until(passing, timeout=timeout_s, interval=(0.05, 1.0), what=what)
    except BudgetExhausted:
        raise  # it names the step's budget, which is what ran out
    except TransientError as exc:
        summary = last[-1].summary() if last else "no probe ran"
        raise TransientError(
            f"verify: {what} did not pass within {timeout_s:.0f} s: {summary}"
        ) from exc
    get_run_logger().info("verified %s after %d probe(s): %s", what, len(last), report.summary())
    return report


@cloud_task(timeout_seconds=120, retries=2, task_run_name="health-probe-{target}")
def health_probe(environment: str, target: Target) -> HealthReport:
    """Run every health check once against ``target`` and report each result.

    Idempotent: a read.
    """
    report = probe(environment, target)
    get_run_logger().info("health %s: %s", target.value, report.summary())
    return report


@cloud_task(timeout_seconds=VERIFY_BUDGET_S, retries=1, task_run_name="verify-{target}")
def health_verify(
    environment: str, target: Target, timeout_s: float, expect_region: str | None = None
) -> HealthReport:
    """Poll the checks until all pass (and reach ``expect_region``), or fail after timeout.

    Idempotent: a read.
    """

    def accept(report: HealthReport) -> bool:
        wrong_region = expect_region is not None and any(
            c.region not in (None, expect_region) for c in report.checks
        )
        return report.all_ok and not wrong_region

    return poll_until_passing(
        lambda: probe(environment, target), timeout_s, f"{target.value} checks", accept
    )


# The same poll as health_verify's, for the same topology setting: the same budget.
@cloud_task(timeout_seconds=VERIFY_BUDGET_S, retries=0, task_run_name="checks-{service}-{target}")
def health_verify_service(
    environment: str, target: Target, service: str, timeout_s: float
) -> HealthReport:
    """Poll the service's own checks until all pass, or fail after ``timeout_s``.

    Idempotent: a read.
    """
    return poll_until_passing(
        lambda: probe_service(environment, target, service),
        timeout_s,
        f"{service} checks on {target.value}",
    )


@cloud_task(timeout_seconds=120, retries=1, task_run_name="health-failures-{target}")
def health_count_failures(environment: str, target: Target, rounds: int) -> dict[str, int]:
    """Probe each service's own checks ``rounds`` times in a row; count the failures.

    The watch's health-check trigger reads this, not Cloud Monitoring: Cloud Run's
    request metrics carry no path, so they cannot tell a failed check from other traffic
    (tasks/metrics.py says why uptime checks are not used either). The watch keeps no
    memory between its one-minute runs, so "N failures in the window" is read as N
    failed probes now, in a row: a check that fails ``rounds`` times in a row counts
    ``rounds``; one that fails once, once.

    Args:
        environment: the topology to use.
        target: the region to probe (where users are served).
        rounds: probe rounds, one after the other.

    Returns:
        Service name → failed probes of its checks over all rounds.

    Idempotent: a read.
    """
    services = [s.name for s in runtime.topology(environment).services]
    failures = dict.fromkeys(services, 0)
    for _ in range(rounds):
        for name in services:
            failures[name] += probe_service(environment, target, name).failed
    get_run_logger().info(
        "health %s over %d round(s): %s",
        target.value,
        rounds,
        ", ".join(f"{name}={count}" for name, count in failures.items()),
    )
    return failures


class RoundsTally(BaseModel):
    """What a validation period's probe rounds saw: passes out of probes, per kind."""

    checks_passed: int = 0
    checks_run: int = 0
    journeys_passed: int = 0
    journeys_run: int = 0
    failures: list[str] = []  # "path → status", the first few, for the record


# A validation period may last as long as a valid topology allows (lifeboat/topology.py
# StrategyBudget: at most 3600 s), plus a last round in flight.
ROUNDS_BUDGET_S = 3600 + 300


@cloud_task(timeout_seconds=ROUNDS_BUDGET_S, retries=0, task_run_name="validate-{target}")
def health_probe_rounds(
    environment: str,
    target: Target,
    services: list[str],
    journeys: list[tuple[str, int]],
    rounds: int,
    interval_s: float,
) -> RoundsTally:
    """Probe the services' own checks and the user journeys ``rounds`` times, one round
    every ``interval_s`` (the first at once): a rollback's validation period.

    Args:
        environment: the topology to use.
        target: the region rolled back.
        services: whose checks (topology ``services[].checks``) to probe.
        journeys: (path, expected status) of the user-journey smoke checks.
        rounds: how many rounds over the period.
        interval_s: wall seconds between two rounds.

    Returns:
        Passed and run probes of each kind, and the first failures.

    Idempotent: a read.
    """
    tally = RoundsTally()
    for index in range(rounds):
        if index:
            time.sleep(interval_s)
        for service in services:
            report = probe_service(environment, target, service)
            tally.checks_run += len(report.checks)
            tally.checks_passed += len(report.checks) - report.failed
            tally.failures += [f"{c.path} → {c.status}" for c in report.checks if not c.ok]
        if journeys:
            report = probe_paths(environment, target, journeys)
            tally.journeys_run += len(report.checks)
            tally.journeys_passed += len(report.checks) - report.failed
            tally.failures += [f"journey {c.path} → {c.status}" for c in report.checks if not c.ok]
    tally.failures = tally.failures[:10]
    get_run_logger().info(
        "validation rounds on %s: checks %d/%d, journeys %d/%d",
        target.value,
        tally.checks_passed,
        tally.checks_run,
        tally.journeys_passed,
        tally.journeys_run,
    )
    return tally
