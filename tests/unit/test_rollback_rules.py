"""Seed 004's rollback triggers, strategies and success criteria as decisions: each
trigger fires its own action at its threshold and stays quiet just under it."""

from __future__ import annotations

import pytest

from lifeboat.monitoring import ServiceMetrics
from lifeboat.rollback_rules import (
    Breach,
    chosen_action,
    find_breaches,
    judge_validation,
    windows,
)
from lifeboat.topology import (
    RollbackStrategies,
    RollbackStrategy,
    RollbackTriggers,
    RollbackValidation,
)
from tests.unit.builders import lab_topology

RULES = RollbackTriggers()
SERVICES = ["auth-service", "ai-service"]
TRAFFIC, SERVICE = RollbackStrategy.traffic, RollbackStrategy.service


def sample(window_s: float, **figures: ServiceMetrics) -> dict[float, dict[str, ServiceMetrics]]:
    """Every window quiet (healthy traffic) but ``window_s``, which shows ``figures``."""
    quiet = {name: ServiceMetrics(requests=1000) for name in SERVICES}
    out = {w: dict(quiet) for w in windows(RULES)}
    out[window_s] = {**quiet, **{k.replace("_", "-"): v for k, v in figures.items()}}
    return out


def breaches(
    failed: dict[str, int] | None = None,
    samples: dict[float, dict[str, ServiceMetrics]] | None = None,
) -> list[Breach]:
    return find_breaches(RULES, SERVICES, failed or {}, samples or sample(600))


def test_the_topology_defaults_are_the_seeds_numbers() -> None:
    rules = lab_topology().rollback_triggers
    assert (rules.health_check_failures, rules.health_check_window_s) == (3, 300)
    assert (rules.error_rate, rules.error_rate_window_s) == (0.05, 600)
    assert (rules.p95_latency_s, rules.p95_latency_window_s) == (5.0, 900)
    assert (rules.availability, rules.availability_window_s) == (0.99, 1800)
    assert [
        rules.health_check_action,
        rules.error_rate_action,
        rules.p95_latency_action,
        rules.availability_action,
    ] == [TRAFFIC, SERVICE, TRAFFIC, SERVICE]
    strategies = RollbackStrategies()
    assert (strategies.traffic.execution_s, strategies.traffic.validation_period_s) == (30, 300)
    assert (strategies.service.execution_s, strategies.service.validation_period_s) == (120, 600)
    criteria = RollbackValidation()
    assert (criteria.health_success_rate, criteria.error_rate, criteria.p95_latency_s) == (
        1.0,
        0.01,
        2.0,
    )
    assert criteria.journey_success_rate == 0.95
    assert [j.path for j in lab_topology().rollback_validation.journeys], "the lab's journeys"


def test_each_window_is_read_once() -> None:
    assert windows(RULES) == [600, 900, 1800]


def test_a_quiet_sample_crosses_nothing() -> None:
    assert breaches() == []


def test_health_check_failures_fire_a_traffic_rollback_at_three_not_at_two() -> None:
    [fired] = breaches({"auth-service": 3})
    assert (fired.service, fired.metric, fired.action) == (
        "auth-service",
        "health_check_failures",
        TRAFFIC,
    )
    assert (fired.value, fired.threshold, fired.window_s) == (3, 3, 300)
    assert fired.describe() == (
        "auth-service health_check_failures 3 ≥ 3 over 300 s → traffic rollback"
    )
    assert breaches({"auth-service": 2}) == []


def test_an_error_rate_over_5_percent_in_10_min_fires_a_service_rollback() -> None:
    over = sample(600, auth_service=ServiceMetrics(requests=1000, errors=51))
    [fired] = breaches(samples=over)
    assert (fired.metric, fired.action, fired.window_s) == ("error_rate", SERVICE, 600)
    assert fired.value == 0.051 and fired.threshold == 0.05
    assert "error_rate 0.051 > 0.05 over 600 s → service rollback" in fired.describe()
    # Exactly 5 % is not above it.
    assert (
        breaches(samples=sample(600, auth_service=ServiceMetrics(requests=1000, errors=50))) == []
    )


def test_a_p95_over_5_s_in_15_min_fires_a_traffic_rollback() -> None:
    [fired] = breaches(samples=sample(900, ai_service=ServiceMetrics(requests=100, p95_s=5.2)))
    assert (fired.service, fired.metric, fired.action, fired.window_s) == (
        "ai-service",
        "p95_latency_s",
        TRAFFIC,
        900,
    )
    assert breaches(samples=sample(900, ai_service=ServiceMetrics(requests=100, p95_s=4.99))) == []


def test_availability_under_99_percent_in_30_min_fires_a_service_rollback() -> None:
    # 1.1 % of 5xx over 30 min: under 99 % available, yet far under the 5 % error rate.
    [fired] = breaches(samples=sample(1800, auth_service=ServiceMetrics(requests=1000, errors=11)))
    assert (fired.metric, fired.action, fired.window_s) == ("availability", SERVICE, 1800)
    assert fired.value == 0.989 and fired.threshold == 0.99
    assert "availability 0.989 < 0.99 over 1800 s" in fired.describe()
    assert (
        breaches(samples=sample(1800, auth_service=ServiceMetrics(requests=1000, errors=10))) == []
    )


def test_too_few_requests_prove_nothing() -> None:
    few = sample(600, auth_service=ServiceMetrics(requests=19, errors=19))
    assert breaches(samples=few) == []


def test_each_trigger_reads_its_own_window() -> None:
    # Errors only in the 15-min window: the 10-min error-rate trigger does not see them.
    assert breaches(samples=sample(900, auth_service=ServiceMetrics(requests=100, errors=50))) == []


def test_a_topology_can_give_a_trigger_another_action() -> None:
    rules = RollbackTriggers(health_check_action=SERVICE)
    [fired] = find_breaches(rules, SERVICES, {"ai-service": 5}, sample(600))
    assert fired.action is SERVICE


def test_one_strategy_per_sample_the_service_rollback_wins() -> None:
    health = breaches({"auth-service": 3})
    storm = breaches(
        {"auth-service": 3},
        sample(600, auth_service=ServiceMetrics(requests=100, errors=100)),
    )
    assert [b.metric for b in storm] == ["health_check_failures", "error_rate"]
    assert chosen_action(health) == (TRAFFIC, health[0])
    strategy, decisive = chosen_action(storm)
    assert (strategy, decisive.metric) == (SERVICE, "error_rate")
    with pytest.raises(ValueError):
        chosen_action([])


CRITERIA = RollbackValidation()
HEALTHY = {"auth-service": ServiceMetrics(requests=100, errors=0, p95_s=0.2)}


def test_a_validation_passes_when_every_criterion_holds() -> None:
    verdict = judge_validation(CRITERIA, 300, 10, 10, HEALTHY, 15, 15)
    assert verdict.passed and verdict.failures() == []
    assert verdict.period_s == 300
    assert set(verdict.criteria) == {
        "health_success_rate",
        "error_rate",
        "p95_latency_s",
        "journeys",
    }


@pytest.mark.parametrize(
    ("checks", "metrics", "journeys", "failing"),
    [
        ((9, 10), HEALTHY, (15, 15), "health_success_rate"),
        ((10, 10), {"a": ServiceMetrics(requests=100, errors=1)}, (15, 15), "error_rate"),
        ((10, 10), {"a": ServiceMetrics(requests=100, p95_s=2.0)}, (15, 15), "p95_latency_s"),
        ((10, 10), HEALTHY, (19, 20), "journeys"),  # exactly 95 %: not above it
    ],
)
def test_a_validation_fails_on_any_criterion_just_over_its_bar(
    checks: tuple[int, int],
    metrics: dict[str, ServiceMetrics],
    journeys: tuple[int, int],
    failing: str,
) -> None:
    verdict = judge_validation(CRITERIA, 600, *checks, metrics, *journeys)
    assert not verdict.passed
    assert [name for name, c in verdict.criteria.items() if not c["passed"]] == [failing]
    assert verdict.failures()[0].startswith(failing)


def test_just_under_each_bar_passes() -> None:
    metrics = {"a": ServiceMetrics(requests=1000, errors=9, p95_s=1.99)}
    assert judge_validation(CRITERIA, 300, 10, 10, metrics, 20, 20).passed
    assert judge_validation(CRITERIA, 300, 10, 10, metrics, 0, 0).passed  # no journeys named


def test_no_check_probed_is_no_proof_of_health() -> None:
    assert not judge_validation(CRITERIA, 300, 0, 0, HEALTHY, 0, 0).passed
