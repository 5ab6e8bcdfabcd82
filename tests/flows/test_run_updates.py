"""Cloud Run updates under held calls: one rollout per change, and a wait that ends.

Both found by the fault matrix (reliability/faults.py): a PATCH held past the client's
call timeout gave the service a second revision, and an operation poll held past it was
waited out (google-api-core's poller gives its GET no timeout).
"""

from __future__ import annotations

import time

from lab.prefect_api import PrefectApi
from tests.flows.lab_checks import PRIMARY, SECONDARY, TOPOLOGY, incident, revisions
from tests.labharness import Lab

ENV_VAR_READER = "recommendation-service"  # rolled by the failover for the new secret version
SECONDARY_RUN = f"/v2/projects/{SECONDARY.project}/locations/{SECONDARY.name}"


def _failover(api: PrefectApi, prefix: str) -> dict[str, object]:
    run = api.launch("failover/lab", {"reason": "held run calls", "incident_id": incident(prefix)})
    return api.wait(str(run["id"]), timeout=300)


def _answered(lab: Lab, method: str, path: str, since: int) -> dict[str, object]:
    """The held call's entry: the lab logs a held call when it answers it."""
    deadline = time.monotonic() + TOPOLOGY.endpoints.call_timeout_s + 10
    while time.monotonic() < deadline:
        for entry in lab.requests(api="run", method=method, since=since):
            if entry["injected"] and path in entry["path"]:
                return entry
        time.sleep(0.2)
    raise AssertionError(f"the held {method} {path} was never answered")


def test_a_run_update_held_past_the_call_timeout_makes_one_revision(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    before = revisions(fresh_lab, SECONDARY, ENV_VAR_READER)
    since = fresh_lab.last_seq()
    target = f"^{SECONDARY_RUN}/services/{ENV_VAR_READER}$"
    held_s = TOPOLOGY.endpoints.call_timeout_s + 3
    fresh_lab.fault(api="run", method="PATCH", path=target, latency_s=held_s, count=1)

    final = _failover(api, "HELD-PATCH")

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]  # type: ignore[index]
    held = _answered(fresh_lab, "PATCH", f"/services/{ENV_VAR_READER}", since)
    # The step's retry read the service again and sent the roll with the etag it read; the
    # first PATCH, acted on late, carried the etag it was built from and was refused.
    assert held["status"] == 409, held
    after = revisions(fresh_lab, SECONDARY, ENV_VAR_READER)
    assert len(after) == len(before) + 1, (before, after)
    landed = [
        e
        for e in fresh_lab.requests(api="run", method="PATCH", since=since)
        if e["path"].endswith(f"/services/{ENV_VAR_READER}") and e["status"] < 400
    ]
    assert len(landed) == 2, landed  # the roll and the scale-up, once each


def test_a_run_operation_poll_held_past_the_call_timeout_is_given_up_and_polled_again(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()
    held_s = TOPOLOGY.endpoints.call_timeout_s + 3
    polls = f"^{SECONDARY_RUN}/operations/[^/]+$"
    fresh_lab.fault(api="run", method="GET", path=polls, latency_s=held_s, count=1)

    final = _failover(api, "HELD-POLL")

    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]  # type: ignore[index]
    held = _answered(fresh_lab, "GET", "/operations/", since)
    # A poll logged before the held one's reply came from a poller that had stopped waiting.
    again = [
        e
        for e in fresh_lab.requests(api="run", method="GET", since=since)
        if e["path"] == held["path"] and not e["injected"] and e["time"] < held["time"]
    ]
    assert again, "the poller waited for the held reply"


def test_a_rollout_whose_polls_never_answer_fails_within_the_steps_budget_naming_the_service(
    fresh_lab: Lab,
) -> None:
    from google.cloud import run_v2
    from prefect import flow

    from tasks.errors import BudgetExhausted
    from tasks.retrying import cloud_task
    from tasks.run_rollout import update_and_wait, wait_settled

    name = f"projects/{SECONDARY.project}/locations/{SECONDARY.name}/services/auth-service"
    fresh_lab.fault(api="run", method="GET", path="/operations/", latency_s=20)  # every poll
    budget_s = 3.0

    @cloud_task(timeout_seconds=budget_s, retries=0)
    def annotate_service() -> run_v2.Service:
        current = wait_settled("lab", name)
        current.annotations["lifeboat.dev/probe"] = "held-polls"
        return update_and_wait("lab", current, ["annotations"])

    @flow(name="held-polls", persist_result=False)
    def held_polls() -> run_v2.Service:
        return annotate_service.submit().result()

    started = time.monotonic()
    try:
        held_polls()
    except BudgetExhausted as exc:
        message = str(exc)
    else:
        raise AssertionError("the rollout wait did not fail")
    finally:
        fresh_lab.clear_faults()
    elapsed = time.monotonic() - started
    assert elapsed < budget_s + TOPOLOGY.endpoints.call_timeout_s + 3, elapsed
    assert name in message and "annotate_service's declared budget of 3 s ran out" in message
