"""The decisions that stop or pause a region switch: the failover's approval reasons (the
RPO gate included) and the failback's health gate, from states as preflight reads them,
with the plan of its repairs of what a killed run left."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.failback_gate import gate_plan_line, is_down, unrolled_readers
from flows.failover import Preflight, _approval_markdown
from flows.left_state import LeftState, Repoint
from lifeboat.record import RunRecord
from lifeboat.topology import Tier
from tasks.cloud_run_secrets import ReaderState
from tasks.cloud_sql import ReplicaLag
from tasks.dns import RecordState
from tasks.errors import PermanentError
from tasks.health import CheckResult, HealthReport, Target
from tests.unit.builders import lab_topology, reader_state, service_state

PATHS = ["/health", "/auth/status", "/ai/status", "/recommendations/status", "/version"]
VERSION = "projects/431020984712/secrets/prod-database-url/versions/7"


def health(failing: int, target: Target = Target.primary) -> HealthReport:
    """A probe of the lab's five checks whose first ``failing`` ones failed."""
    return HealthReport(
        target=target,
        checks=[
            CheckResult(path=path, status=None, ok=False, error="ConnectError", elapsed_ms=3.0)
            if index < failing
            else CheckResult(path=path, status=200, ok=True, region="us-central1", elapsed_ms=3.0)
            for index, path in enumerate(PATHS)
        ],
    )


def lag(seconds: float, size: int = 4096) -> ReplicaLag:
    return ReplicaLag(
        seconds=seconds,
        bytes=size,
        measured_at=datetime(2026, 12, 4, tzinfo=UTC),
        source="pg_stat_replication",
    )


def preflight(primary: HealthReport | None, replica_lag: ReplicaLag) -> Preflight:
    services = [service_state("auth-service", service_scaling=(0, 10))]
    record = RecordState(name="api.varai.ai.", type="A", ttl=300, rrdatas=["34.120.10.10"])
    return Preflight(primary, services, "READ_REPLICA_INSTANCE", "RUNNABLE", replica_lag, record)


RPO_S = lab_topology().objectives[Tier.critical].rpo_minutes * 60.0


def test_the_critical_rpo_of_the_lab_is_five_minutes() -> None:
    assert RPO_S == 300.0


def test_a_failover_from_a_down_primary_within_the_rpo_needs_no_approval() -> None:
    topo = lab_topology()  # down: 2 of the 5 checks failing (the default)
    assert topo.health.down_after_failures == 2
    pre = preflight(health(failing=2), lag(12.4))
    assert pre.primary_down(topo) is True
    assert pre.approval_reasons(RPO_S, topo) == []


def test_an_ungraceful_failover_that_did_not_probe_counts_the_primary_as_down() -> None:
    topo = lab_topology()
    pre = preflight(None, lag(0.0))
    assert pre.primary_down(topo) is True
    assert pre.approval_reasons(RPO_S, topo) == []
    assert pre.summary() == (
        "primary: skipped (ungraceful); replica READ_REPLICA_INSTANCE RUNNABLE; lag 0.0 s / 4096 B"
    )


def test_a_primary_below_the_down_threshold_looks_healthy_and_needs_approval() -> None:
    topo = lab_topology()
    pre = preflight(health(failing=1), lag(1.0))
    assert pre.primary_down(topo) is False
    assert pre.approval_reasons(RPO_S, topo) == ["the primary looks healthy (1 failed check(s))"]
    assert pre.summary() == (
        "primary: 1 failed check(s); replica READ_REPLICA_INSTANCE RUNNABLE; lag 1.0 s / 4096 B"
    )


@pytest.mark.parametrize(
    ("seconds", "reasons"),
    [
        (300.0, []),  # at the RPO: within it
        (300.4, ["replica lag 300 s exceeds the critical RPO 300 s"]),
        (1234.5, ["replica lag 1234 s exceeds the critical RPO 300 s"]),
    ],
    ids=["at-the-rpo", "just-over", "far-over"],
)
def test_the_rpo_gate_asks_for_approval_only_beyond_the_critical_rpo(
    seconds: float, reasons: list[str]
) -> None:
    pre = preflight(health(failing=5), lag(seconds))
    assert pre.approval_reasons(RPO_S, lab_topology()) == reasons


def test_a_healthy_primary_and_a_lagging_replica_give_both_reasons() -> None:
    pre = preflight(health(failing=0), lag(900.0))
    assert pre.approval_reasons(RPO_S, lab_topology()) == [
        "the primary looks healthy (0 failed check(s))",
        "replica lag 900 s exceeds the critical RPO 300 s",
    ]


def test_the_approval_page_says_why_what_is_at_risk_and_what_will_change() -> None:
    record = RunRecord(
        flow="failover",
        environment="lab",
        incident_id="INC-2041",
        reason="us-central1 down",
        trigger="deployment failover/lab",
        operator="oncall@varai.ai",
        lag={"seconds": 912.25, "bytes": 1048576},
        plan=["promote ml-datadriven-recos:varai-db-secondary (read replica → primary)"],
    )
    page = _approval_markdown(record, ["replica lag 912 s exceeds the critical RPO 300 s"])
    assert page == "\n".join(
        [
            "## Approve failover of `lab`?",
            "Incident **INC-2041**: us-central1 down",
            "",
            "Approval is needed because:",
            "- replica lag 912 s exceeds the critical RPO 300 s",
            "",
            "Estimated data at risk: **912.2 s** (1048576 bytes of WAL).",
            "",
            "Planned changes:",
            "- promote ml-datadriven-recos:varai-db-secondary (read replica → primary)",
        ]
    )


def test_the_failback_gate_counts_the_region_down_from_the_topologys_threshold() -> None:
    topo = lab_topology()
    assert is_down(topo, health(failing=2)) is True
    assert is_down(topo, health(failing=1)) is False
    assert health(failing=2).summary() == (
        "/health=ConnectError, /auth/status=ConnectError, /ai/status=200,"
        " /recommendations/status=200, /version=200"
    )


def test_unrolled_readers_are_the_env_var_services_with_no_revision_for_the_version() -> None:
    states = [
        reader_state("auth-service", env_secret="latest"),  # never rolled: behind
        reader_state("ai-service", env_secret="latest", rolled_for="7"),  # rolled for 7
        reader_state("recommendation-service", env_secret="latest", rolled_for="6"),  # behind
        reader_state("face-service", volume_secret="latest"),  # follows at once
    ]
    assert [s.service for s in unrolled_readers(states, VERSION)] == [
        "auth-service",
        "recommendation-service",
    ]


def test_unrolled_readers_leave_out_what_a_roll_cannot_help_or_could_not_be_read() -> None:
    states = [
        # Traffic pinned to a named revision: a new revision would take none.
        reader_state("auth-service", env_secret="latest", pinned_to="auth-service-00002-abc"),
        # Pinned to the version already.
        reader_state("ai-service", env_secret="7"),
        # The region is down: the service could not be read.
        ReaderState(service="face-service", region="us-central1", error="503 unavailable"),
        # Does not read the secret at all.
        reader_state("recommendation-service"),
    ]
    assert unrolled_readers(states, VERSION) == []
    assert [s.service for s in unrolled_readers(states[1:2], VERSION.replace("/7", "/8"))] == [
        "ai-service"
    ]


def test_with_no_secret_version_there_is_nothing_to_roll_for() -> None:
    states = [reader_state("auth-service", env_secret="latest")]
    assert unrolled_readers(states, None) == []
    assert unrolled_readers(states, "") == []


def test_a_malformed_version_name_is_refused_naming_it() -> None:
    states = [reader_state("auth-service", env_secret="latest")]
    with pytest.raises(PermanentError) as refused:
        unrolled_readers(states, "prod-database-url/7")
    assert str(refused.value) == (
        "refresh-secret-readers: 'prod-database-url/7' is not a secret version name"
    )


def test_the_gate_plan_line_names_the_services_the_version_and_the_refusal() -> None:
    unrolled = [reader_state("auth-service", env_secret="latest"), reader_state("ai-service")]
    assert gate_plan_line("us-central1", unrolled, VERSION) == (
        "roll us-central1/{auth-service, ai-service} for secret version 7 first: the region "
        "fails its health checks and these read the database URL at instance start with no "
        "revision for that version (a failover cannot refresh a region that is down); then "
        "probe us-central1 again, and refuse if it is still unhealthy"
    )


def test_a_left_promotion_is_the_whole_plan_what_follows_depends_on_its_end() -> None:
    sql = lab_topology().cloud_sql
    left = LeftState(promoting="operations/promote-1", fenced=sql.replica, repoint="back")
    [line] = left.plan(sql)
    assert line.startswith(f"wait for the promotion of {sql.primary.instance} ")


@pytest.mark.parametrize(
    ("repoint", "wanted"),
    [
        ("promoted", "point the apps at the promoted {primary}: the secret names {replica}"),
        ("back", "point the apps back at {replica}: the secret names {primary}"),
    ],
)
def test_a_left_fence_is_lifted_before_the_apps_are_pointed(repoint: Repoint, wanted: str) -> None:
    sql = lab_topology().cloud_sql
    left = LeftState(fenced=sql.primary, repoint=repoint)
    lift, point = left.plan(sql)
    assert lift == (
        f"lift the database fence a killed run of the incident left on {sql.primary.instance}"
    )
    assert point.startswith(
        wanted.format(primary=sql.primary.instance, replica=sql.replica.instance)
    )


def test_nothing_left_plans_nothing() -> None:
    sql = lab_topology().cloud_sql
    assert LeftState().plan(sql) == []
    assert LeftState(fenced=sql.replica).plan(sql) == [
        f"lift the database fence a killed run of the incident left on {sql.replica.instance}"
    ]
