"""failover under injected faults: transient ones are retried, permanent ones fail fast,
and a re-run of the same incident resumes without repeating side effects."""

from __future__ import annotations

import json
import os
import signal
import time

from lab.prefect_api import PrefectApi, flow_processes
from tests.flows.fence_checks import assert_slot_freed
from tests.flows.lab_checks import (
    PRIMARY,
    REPLICA,
    SECONDARY,
    TOPOLOGY,
    front_region,
    incident,
    instance_type,
    read_object,
    side_effects,
    sql_requests,
)
from tests.labharness import Lab


def _launch(api: PrefectApi, inc: str) -> str:
    return str(api.launch("failover/lab", {"reason": "faults", "incident_id": inc})["id"])


def _count(effects: list[tuple[str, str, str]], api_: str, method: str) -> int:
    return sum(1 for a, m, _ in effects if (a, m) == (api_, method))


def test_transient_faults_on_every_cloud_call_are_retried(fresh_lab: Lab, api: PrefectApi) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()
    fresh_lab.fault(api="run", method="PATCH", status=503, count=2)
    fresh_lab.fault(api="run", method="GET", path="services/ai-service", status=429, count=1)
    fresh_lab.fault(  # Cloud SQL's one-operation-at-a-time 409
        api="sql", method="POST", path="/promoteReplica$", status=409, count=1
    )
    fresh_lab.fault(api="sql", method="GET", path="/instances/", status=503, count=1)
    fresh_lab.fault(api="dns", method="POST", path="changes", status=429, count=1)
    fresh_lab.fault(api="dns", method="GET", path="rrsets", latency_s=6, count=1)  # > call timeout
    fresh_lab.fault(api="compute", method="POST", status=403, reason="rateLimitExceeded", count=1)
    fresh_lab.fault(api="storage", method="POST", path="upload", status=503, count=1)
    run_id = _launch(api, incident("FLAKY"))
    final = api.wait(run_id, timeout=300)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert front_region(fresh_lab) == SECONDARY.name
    injected = [e for e in fresh_lab.requests(since=since) if e["injected"]]
    assert {(e["api"], e["status"]) for e in injected} >= {
        ("run", 503),
        ("run", 429),
        ("sql", 409),
        ("sql", 503),
        ("dns", 429),
        ("compute", 403),
    }
    effects = side_effects(fresh_lab, since)
    # Retries re-read state first, so each change still happened exactly once: one scale
    # per service and one roll of the env-var service (the first PATCH, faulted twice).
    assert _count(effects, "sql", "instances.promoteReplica") == 1
    assert _count(effects, "dns", "POST") == 1
    assert _count(effects, "run", "PATCH") == len(TOPOLOGY.services) + 1


def test_permanent_error_fails_fast_naming_step_and_resource(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()
    fresh_lab.fault(api="dns", method="POST", path="changes", status=403, count=5)
    inc = incident("DENIED")
    final = api.wait(_launch(api, inc))
    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert "dns-switch failed on varai-ai-zone/api.varai.ai." in message and "403" in message
    attempts = [e for e in fresh_lab.requests(api="dns", method="POST", since=since)]
    assert len(attempts) == 1  # no retry of a permission error
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    assert record["outcome"] == "failed"
    assert [s["outcome"] for s in record["steps"]][-1] == "failed"
    assert record["steps"][-1]["name"] == "dns-switch"


def test_a_lease_upload_the_lab_holds_past_the_call_timeout_is_given_up_and_retried(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """The lock's own Cloud Storage calls keep the per-call timeout too (the library's
    default is 60 s): found by the fault matrix (reliability/faults.py)."""
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()
    held_s = TOPOLOGY.endpoints.call_timeout_s + 3
    upload = f"^/upload/storage/v1/b/{TOPOLOGY.backups.records_bucket}/o$"
    fresh_lab.fault(api="storage", method="POST", path=upload, latency_s=held_s, count=1)
    final = api.wait(_launch(api, incident("HELD-LEASE")), timeout=300)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    uploads = fresh_lab.requests(api="storage", method="POST", since=since)
    held = next(e for e in uploads if e["injected"])
    # The lab logs a held call when it answers it: an upload logged before that came from
    # a client that had stopped waiting.
    assert any(not e["injected"] and e["time"] < held["time"] for e in uploads), uploads


def test_a_lease_create_applied_after_its_release_does_not_bring_the_lease_back(lab: Lab) -> None:
    """A create the client gave up on is still applied when the server gets to it, on
    Google too. Applied after the switch released its lease, it must not make the lease
    held again: every switch would be refused until it expired, an hour later. A released
    lease stays as an object marked released, which the late create's ifGenerationMatch=0
    cannot overwrite."""
    # Imported here: importing prefect at collection would freeze its settings before the
    # session's lab sets PREFECT_API_URL (tests.labharness checks for that).
    from tasks.storage import lease_acquire, lease_object, lease_release, read_lease

    blob = lab.clients().storage(PRIMARY.project).bucket(TOPOLOGY.backups.records_bucket)
    blob = blob.blob(lease_object("lab"))
    if blob.exists():
        blob.delete()  # the name never used yet, as in a new environment
    held_s = TOPOLOGY.endpoints.call_timeout_s + 4
    upload = f"^/upload/storage/v1/b/{TOPOLOGY.backups.records_bucket}/o$"
    lab.fault(api="storage", method="POST", path=upload, latency_s=held_s, count=1)
    since = lab.last_seq()
    inc = incident("LATE-LEASE")
    # The client stops waiting at the call timeout and sends the create again (its retry
    # of a write with a generation precondition), which takes the lease.
    assert not lease_acquire.fn("lab", inc, "failover", "oncall@example.com").resumed
    assert lease_release.fn("lab", inc)
    deadline = time.monotonic() + held_s + 5
    while not any(e["injected"] for e in lab.requests(api="storage", since=since)):
        assert time.monotonic() < deadline, "the held create was never answered"
        time.sleep(0.2)
    late = next(e for e in lab.requests(api="storage", since=since) if e["injected"])
    assert late["status"] == 412, late  # applied after the release: refused by the tombstone
    assert read_lease("lab") is None
    nxt = incident("NEXT")
    assert not lease_acquire.fn("lab", nxt, "failover", "oncall@example.com").resumed
    assert lease_release.fn("lab", nxt)


def test_a_dns_change_the_lab_holds_past_the_call_timeout_is_given_up_and_retried(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    """google-cloud-dns gives ``Changes.create``/``reload`` no timeout (it waits 60 s);
    Lifeboat's own calls do: found by the fault matrix (reliability/faults.py)."""
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()
    # Held well past the call timeout: the step's retry (its backoff, a new attempt) must
    # re-read the record while the poll is still held. On a loaded 2-core CI machine that
    # took more than a 3 s margin once (session 19's rehearsal). A held change lands when
    # the lab answers it; by then the record is switched, so it changes nothing.
    held_s = TOPOLOGY.endpoints.call_timeout_s + 12
    for method, path in (("POST", "/changes$"), ("GET", "/changes/[^/]+$")):
        fresh_lab.fault(api="dns", method=method, path=path, latency_s=held_s, count=1)
    final = api.wait(_launch(api, incident("HELD-DNS")), timeout=300)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert front_region(fresh_lab) == SECONDARY.name
    # The lab logs a held call when it answers it, and the run may end before it answers
    # either: wait for both entries.
    deadline = time.monotonic() + held_s + 5
    calls = fresh_lab.requests(api="dns", since=since)
    while not all(any(e["method"] == m and e["injected"] for e in calls) for m in ("POST", "GET")):
        assert time.monotonic() < deadline, "the held change or poll was never answered"
        time.sleep(0.2)
        calls = fresh_lab.requests(api="dns", since=since)
    # The held change was sent again before the lab answered it; the held poll was given
    # up too, and the step's retry went on (it re-read the record, already switched)
    # before the lab answered it.
    posts = [e for e in calls if e["method"] == "POST"]
    held_post = next(e for e in posts if e["injected"])
    assert any(not e["injected"] and e["time"] < held_post["time"] for e in posts), posts
    held_poll = next(e for e in calls if e["method"] == "GET" and e["injected"])
    # Logged at its reply: it was sent held_s before. A read of the record while it was
    # held shows the client gave it up (whatever the held POST's own reply time).
    sent = held_poll["time"] - held_s
    reread = [e for e in calls if e["path"].endswith("/rrsets") and not e["injected"]]
    assert any(sent < e["time"] < held_poll["time"] for e in reread), calls


def test_rerun_of_a_failed_incident_resumes_without_repeating(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()
    fresh_lab.fault(api="compute", method="POST", status=404, count=1)
    inc = incident("RESUME")
    assert api.wait(_launch(api, inc))["state"]["type"] == "FAILED"
    assert instance_type(fresh_lab, REPLICA.project, REPLICA.instance) == "CLOUD_SQL_INSTANCE"
    final = api.wait(_launch(api, inc))
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    effects = side_effects(fresh_lab, since)
    assert _count(effects, "sql", "instances.promoteReplica") == 1
    assert _count(effects, "dns", "POST") == 1
    assert _count(effects, "run", "PATCH") == len(TOPOLOGY.services) + 1  # + the one roll
    cached = _cached_task_runs(api, final["id"], ("sql-promote", "dns-switch"))
    assert any(name.startswith("sql-promote") for name in cached)
    assert any(name.startswith("dns-switch") for name in cached)


def test_a_failed_connection_step_waits_for_the_promotion_beside_it_then_resumes(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # The promotion starts first and runs beside the database-connection step. When that
    # step fails for good, the run waits for the promotion before it releases the region
    # lock, says how it ended, and a re-run resumes without a second promotion.
    fresh_lab.outage(PRIMARY.name, True)
    since = fresh_lab.last_seq()
    orders = f"locations/{SECONDARY.name}/services/recommendation-service$"
    fresh_lab.fault(api="run", method="PATCH", path=orders, status=403, count=1)
    inc = incident("CONNECT")
    final = api.wait(_launch(api, inc))
    assert final["state"]["type"] == "FAILED"
    assert "refresh-secret-readers" in final["state"]["message"]
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    failed = record["steps"][-1]
    assert (failed["name"], failed["outcome"]) == ("database-connection", "failed")
    assert "403" in failed["detail"]
    assert failed["detail"].endswith(
        "the promotion, started first, completed: a re-run of the incident resumes"
    )
    assert instance_type(fresh_lab, REPLICA.project, REPLICA.instance) == "CLOUD_SQL_INSTANCE"
    effects = side_effects(fresh_lab, since)
    assert _count(effects, "sql", "instances.promoteReplica") == 1
    assert _count(effects, "run", "PATCH") == 0  # nothing scaled up with a stale secret
    assert _count(effects, "dns", "POST") == 0

    final = api.wait(_launch(api, inc))
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert front_region(fresh_lab) == SECONDARY.name
    effects = side_effects(fresh_lab, since)
    assert _count(effects, "sql", "instances.promoteReplica") == 1
    assert _count(effects, "run", "PATCH") == len(TOPOLOGY.services) + 1  # + the one roll


def _cached_task_runs(api: PrefectApi, run_id: str, wanted: tuple[str, ...]) -> list[str]:
    """Names of the run's Cached task runs, once the server has every ``wanted`` one.

    Task-run states reach the server in batches after the flow run's own final state
    (README: poll the flow run, not its task runs); the more task runs, the longer.
    """
    deadline = time.monotonic() + 60
    while True:
        runs = api.task_runs(run_id)
        final = [t["name"] for t in runs if t["state"]["type"] in {"COMPLETED", "FAILED"}]
        if all(any(n.startswith(w) for n in final) for w in wanted):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return [t["name"] for t in runs if t["state"]["name"] == "Cached"]


def test_kill_during_promote_then_resume_does_not_promote_twice(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    # A long promotion (1000 s modelled = 10 s here) leaves time to kill the run mid-step.
    fresh_lab.post("config", {"latency": {"sql.promote": 1000}})
    since = fresh_lab.last_seq()
    inc = incident("KILL")
    first = _launch(api, inc)
    deadline = time.monotonic() + 60
    while "instances.promoteReplica" not in sql_requests(fresh_lab, since):
        assert time.monotonic() < deadline, "the promotion never started"
        time.sleep(0.1)
    pids = flow_processes(first)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # Launched at once: the re-run frees the killed run's slot as soon as the worker has
    # marked that run Crashed, at the re-run's start or from its wait for the slot.
    final = api.wait(_launch(api, inc), timeout=300)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    assert_slot_freed(api, record, first)
    effects = side_effects(fresh_lab, since)
    assert _count(effects, "sql", "instances.promoteReplica") == 1  # the resumed run waited for it
    assert instance_type(fresh_lab, REPLICA.project, REPLICA.instance) == "CLOUD_SQL_INSTANCE"
    assert front_region(fresh_lab) == SECONDARY.name
