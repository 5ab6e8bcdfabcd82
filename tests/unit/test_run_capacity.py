"""The capacity a plan and a record report: service-level bounds first, then the revision's."""

from __future__ import annotations

from google.cloud import run_v2

from tasks.run_capacity import DEFAULT_MAX_INSTANCES, Capacity, Scaling


def service(
    service_level: tuple[int, int] | None, revision: tuple[int, int] | None
) -> run_v2.Service:
    got = run_v2.Service()
    if service_level:
        got.scaling = run_v2.ServiceScaling(
            min_instance_count=service_level[0], max_instance_count=service_level[1]
        )
    if revision:
        got.template.scaling = run_v2.RevisionScaling(
            min_instance_count=revision[0], max_instance_count=revision[1]
        )
    return got


def test_service_level_bounds_take_effect_over_the_revisions() -> None:
    capacity = Capacity.of(service((3, 50), (0, 10)))
    assert capacity.effective == Scaling(min=3, max=50)
    assert capacity.describe() == "3..50 (service-level 3..50, revision 0..10)"


def test_without_service_level_bounds_the_revision_decides() -> None:
    capacity = Capacity.of(service(None, (3, 50)))
    assert capacity.effective == Scaling(min=3, max=50)
    assert capacity.describe() == "3..50 (service-level -..-, revision 3..50)"


def test_a_service_level_zero_cannot_release_a_revision_minimum() -> None:
    # Proto3 cannot tell 0 from unset: the revision's minimum keeps instances warm.
    capacity = Capacity.of(service((0, 10), (3, 50)))
    assert capacity.effective == Scaling(min=3, max=10)


def test_nothing_set_is_scale_to_zero_up_to_cloud_runs_default() -> None:
    capacity = Capacity.of(service(None, None))
    assert capacity.effective == Scaling(min=0, max=DEFAULT_MAX_INSTANCES)
