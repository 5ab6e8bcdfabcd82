"""When a planned switch's fence may be lifted: before the promotion starts, always; after,
only for the services repointed to the new primary (the others would write where no one
reads). And which services a refresh repointed."""

from __future__ import annotations

from flows.fence import fence_decision, kept_message, lift_decision
from flows.secret_refresh import Refreshed
from tests.unit.builders import lab_topology

SERVICES = ["auth-service", "ai-service", "recommendation-service", "face-service"]


def test_before_the_promotion_every_fence_is_lifted() -> None:
    assert lift_decision(SERVICES, promotion_started=False, repointed=set()) == (SERVICES, [])


def test_after_the_promotion_only_repointed_services_are_lifted() -> None:
    lift, keep = lift_decision(SERVICES, promotion_started=True, repointed={"ai-service"})
    assert lift == ["ai-service"]
    assert keep == ["auth-service", "recommendation-service", "face-service"]


def test_after_the_promotion_with_everything_repointed_nothing_is_kept() -> None:
    assert lift_decision(SERVICES, True, set(SERVICES)) == (SERVICES, [])


def test_the_kept_message_names_the_services_and_what_to_do() -> None:
    region = lab_topology().regions.primary
    text = kept_message(region, ["auth-service", "face-service"])
    assert text.startswith("kept the fence on us-central1/auth-service, face-service:")
    assert "a re-run of the incident finishes the switch and lifts it" in text


def test_a_refresh_repoints_all_but_the_services_it_missed() -> None:
    topo = lab_topology()
    refreshed = Refreshed("detail", frozenset({("us-central1", "face-service")}))
    assert refreshed.repointed(topo.regions.primary, SERVICES) == set(SERVICES[:3])
    assert refreshed.repointed(topo.regions.secondary, SERVICES) == set(SERVICES)
    assert str(refreshed) == "detail"


def test_receipt_is_complete_when_all_is_received_or_the_promotion_has_begun() -> None:
    from tasks.cloud_sql_wal import ReceivedWal

    assert ReceivedWal(primary_answered=True, bytes=0).complete
    assert ReceivedWal(primary_answered=False, promoting=True).complete
    lacking = ReceivedWal(
        primary_answered=True, target_lsn="0/5000178", received_lsn="0/5000000", bytes=376
    )
    assert not lacking.complete
    assert lacking.describe().startswith("376 bytes of WAL up to 0/5000178 not received")
    # A primary that does not answer leaves the gap unknown: not complete.
    assert not ReceivedWal(primary_answered=False).complete


def test_a_run_before_the_promotion_fences_every_service() -> None:
    assert fence_decision(SERVICES, promotion_started=False, fenced_now={"ai-service"}) == SERVICES


def test_a_resumed_run_past_the_promotion_only_adopts_the_fences_still_held() -> None:
    """A service lifted after the promotion had been repointed: no new fence, no outage."""
    held = {"auth-service", "face-service"}
    assert fence_decision(SERVICES, promotion_started=True, fenced_now=held) == [
        "auth-service",
        "face-service",
    ]
    assert fence_decision(SERVICES, promotion_started=True, fenced_now=set()) == []
