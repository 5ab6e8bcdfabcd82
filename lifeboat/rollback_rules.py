"""Which rollback trigger fired, which strategy it calls for, and whether a rollback held.

Seed 004's ``rollback-config.yaml`` as decisions, pure (no client, no Prefect), so that the
unit tier can put every threshold on both of its sides:

- ``find_breaches``: the watch's sample against ``automatic_triggers``, each trigger on its
  own window (health failures 5 min, error rate 10 min, p95 15 min, availability 30 min);
- ``chosen_action``: the one strategy an automatic rollback runs;
- ``judge_validation``: the validation period's figures against ``success_criteria``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel

from lifeboat.monitoring import ServiceMetrics
from lifeboat.topology import RollbackStrategy, RollbackTriggers, RollbackValidation

TriggerName = Literal["health_check_failures", "error_rate", "p95_latency_s", "availability"]
# The seed's order; it is also the order breaches are listed in.
TRIGGERS: tuple[TriggerName, ...] = (
    "health_check_failures",
    "error_rate",
    "p95_latency_s",
    "availability",
)


class Breach(BaseModel):
    """One trigger crossed by one service: the figure, against its threshold, and the
    strategy the topology gives that trigger."""

    service: str
    metric: TriggerName
    value: float
    threshold: float
    comparison: Literal["≥", ">", "<"]
    window_s: float
    action: RollbackStrategy

    def describe(self) -> str:
        return (
            f"{self.service} {self.metric} {self.value:g} {self.comparison} "
            f"{self.threshold:g} over {self.window_s:.0f} s → {self.action.value} rollback"
        )


def windows(rules: RollbackTriggers) -> list[float]:
    """The Monitoring windows the triggers need, each read once."""
    return sorted(
        {rules.error_rate_window_s, rules.p95_latency_window_s, rules.availability_window_s}
    )


def find_breaches(
    rules: RollbackTriggers,
    services: list[str],
    failed_checks: Mapping[str, int],
    samples: Mapping[float, Mapping[str, ServiceMetrics]],
) -> list[Breach]:
    """Every trigger each service crosses, in service then trigger order.

    ``samples`` is window (s) → service → its figures over that window. A service with
    fewer than ``min_requests`` requests in a window proves nothing there: its rates and
    p95 are not judged (a health check failure needs no traffic).
    """
    found: list[Breach] = []
    for service in services:
        failures = failed_checks.get(service, 0)
        if failures >= rules.health_check_failures:
            found.append(
                Breach(
                    service=service,
                    metric="health_check_failures",
                    value=failures,
                    threshold=rules.health_check_failures,
                    comparison="≥",
                    window_s=rules.health_check_window_s,
                    action=rules.health_check_action,
                )
            )
        errors = _enough(rules, samples, rules.error_rate_window_s, service)
        if errors is not None and errors.error_rate > rules.error_rate:
            found.append(
                Breach(
                    service=service,
                    metric="error_rate",
                    value=round(errors.error_rate, 4),
                    threshold=rules.error_rate,
                    comparison=">",
                    window_s=rules.error_rate_window_s,
                    action=rules.error_rate_action,
                )
            )
        latency = _enough(rules, samples, rules.p95_latency_window_s, service)
        if latency is not None and latency.p95_s > rules.p95_latency_s:
            found.append(
                Breach(
                    service=service,
                    metric="p95_latency_s",
                    value=round(latency.p95_s, 3),
                    threshold=rules.p95_latency_s,
                    comparison=">",
                    window_s=rules.p95_latency_window_s,
                    action=rules.p95_latency_action,
                )
            )
        served = _enough(rules, samples, rules.availability_window_s, service)
        if served is not None and served.availability < rules.availability:
            found.append(
                Breach(
                    service=service,
                    metric="availability",
                    value=round(served.availability, 4),
                    threshold=rules.availability,
                    comparison="<",
                    window_s=rules.availability_window_s,
                    action=rules.availability_action,
                )
            )
    return found


def _enough(
    rules: RollbackTriggers,
    samples: Mapping[float, Mapping[str, ServiceMetrics]],
    window_s: float,
    service: str,
) -> ServiceMetrics | None:
    figures = samples.get(window_s, {}).get(service)
    if figures is None or figures.requests < rules.min_requests:
        return None
    return figures


def chosen_action(breaches: list[Breach]) -> tuple[RollbackStrategy, Breach]:
    """The strategy one automatic rollback runs, and the breach that decided it.

    A sample can cross triggers that call for different strategies (an error storm fails
    the health checks too). One rollback runs per sample (the automation fires once per
    minimum delay), so the service rollback wins over the traffic one: a breach that asks
    for it says the release itself is bad, and only the previous image is sure to leave
    it, while the blue/green partner may run the same release. Among breaches of the
    winning strategy, the first in the seed's trigger order names the run.

    Raises:
        ValueError: no breach (the watch emits nothing then).
    """
    if not breaches:
        raise ValueError("no breach to act on")
    order = {name: index for index, name in enumerate(TRIGGERS)}
    for strategy in (RollbackStrategy.service, RollbackStrategy.traffic):
        calling = [b for b in breaches if b.action is strategy]
        if calling:
            return strategy, min(calling, key=lambda b: order[b.metric])
    raise AssertionError("a breach with a strategy of neither kind")  # pragma: no cover


class Validation(BaseModel):
    """The record's ``validation``: what the period saw against seed 004's criteria."""

    period_s: float
    criteria: dict[str, dict[str, float | str | bool]]
    passed: bool

    def failures(self) -> list[str]:
        return [
            f"{name} {c['value']} (must be {c['comparison']} {c['threshold']})"
            for name, c in self.criteria.items()
            if not c["passed"]
        ]


def judge_validation(
    criteria: RollbackValidation,
    period_s: float,
    checks_passed: int,
    checks_run: int,
    metrics: Mapping[str, ServiceMetrics],
    journeys_passed: int,
    journeys_run: int,
) -> Validation:
    """The period's figures against the success criteria; all must hold to pass.

    ``metrics`` holds the moved services' figures over the period. Error rate and p95 are
    the worst of them (every service must meet the bar). No journey configured: the
    journeys criterion holds (there is nothing a user was promised).
    """
    health = checks_passed / checks_run if checks_run else 0.0
    error_rate = max((m.error_rate for m in metrics.values()), default=0.0)
    p95 = max((m.p95_s for m in metrics.values()), default=0.0)
    journeys = journeys_passed / journeys_run if journeys_run else 1.0
    judged: dict[str, dict[str, float | str | bool]] = {
        "health_success_rate": _criterion(
            round(health, 4),
            "≥",
            criteria.health_success_rate,
            health >= criteria.health_success_rate,
        ),
        "error_rate": _criterion(
            round(error_rate, 4), "<", criteria.error_rate, error_rate < criteria.error_rate
        ),
        "p95_latency_s": _criterion(
            round(p95, 3), "<", criteria.p95_latency_s, p95 < criteria.p95_latency_s
        ),
        "journeys": _criterion(
            round(journeys, 4),
            ">" if journeys_run else "≥",
            criteria.journey_success_rate,
            journeys > criteria.journey_success_rate if journeys_run else True,
        ),
    }
    return Validation(
        period_s=period_s,
        criteria=judged,
        passed=all(bool(c["passed"]) for c in judged.values()),
    )


def _criterion(
    value: float, comparison: str, threshold: float, passed: bool
) -> dict[str, float | str | bool]:
    return {"value": value, "comparison": comparison, "threshold": threshold, "passed": passed}
