"""What Prefect's cache serves inside a real flow run (the lab's server): nothing for a
task, the incident's result for a ``resumable`` step.

The unit tier (tests/unit/test_task_cache.py) applies the engine's rule to the policies;
this runs flows with ``persist_result=True``, as every Lifeboat flow that changes
something does, where Prefect's default policy answered a repeated call from the first.
"""

from __future__ import annotations

import uuid

from tests.labharness import Lab

# Prefect is imported inside the tests: the lab must start first (tests/labharness.py).


def test_a_task_called_twice_with_the_same_inputs_in_one_run_runs_twice(lab: Lab) -> None:
    from prefect import flow

    from tasks.retrying import cloud_task

    reads: list[str] = []

    @cloud_task(timeout_seconds=5, retries=0)
    def read_service(environment: str, service: str) -> int:
        reads.append(service)
        return len(reads)

    @flow(name="cache-check-reads", persist_result=True)
    def before_and_after() -> tuple[int, int, int, int]:
        # Called, and submitted, as the flows do: a describe before a change and after it.
        before = read_service("lab", "orders")
        after = read_service("lab", "orders")
        futures = [read_service.submit("lab", "orders") for _ in range(2)]
        return before, after, futures[0].result(), futures[1].result()

    values = before_and_after()
    assert len(reads) == 4, "a repeated call was answered from the cache"
    assert sorted(values) == [1, 2, 3, 4]


def test_a_resumable_step_runs_once_per_incident_across_runs(lab: Lab) -> None:
    from prefect import flow

    from flows.resume import resumable
    from lifeboat.record import RunRecord
    from tasks.retrying import cloud_task

    changes: list[str] = []

    @cloud_task(timeout_seconds=5, retries=0)
    def scale_service(environment: str, service: str) -> str:
        changes.append(service)
        return f"scaled {service} #{len(changes)}"

    # A fresh incident each run of the test: its results stay in the result storage.
    incident = f"INC-CACHE-{uuid.uuid4().hex[:8]}"
    record = RunRecord(
        flow="failover",
        environment="lab",
        incident_id=incident,
        reason="cache check",
        trigger="test",
        operator="test",
    )

    @flow(name="cache-check-resume", persist_result=True)
    def switch() -> list[str]:
        step = resumable(scale_service, record, "scale")
        return [step("lab", "orders"), step.submit("lab", "orders").result()]

    first = switch()
    again = switch()  # a re-run of the incident: a new flow run
    assert changes == ["orders"], "a resumable step ran again for the same incident"
    assert first == again == ["scaled orders #1", "scaled orders #1"]
