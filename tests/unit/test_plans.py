"""The dry-run plans of failover, failback and rollback: the exact lines, from states as
preflight reads them (real ``run_v2`` messages turned into ``ServiceState``)."""

from __future__ import annotations

import pytest

from flows.failback import failback_plan, scales_early
from flows.plans import RECEIVE_WAIT_S, PrimaryFence, failover_plan, scale_line
from flows.rollback import ServicePlan, _chosen_services, _plan
from lifeboat.topology import RollbackStrategy, Scaling
from tasks.cloud_run import RevisionInfo, RevisionSet, ServiceState
from tasks.cloud_sql import InstanceState
from tasks.dns import RecordState
from tasks.errors import PermanentError
from tests.unit.builders import SECRET, lab_topology, service_state

SERVICES = ["auth-service", "ai-service", "recommendation-service", "face-service"]
# A promoted replica has no backups: every failover ends by turning them on.
BACKUPS_ON_SECONDARY = (
    "turn on backups and point-in-time recovery on varai-db-secondary, as varai-prod had "
    "them, with at least 7 days of logs, unless on already (Cloud SQL restarts it to turn "
    "PITR on: its connections drop for a moment)"
)


def test_scale_line_says_scale_or_keep_with_both_levels_now() -> None:
    target = Scaling(min=3, max=50)
    standby = service_state("auth-service", service_scaling=(0, 10))
    assert scale_line("us-east1", "auth-service", standby, target) == (
        "scale us-east1/auth-service: 0..10 (service-level -..10, revision 0..-)"
        " → service-level 3..50"
    )
    active = service_state("auth-service", service_scaling=(3, 50), revision_scaling=(1, 0))
    assert scale_line("us-east1", "auth-service", active, target) == (
        "keep us-east1/auth-service: 3..50 (service-level 3..50, revision 1..-)"
        " → service-level 3..50"
    )


def test_scale_line_of_a_service_not_read_says_missing() -> None:
    assert scale_line("us-east1", "face-service", None, Scaling(min=0, max=10)) == (
        "scale us-east1/face-service: missing → service-level 0..10"
    )


def test_a_revision_minimum_is_no_reason_to_keep() -> None:
    # The revision's 3..50 takes effect, but the service level (which the switch sets)
    # is unset: the plan scales.
    state = service_state("ai-service", revision_scaling=(3, 50))
    line = scale_line("us-east1", "ai-service", state, Scaling(min=3, max=50))
    assert line == (
        "scale us-east1/ai-service: 3..50 (service-level -..-, revision 3..50)"
        " → service-level 3..50"
    )


def test_the_failover_plan_from_a_primary_outage() -> None:
    topo = lab_topology()
    states = [service_state(name, service_scaling=(0, 10)) for name in SERVICES]
    record = RecordState(name="api.varai.ai.", type="A", ttl=300, rrdatas=["34.120.10.10"])
    plan = failover_plan(
        topo, record, states, "READ_REPLICA_INSTANCE", refresh=["roll us-east1/ai-service"]
    )
    assert plan == [
        "promote ml-datadriven-recos:varai-db-secondary (read replica → primary; started"
        " first, it runs while the secret, the refresh and the scale-up go on)",
        f"add a version of secret {SECRET} naming varai-db-secondary (before the scale-up:"
        " instances read it as they start; apps reading it from a volume at latest follow"
        " at once)",
        "roll us-east1/ai-service",
        *[
            f"scale us-east1/{name}: 0..10 (service-level -..10, revision 0..-)"
            " → service-level 3..50"
            for name in SERVICES
        ],
        "DNS api.varai.ai. A: 34.120.10.10 (ttl 300) → 34.140.20.20 (ttl 60)",
        "invalidate varai-cdn-lb api.varai.ai/*",
        "verify 5 health check(s) via api.varai.ai reach us-east1",
        BACKUPS_ON_SECONDARY,
    ]


def test_a_resumed_failover_keeps_a_promoted_replica_and_a_record_it_could_not_read() -> None:
    topo = lab_topology()
    states = [service_state(name, service_scaling=(3, 50)) for name in SERVICES]
    plan = failover_plan(topo, None, states, "CLOUD_SQL_INSTANCE")
    assert plan[0] == "keep ml-datadriven-recos:varai-db-secondary (already a primary)"
    assert plan[2:6] == [
        f"keep us-east1/{name}: 3..50 (service-level 3..50, revision 0..-) → service-level 3..50"
        for name in SERVICES
    ]
    assert plan[6] == "DNS api.varai.ai. A: → 34.140.20.20 (ttl 60)"


def test_the_failover_plan_needs_one_state_per_service() -> None:
    topo = lab_topology()
    with pytest.raises(ValueError, match="zip"):
        failover_plan(topo, None, [service_state("auth-service")], "READ_REPLICA_INSTANCE")


def _old_primary(protected: bool) -> InstanceState:
    return InstanceState(
        project="ml-datadriven-recos",
        name="varai-prod",
        region="us-central1",
        state="RUNNABLE",
        instance_type="CLOUD_SQL_INSTANCE",
        master=None,
        replica_names=[],
        address="10.0.0.3",
        deletion_protection=protected,
    )


def _plan_with_no_stale_primary(
    secondary: list[ServiceState],
    primary: list[ServiceState],
    rebuilt: InstanceState | None = None,
) -> list[str]:
    """The failback's plan once the stale primary is gone: nothing to export or delete."""
    return failback_plan(
        lab_topology(),
        None,
        promoted_protected=False,
        export_uri="gs://unused",
        secondary_states=secondary,
        primary_states=primary,
        secondary_export_uri="gs://varai-backups/x.sql.gz",
        rebuilt=rebuilt,
    )


def _failback_states() -> tuple[list[ServiceState], list[ServiceState]]:
    secondary = [
        service_state(name, service_scaling=(3, 50), volume_secret="latest") for name in SERVICES
    ]
    primary = [
        service_state(name, "us-central1", service_scaling=(0, 10), env_secret="latest")
        for name in SERVICES
    ]
    return secondary, primary


def test_the_failback_plan_exports_a_protected_stale_primary_before_it_deletes_it() -> None:
    topo = lab_topology()
    secondary, primary = _failback_states()
    plan = failback_plan(
        topo,
        _old_primary(protected=True),
        promoted_protected=False,
        export_uri="gs://varai-backups/failback/fb-1/varai-prod.sql.gz",
        secondary_states=secondary,
        primary_states=primary,
        secondary_export_uri="gs://varai-backups/failback/fb-1/varai-db-secondary.sql.gz",
    )
    assert plan[:4] == [
        "export ml-datadriven-recos:varai-prod (stale primary) to "
        "gs://varai-backups/failback/fb-1/varai-prod.sql.gz",
        "lift deletion protection on varai-prod (it is exported first)",
        "delete ml-datadriven-recos:varai-prod",
        "create ml-datadriven-recos:varai-prod in us-central1 as a replica of "
        "varai-db-secondary with deletion protection, as the stale primary had",
    ]
    # Every primary service reads the secret at latest with all traffic on the latest
    # revision: the roll after the new version replaces whatever instances it starts, so
    # it scales up before the fence, outside the outage.
    assert plan[4] == (
        "scale us-central1/auth-service: 0..10 (service-level -..10, revision 0..-)"
        " → service-level 3..50 (before the fence, outside the outage: its instances reach"
        " the new secret version)"
    )
    assert plan[8] == (
        "fence us-east1/auth-service: ingress INGRESS_TRAFFIC_ALL → "
        "INGRESS_TRAFFIC_INTERNAL_ONLY (public traffic and writes stop: the planned outage starts)"
    )
    assert plan[12:16] == [
        # The apps' role, fenced on the database: a request admitted before the ingress
        # fence cannot commit after the replica's target is read.
        "fence varai_user on ml-datadriven-recos:varai-db-secondary: NOLOGIN, its sessions "
        "ended (a request admitted before the ingress fence commits now, or fails "
        "unacknowledged)",
        "wait for varai-prod to receive all the WAL varai-db-secondary wrote, then promote it",
        "let varai_user log in to varai-prod once promoted (the fence replicated to it; the "
        "old primary stays fenced)",
        f"add a version of secret {SECRET} naming varai-prod (apps reading it from a volume"
        " at latest follow at once; instances that start read it as they start)",
    ]
    # The primary's env-var readers roll; the secondary's volume readers follow at once.
    assert plan[16] == (
        "roll a new revision of us-central1/auth-service: it reads "
        f"{SECRET} as an env var at latest, resolved at instance start"
    )
    assert (
        plan[20] == f"us-east1/auth-service reads {SECRET} from a volume at latest: follows at once"
    )
    assert not any(line.startswith("scale us-central1") for line in plan[8:])
    assert plan[24:28] == [
        "DNS api.varai.ai. A → 34.120.10.10 (ttl 300)",
        "invalidate varai-cdn-lb api.varai.ai/*",
        "verify 5 health check(s) reach us-central1",
        # Before the promoted secondary, whose settings it copies, is replaced.
        "turn on backups and point-in-time recovery on varai-prod, as varai-db-secondary had "
        "them, with at least 7 days of logs, unless on already (Cloud SQL restarts it to "
        "turn PITR on: its connections drop for a moment)",
    ]
    assert plan[28] == "lift the fence: us-east1/auth-service ingress → INGRESS_TRAFFIC_ALL"
    assert plan[32] == (
        "scale us-east1/auth-service: 3..50 (service-level 3..50, revision 0..-)"
        " → service-level 0..10"
    )
    assert plan[36:] == [
        "export ml-datadriven-recos:varai-db-secondary to "
        "gs://varai-backups/failback/fb-1/varai-db-secondary.sql.gz"
        " (it took writes until the fence)",
        "replace ml-datadriven-recos:varai-db-secondary by a replica of varai-prod in us-east1",
    ]


def test_a_primary_service_scales_after_the_new_secret_version_unless_it_reaches_it_anyway() -> (
    None
):
    # Traffic pinned to a named revision keeps instances on the URL they started with (no
    # roll can move them), and a reader not known is not assumed to follow: both wait
    # for the new version, inside the fence. A volume at latest follows at once.
    secondary, _ = _failback_states()
    stuck = service_state("auth-service", "us-central1", env_secret="latest", pinned_to="r-1")
    unknown = service_state("ai-service", "us-central1").model_copy(update={"secret_reader": None})
    volume = service_state("recommendation-service", "us-central1", volume_secret="latest")
    env_pinned = service_state("face-service", "us-central1", env_secret="7")
    assert [scales_early(st) for st in (stuck, unknown, volume, env_pinned)] == [
        False,
        False,
        True,
        True,
    ]
    plan = _plan_with_no_stale_primary(secondary, [stuck, unknown, volume, env_pinned])
    scales = [i for i, line in enumerate(plan) if line.startswith("scale us-central1")]
    fence = next(i for i, line in enumerate(plan) if line.startswith("fence "))
    secret = next(i for i, line in enumerate(plan) if line.startswith("add a version"))
    early = [plan[i].split(":")[0] for i in scales if i < fence]
    late = [plan[i].split(":")[0] for i in scales if i > secret]
    assert early == ["scale us-central1/recommendation-service", "scale us-central1/face-service"]
    assert late == ["scale us-central1/auth-service", "scale us-central1/ai-service"]


@pytest.mark.parametrize(
    ("state", "instance_type", "line"),
    [
        (
            "PENDING_CREATE",
            "READ_REPLICA_INSTANCE",
            "wait for the creation of ml-datadriven-recos:varai-prod as a replica of "
            "varai-db-secondary, asked for by an earlier run of this incident",
        ),
        (
            "RUNNABLE",
            "READ_REPLICA_INSTANCE",
            "keep ml-datadriven-recos:varai-prod: an earlier run of this incident rebuilt it",
        ),
        (  # promoted already: the run goes on from there
            "RUNNABLE",
            "CLOUD_SQL_INSTANCE",
            "keep ml-datadriven-recos:varai-prod: an earlier run of this incident rebuilt it",
        ),
        (  # no creation to wait for: sql_create_replica refuses it
            "FAILED",
            "READ_REPLICA_INSTANCE",
            "check ml-datadriven-recos:varai-prod, which an earlier run of this incident "
            "rebuilt: it is FAILED, and the run stops there unless it becomes RUNNABLE",
        ),
    ],
)
def test_a_resumed_failback_plans_no_second_create_of_the_instance_it_rebuilt(
    state: str, instance_type: str, line: str
) -> None:
    """The instance an earlier run created (its label names the incident) is waited for,
    kept or checked, never planned as a create: the run does not create it again."""
    secondary, primary = _failback_states()
    rebuilt = _old_primary(protected=False).model_copy(
        update={"state": state, "instance_type": instance_type, "master": "x"}
    )
    plan = _plan_with_no_stale_primary(secondary, primary, rebuilt=rebuilt)
    assert plan[0] == line
    assert not any(entry.startswith("create ") for entry in plan), plan


def test_a_failback_that_finds_the_stale_primary_gone_creates_it_and_keeps_a_fence() -> None:
    topo = lab_topology()
    secondary, primary = _failback_states()
    fenced = service_state(
        "auth-service",
        service_scaling=(3, 50),
        ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
        fenced_by="failback/fb-1",
        ingress_before="INGRESS_TRAFFIC_ALL",
    )
    plan = failback_plan(
        topo,
        None,
        promoted_protected=True,
        export_uri="gs://unused",
        secondary_states=[fenced, *secondary[1:]],
        primary_states=primary,
        secondary_export_uri="gs://varai-backups/x.sql.gz",
    )
    assert plan[0] == (
        "create ml-datadriven-recos:varai-prod in us-central1 as a replica of varai-db-secondary"
    )
    assert not any("gs://unused" in line or line.startswith("delete") for line in plan)
    assert plan[5] == (
        "keep the fence on us-east1/auth-service (set by failback/fb-1; "
        "ingress INGRESS_TRAFFIC_ALL before it)"
    )
    assert "lift the fence: us-east1/auth-service ingress → INGRESS_TRAFFIC_ALL" in plan
    assert plan[-2:] == [
        "lift deletion protection on varai-db-secondary (it is exported first)",
        "replace ml-datadriven-recos:varai-db-secondary by a replica of varai-prod in us-east1"
        " with deletion protection, as it had",
    ]


def _revisions(serving: dict[str, int], *revisions: RevisionInfo) -> RevisionSet:
    return RevisionSet(
        service="auth-service", region="us-central1", serving=serving, revisions=list(revisions)
    )


def _rev(
    name: str, ready: bool = True, reason: str = "", image: str = "v1", rolled_for: str = ""
) -> RevisionInfo:
    return RevisionInfo(
        name=name,
        created="2026-12-01T00:00:00Z",
        ready=ready,
        reason=reason,
        image=image,
        rolled_for=rolled_for,
    )


def test_rollback_switches_to_the_revision_before_the_current_one() -> None:
    state = _revisions(
        {"auth-service-00003-c": 100},
        _rev("auth-service-00003-c", image="v3"),
        _rev("auth-service-00002-b", image="v2"),
        _rev("auth-service-00001-a", image="v1"),
    )
    plan = _plan(state, None)
    assert plan == ServicePlan(
        service="auth-service",
        current="auth-service-00003-c",
        target="auth-service-00002-b",
        action="switch",
    )
    assert plan.line() == "traffic auth-service: auth-service-00003-c → auth-service-00002-b"


def test_rollback_looks_past_a_revision_lifeboat_rolled_for_a_secret_version() -> None:
    state = _revisions(
        {"auth-service-00003-c": 100},
        _rev("auth-service-00003-c", image="v2", rolled_for="7"),  # a roll of 00002: no release
        _rev("auth-service-00002-b", image="v2"),
        _rev("auth-service-00001-a", image="v1"),
    )
    assert _plan(state, None).target == "auth-service-00001-a"


def test_rollback_keeps_a_target_already_serving_everything() -> None:
    state = _revisions(
        {"auth-service-00002-b": 100},
        _rev("auth-service-00003-c"),
        _rev("auth-service-00002-b"),
    )
    plan = _plan(state, "auth-service-00002-b")
    assert plan.action == "keep"
    assert plan.line() == "keep auth-service on auth-service-00002-b (already serving 100%)"


def test_rollback_switches_a_target_that_serves_only_part_of_the_traffic() -> None:
    state = _revisions(
        {"auth-service-00003-c": 60, "auth-service-00002-b": 40},
        _rev("auth-service-00003-c", image="v2"),
        _rev("auth-service-00002-b", image="v1"),
    )
    plan = _plan(state, None)
    assert (plan.action, plan.target) == ("switch", "auth-service-00002-b")
    assert plan.line() == "traffic auth-service: auth-service-00003-c → auth-service-00002-b"


@pytest.mark.parametrize(
    ("state", "wanted", "line"),
    [
        (
            _revisions({"auth-service-00001-a": 100}, _rev("auth-service-00001-a")),
            None,
            "refuse auth-service: no revision older than auth-service-00001-a runs another image",
        ),
        (
            _revisions({"auth-service-00002-b": 100}, _rev("auth-service-00002-b")),
            "auth-service-00009-z",
            "refuse auth-service: target revision auth-service-00009-z does not exist",
        ),
        (
            _revisions(
                {"auth-service-00002-b": 100},
                _rev("auth-service-00002-b", image="v2"),
                _rev("auth-service-00001-a", ready=False, reason="ContainerMissing"),
            ),
            None,
            "refuse auth-service: target revision auth-service-00001-a is not Ready "
            "(ContainerMissing)",
        ),
        (
            _revisions({}, _rev("auth-service-00001-a")),
            None,
            "refuse auth-service: no revision older than None runs another image",
        ),
        (
            _revisions(
                {"auth-service-00003-c": 100},
                _rev("auth-service-00003-c", image="v2"),
                _rev("auth-service-00002-b", image="v2"),  # a configuration change
            ),
            None,
            "refuse auth-service: no revision older than auth-service-00003-c runs another image",
        ),
    ],
    ids=[
        "no-older-revision",
        "unknown-target",
        "target-not-ready",
        "nothing-serving",
        "same-image-only",
    ],
)
def test_rollback_refuses_a_service_with_nothing_safe_to_go_to(
    state: RevisionSet, wanted: str | None, line: str
) -> None:
    plan = _plan(state, wanted)
    assert plan.action == "refuse"
    assert plan.line() == line


def _tagged(tags: dict[str, str], ready: bool = True) -> RevisionSet:
    return RevisionSet(
        service="auth-service",
        region="us-central1",
        serving={"auth-service-green-2": 100},
        revisions=[
            _rev("auth-service-green-2", image="v2"),
            _rev("auth-service-00002-x", image="v2"),
            _rev("auth-service-blue-1", image="v1", ready=ready, reason="HealthCheckFailed"),
        ],
        tags=tags,
    )


BLUE_GREEN = {"blue": "auth-service-blue-1", "green": "auth-service-green-2"}


def test_a_traffic_rollback_switches_to_the_other_colour() -> None:
    plan = _plan(_tagged(BLUE_GREEN), None, RollbackStrategy.traffic)
    assert (plan.action, plan.target) == ("switch", "auth-service-blue-1")
    # The service strategy on the same service goes to the previous image instead.
    assert _plan(_tagged(BLUE_GREEN), None, RollbackStrategy.service).target == (
        "auth-service-blue-1"
    )
    # Blue serving: green is the way back.
    flipped = _tagged(BLUE_GREEN).model_copy(update={"serving": {"auth-service-blue-1": 100}})
    assert _plan(flipped, None, RollbackStrategy.traffic).target == "auth-service-green-2"


@pytest.mark.parametrize(
    ("tags", "ready", "why"),
    [
        ({}, True, "no blue/green pair: auth-service-green-2 carries neither tag blue nor green"),
        (
            {"green": "auth-service-green-2"},
            True,
            "no blue/green pair: auth-service-green-2 is green and no revision is blue",
        ),
        (
            {"blue": "auth-service-blue-1", "canary": "auth-service-green-2"},
            True,
            "no blue/green pair: auth-service-green-2 carries neither tag blue nor green "
            "(blue=auth-service-blue-1)",
        ),
        (BLUE_GREEN, False, "target revision auth-service-blue-1 is not Ready (HealthCheckFailed)"),
    ],
    ids=["no-tags", "missing-partner", "serving-untagged", "partner-unhealthy"],
)
def test_a_traffic_rollback_refuses_a_missing_or_unhealthy_partner(
    tags: dict[str, str], ready: bool, why: str
) -> None:
    plan = _plan(_tagged(tags, ready), None, RollbackStrategy.traffic)
    assert (plan.action, plan.why) == ("refuse", why)


def test_rollback_chooses_services_in_topology_order_without_duplicates() -> None:
    topo = lab_topology()
    assert _chosen_services(topo, None, None) == SERVICES
    assert _chosen_services(topo, ["face-service", "auth-service", "face-service"], None) == [
        "auth-service",
        "face-service",
    ]
    chosen = _chosen_services(topo, ["ai-service"], {"ai-service": "ai-service-00001-a"})
    assert chosen == ["ai-service"]


@pytest.mark.parametrize(
    ("services", "targets", "message"),
    [
        (
            ["auth-service", "billing"],
            None,
            "services: unknown service(s) billing in environment 'lab'; known: "
            "auth-service, ai-service, recommendation-service, face-service",
        ),
        (
            None,
            {"payments": "payments-00001-a"},
            "target_revisions: unknown service(s) payments in environment 'lab'; known: "
            "auth-service, ai-service, recommendation-service, face-service",
        ),
        (
            ["auth-service"],
            {"ai-service": "ai-service-00001-a"},
            "target_revisions: ai-service not among the services rolled back",
        ),
    ],
    ids=["unknown-service", "unknown-target-service", "target-outside-the-choice"],
)
def test_rollback_refuses_unknown_services_naming_the_parameter(
    services: list[str] | None, targets: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(PermanentError) as refused:
        _chosen_services(lab_topology(), services, targets)
    assert str(refused.value) == message


def test_the_graceful_failover_plan_fences_the_primary_waits_then_lifts() -> None:
    """The fence and the wait come before the promotion; the lift after the verification."""
    topo = lab_topology()
    states = [service_state(name, service_scaling=(0, 10)) for name in SERVICES]
    primary = [service_state(name, "us-central1") for name in SERVICES[:3]] + [
        service_state(
            SERVICES[3],
            "us-central1",
            ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
            fenced_by="failover/INC-1/run-1",
            ingress_before="INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        )
    ]
    plan = failover_plan(
        topo, None, states, "READ_REPLICA_INSTANCE", fence=PrimaryFence(primary, required=True)
    )
    assert plan[:6] == [
        *[
            f"fence us-central1/{name}: ingress INGRESS_TRAFFIC_ALL → "
            "INGRESS_TRAFFIC_INTERNAL_ONLY (public traffic and writes stop: the planned outage "
            "starts)"
            for name in SERVICES[:3]
        ],
        "keep the fence on us-central1/face-service (set by failover/INC-1/run-1; ingress "
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER before it)",
        "fence varai_user on ml-datadriven-recos:varai-prod: NOLOGIN, its sessions ended (a "
        "request admitted before the ingress fence commits now, or fails unacknowledged)",
        "wait for varai-db-secondary to receive all the WAL varai-prod has written (up to "
        f"{RECEIVE_WAIT_S} s; what it still lacks then is recorded)",
    ]
    assert plan[6].startswith("promote ml-datadriven-recos:varai-db-secondary (read replica")
    assert "after the fence and the wait" in plan[6]
    assert plan[7] == (
        "let varai_user log in to varai-db-secondary once promoted (the fence replicated to "
        "it; the old primary stays fenced)"
    )
    assert plan[-5:] == [
        *[
            f"lift the fence: us-central1/{name} ingress → INGRESS_TRAFFIC_ALL (once it names"
            " the promoted database; else kept)"
            for name in SERVICES[:3]
        ],
        "lift the fence: us-central1/face-service ingress → "
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (once it names the promoted database; else kept)",
        # After the fence is lifted, inside the lock.
        BACKUPS_ON_SECONDARY,
    ]
    assert plan[-6].startswith("verify ")


def test_a_best_effort_fence_says_so_in_the_plan() -> None:
    topo = lab_topology()
    states = [service_state(name) for name in SERVICES]
    primary = [service_state(name, "us-central1") for name in SERVICES]
    plan = failover_plan(
        topo, None, states, "READ_REPLICA_INSTANCE", fence=PrimaryFence(primary, required=False)
    )
    assert all(line.endswith("(best effort: the primary looks down)") for line in plan[:4])
    # No database fence: the primary's apps admit nothing, and a try would cost the
    # recovery a connection timeout.
    assert not any("NOLOGIN" in line or "log in" in line for line in plan), plan


def test_the_failback_plan_repoints_stale_env_var_readers_before_the_export() -> None:
    topo = lab_topology()
    secondary, primary = _failback_states()
    plan = failback_plan(
        topo,
        _old_primary(protected=False),
        promoted_protected=False,
        export_uri="gs://varai-backups/failback/fb-1/varai-prod.sql.gz",
        secondary_states=secondary,
        primary_states=primary,
        secondary_export_uri="gs://varai-backups/failback/fb-1/varai-db-secondary.sql.gz",
        repoint=["recommendation-service"],
        version=f"{SECRET}/versions/4",
    )
    assert plan[0] == (
        "roll us-central1/{recommendation-service} for secret version 4 before the export: "
        "they read the database URL at instance start and still name varai-prod, which is "
        "exported, then deleted (writes they take go to the primary instead, and a crash "
        "after the delete leaves them working)"
    )
    assert plan[1].startswith("export ml-datadriven-recos:varai-prod (stale primary)")
