"""The fault matrix's pure parts: one row per kind of call, the expected outcome of each
cell from the product's own classification, the verdict, and the table."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from reliability.faults import (
    EITHER,
    FAILED_FAST,
    FAULTS,
    RETRIED,
    TOLERATED,
    Baseline,
    Call,
    Observation,
    _exact,
    _writes,
    chosen,
    distinct_calls,
    expected,
    generalise,
    judge,
    names_step_and_resource,
    observe,
    render_table,
    resource_ids,
    retry_evidence,
)

PRIMARY = ("ml-datadriven-recos", "us-central1")
RUN = "/v2/projects/ml-datadriven-recos-dr/locations/us-east1"


def _entry(api: str, method: str, path: str, **more: Any) -> dict[str, Any]:
    return {"api": api, "method": method, "path": path, "status": 200, "injected": False} | more


def test_resource_ids_are_generalised_and_custom_verbs_and_aliases_kept() -> None:
    assert generalise(f"{RUN}/services/auth-service") == f"{RUN}/services/{{service}}"
    assert generalise(f"{RUN}/operations/dab95fe8-06b7") == f"{RUN}/operations/{{operation}}"
    assert (
        generalise("/v1/projects/p/instances/varai-db-secondary/promoteReplica")
        == "/v1/projects/p/instances/{instance}/promoteReplica"
    )
    assert (
        generalise("/dns/v1/projects/p/managedZones/z/changes/12")
        == "/dns/v1/projects/p/managedZones/z/changes/{change}"
    )
    # An object name holds slashes; the bucket stays (records and backups differ).
    assert (
        generalise("/storage/v1/b/varai-dr-records/o/locks/lab/region-switch.json")
        == "/storage/v1/b/varai-dr-records/o/{object}"
    )
    assert generalise("/upload/storage/v1/b/varai-dr-records/o") == (
        "/upload/storage/v1/b/varai-dr-records/o"
    )
    assert generalise("/v1/projects/p/secrets/s/versions/latest:access") == (
        "/v1/projects/p/secrets/s/versions/latest:access"
    )
    assert (
        generalise("/v1/projects/p/secrets/s:addVersion") == "/v1/projects/p/secrets/s:addVersion"
    )


def test_distinct_calls_are_cloud_calls_once_each_in_first_order() -> None:
    log = [
        _entry("run", "GET", f"{RUN}/services/a"),
        _entry("region-app/us-central1", "GET", "/health"),
        _entry("run", "GET", f"{RUN}/services/b"),
        _entry("run", "PATCH", f"{RUN}/services/a"),
        _entry("webhooks", "POST", "/_lab/webhooks/slack"),
        _entry("front-door", "GET", "/health"),
        _entry("sql", "POST", "/v1/projects/p/instances/r/promoteReplica"),
    ]
    assert [c.key for c in distinct_calls(log)] == [
        f"run GET {RUN}/services/{{service}}",
        f"run PATCH {RUN}/services/{{service}}",
        "sql POST /v1/projects/p/instances/{instance}/promoteReplica",
    ]


def test_a_call_pattern_matches_its_calls_only() -> None:
    service = Call("run", "GET", f"{RUN}/services/{{service}}")
    assert service.matches(_entry("run", "GET", f"{RUN}/services/auth-service"))
    assert not service.matches(_entry("run", "PATCH", f"{RUN}/services/auth-service"))
    assert not service.matches(_entry("run", "GET", f"{RUN}/services/auth-service/revisions"))
    assert not service.matches(_entry("run", "GET", f"{RUN}/operations/x"))
    lease = Call("storage", "GET", "/storage/v1/b/varai-dr-records/o/{object}")
    assert lease.matches(_entry("storage", "GET", "/storage/v1/b/varai-dr-records/o/locks/lab/x"))
    assert re.match(lease.regex(), "/storage/v1/b/varai-backups/o/x") is None


def test_expected_outcomes_follow_the_products_classification() -> None:
    promote = Call("sql", "POST", "/v1/projects/p/instances/{instance}/promoteReplica")
    for name in ("429", "500", "503", "timeout"):
        assert expected(promote, FAULTS[name], "failover", PRIMARY) == RETRIED
    assert expected(promote, FAULTS["403"], "failover", PRIMARY) == FAILED_FAST
    assert expected(promote, FAULTS["404"], "failover", PRIMARY) == FAILED_FAST
    # Compute throttles with 403 rateLimitExceeded: transient (tasks/errors.py), not fatal.
    purge = Call("compute", "POST", "/compute/v1/projects/p/global/urlMaps/m/invalidateCache")
    assert expected(purge, FAULTS["403-rate"], "failover", PRIMARY) == RETRIED
    assert expected(purge, FAULTS["403"], "failover", PRIMARY) == FAILED_FAST


def test_best_effort_and_absence_cells() -> None:
    primary_run = Call(
        "run", "GET", "/v2/projects/ml-datadriven-recos/locations/us-central1/services/{service}"
    )
    assert expected(primary_run, FAULTS["403"], "failover", PRIMARY) == TOLERATED
    assert expected(primary_run, FAULTS["403"], "failback", PRIMARY) == FAILED_FAST
    lease = Call("storage", "GET", "/storage/v1/b/varai-dr-records/o/{object}")
    assert expected(lease, FAULTS["404"], "failover", PRIMARY) == EITHER
    assert expected(lease, FAULTS["403"], "failover", PRIMARY) == FAILED_FAST
    upload = Call("storage", "POST", "/upload/storage/v1/b/varai-dr-records/o")
    assert expected(upload, FAULTS["404"], "failover", PRIMARY) == FAILED_FAST


def _seen(**more: Any) -> Observation:
    base: dict[str, Any] = {
        "ended": True,
        "state": "COMPLETED",
        "message": "",
        "fired": True,
        "repeated": True,
        "repeated_before_reply": False,
        "retries": [],
        "fault_to_end_s": 5.0,
        "resource_ids": ["varai-db-secondary"],
    }
    return Observation(**(base | more))


FAILED_MESSAGE = (
    "Flow run encountered an exception: PermanentError: promote-replica failed on "
    "ml-datadriven-recos:varai-db-secondary: 403 injected fault f80f5143cb65"
)


def test_a_retryable_cell_is_right_when_the_call_is_made_again_and_the_run_completes() -> None:
    assert judge(RETRIED, _seen(), FAULTS["503"]) == RETRIED
    assert judge(RETRIED, _seen(repeated=False), FAULTS["503"]).startswith("WRONG:call not made")
    # A step retried may take another path: its retry is the evidence.
    rerun = _seen(repeated=False, tasks_rerun=["sql-promote"])
    assert judge(RETRIED, rerun, FAULTS["503"]) == RETRIED
    assert judge(RETRIED, rerun, FAULTS["timeout"]) == RETRIED
    failed = judge(RETRIED, _seen(state="FAILED"), FAULTS["429"])
    assert failed.startswith("WRONG:retryable fault ended the run FAILED")
    # A timeout is right only if the client gave up before the lab answered the held call.
    assert "waited for the held reply" in judge(RETRIED, _seen(), FAULTS["timeout"])
    held = judge(RETRIED, _seen(repeated=False), FAULTS["timeout"])
    assert held == "WRONG:the client waited for the held reply: no deadline under the hold"
    assert judge(RETRIED, _seen(repeated_before_reply=True), FAULTS["timeout"]) == RETRIED


def test_a_fail_fast_cell_needs_a_prompt_failure_no_retry_and_step_and_resource() -> None:
    right = _seen(state="FAILED", message=FAILED_MESSAGE, repeated=False)
    assert judge(FAILED_FAST, right, FAULTS["403"]) == FAILED_FAST
    again = _seen(**{**right.__dict__, "retries": ["task promote ran 3x"]})
    retried = judge(FAILED_FAST, again, FAULTS["403"])
    assert "fail-fast error retried (task promote ran 3x)" in retried
    slow = judge(FAILED_FAST, _seen(**{**right.__dict__, "fault_to_end_s": 200.0}), FAULTS["404"])
    assert "failed after 200 s" in slow
    vague = _seen(**{**right.__dict__, "message": "Flow run encountered an exception: 403"})
    assert "message names no step and resource" in judge(FAILED_FAST, vague, FAULTS["403"])
    completed = judge(FAILED_FAST, _seen(repeated=False), FAULTS["403"])
    assert completed.startswith("WRONG:fail-fast fault ended the run COMPLETED")


def test_hangs_unreached_cells_either_and_tolerated() -> None:
    assert judge(RETRIED, _seen(ended=False, state="RUNNING"), FAULTS["503"]) == "WRONG:hang"
    assert judge(FAILED_FAST, _seen(fired=False), FAULTS["403"]) == "not-reached"
    assert judge(EITHER, _seen(repeated=False), FAULTS["404"]) == TOLERATED
    failed = _seen(state="FAILED", message=FAILED_MESSAGE, repeated=False)
    assert judge(EITHER, failed, FAULTS["404"]) == FAILED_FAST
    assert judge(TOLERATED, _seen(repeated=False), FAULTS["403"]) == TOLERATED
    assert judge(TOLERATED, failed, FAULTS["403"]).startswith("WRONG:best-effort")
    twice = judge(RETRIED, _seen(duplicate_writes=["sql POST /promote"]), FAULTS["timeout"])
    assert "repeated writes" in twice


def test_a_message_names_a_step_and_one_of_the_calls_resources() -> None:
    ids = resource_ids(
        "/v1/projects/ml-datadriven-recos/instances/varai-db-secondary/promoteReplica",
        ["ml-datadriven-recos", "us-central1"],
    )
    assert ids == ["varai-db-secondary", "promoteReplica"]
    assert names_step_and_resource(FAILED_MESSAGE, ids)
    assert not names_step_and_resource("403 on varai-db-secondary", ids)
    assert not names_step_and_resource("promote-replica failed on something: 403", ids)
    # A list filtered by instance names its resource in the query.
    listed = resource_ids(
        "/v1/projects/ml-datadriven-recos/operations",
        ["ml-datadriven-recos"],
        "instance=varai-db-secondary&alt=json",
    )
    assert listed == ["varai-db-secondary"]
    assert names_step_and_resource(FAILED_MESSAGE, listed)
    # An operation's id names nothing an operator knows: the step's own resource does.
    op_ids = resource_ids("/v1/projects/p/operations/67119aed-bfb5", ["p"])
    assert not names_step_and_resource(FAILED_MESSAGE, op_ids)
    assert names_step_and_resource(FAILED_MESSAGE, op_ids, polls=True)
    assert not names_step_and_resource("Flow run encountered an exception: 403", op_ids, True)


def test_the_table_has_a_row_per_call_and_a_column_per_fault() -> None:
    calls = [Call("sql", "POST", "/p"), Call("dns", "POST", "/changes")]
    verdicts = {("sql POST /p", "503"): "retried", ("dns POST /changes", "403"): "failed-fast"}
    table = render_table(calls, ["503", "403"], verdicts).splitlines()
    assert len(table) == 4
    assert table[0].split(" | ")[0].strip() == "call"
    assert [c.strip() for c in table[2].split(" | ")] == ["sql POST /p", "retried", "-"]
    assert [c.strip() for c in table[3].split(" | ")] == ["dns POST /changes", "-", "failed-fast"]


def test_a_retry_shows_as_a_task_run_again_or_a_call_beyond_the_baselines_count() -> None:
    path = "/v1/projects/p/instances/varai-db-secondary"
    hit = _entry("sql", "GET", path, status=403, injected=True)
    base = Counter({f"GET {path}": 2})  # two preflight steps read the replica, concurrently
    once = [{"name": "sql-describe", "run_count": 1}, {"name": "sql-lag", "run_count": 1}]
    assert retry_evidence([hit, hit], base, once) == []
    assert retry_evidence([hit, hit, hit], base, once) == [f"GET {path} hit 3x"]
    again = [{"name": "sql-describe", "run_count": 2}]
    assert retry_evidence([hit], Counter(), again) == ["task sql-describe ran 2x"]
    assert retry_evidence([hit, hit], Counter(), once) == [f"GET {path} hit 2x"]


def test_a_call_naming_the_incident_is_the_same_call_in_the_baseline_and_in_a_cell() -> None:
    # The failback's export object is named by its incident: checked absent, then present.
    obj = "/storage/v1/b/varai-backups/o/failback/{}/varai-prod.sql"
    base = _exact(
        [_entry("storage", "GET", obj.format(f"FAULTS-failback-BASE-{n}")) for n in (1, 1)]
    )
    hit = _entry("storage", "GET", obj.format("FAULTS-failback-012"), status=404, injected=True)
    once = [{"name": "sql-export", "run_count": 1}]
    assert retry_evidence([hit, hit], base, once) == []
    assert retry_evidence([hit, hit, hit], base, once) != []


def test_the_storage_librarys_own_bucket_read_must_not_matter() -> None:
    bucket = Call("storage", "GET", "/storage/v1/b/varai-dr-records")
    for name in ("timeout", "403", "404", "503"):
        assert expected(bucket, FAULTS[name], "failover", PRIMARY) == TOLERATED
    lease = Call("storage", "GET", "/storage/v1/b/varai-dr-records/o/{object}")
    assert expected(lease, FAULTS["503"], "failover", PRIMARY) == RETRIED


def test_cells_pick_a_call_by_substring_and_a_fault_by_name() -> None:
    upload = Call("storage", "POST", "/upload/storage/v1/b/varai-dr-records/o")
    assert chosen(upload, "timeout", [])
    assert chosen(upload, "timeout", ["upload@timeout", "changes@403"])
    assert not chosen(upload, "403", ["upload@timeout"])
    assert not chosen(upload, "timeout", ["changes@timeout"])


def test_a_repeated_request_id_is_one_write_another_call_is_two() -> None:
    purge = "/compute/v1/projects/p/global/urlMaps/m/invalidateCache"
    sent = [
        _entry("compute", "POST", purge, write=True, status=200, query="requestId=a"),
        _entry("compute", "POST", purge, write=True, status=200, query="requestId=a"),
    ]
    assert _writes(sent) == Counter({f"compute POST {purge}": 1})  # Compute's one operation
    again = [*sent, _entry("compute", "POST", purge, write=True, status=200, query="requestId=b")]
    assert _writes(again) == Counter({f"compute POST {purge}": 2})
    added = "/v1/projects/p/secrets/s:addVersion"
    twice = [_entry("secretmanager", "POST", added, write=True, status=200)] * 2
    assert _writes(twice) == Counter({f"secretmanager POST {added}": 2})  # no request id


def test_a_held_write_read_for_and_adopted_is_right_one_waited_out_is_not() -> None:
    timeout = FAULTS["timeout"]
    adopted = _seen(repeated=False, read_during_hold=True)
    assert judge(RETRIED, adopted, timeout) == "adopted"
    waited = _seen(repeated=False, read_during_hold=False)
    assert judge(RETRIED, waited, timeout).startswith("WRONG:the client waited")
    # Reading is no excuse for a second write: the judge still counts it.
    twice = _seen(repeated=True, read_during_hold=True, duplicate_writes=["secretmanager POST"])
    assert "repeated writes" in judge(RETRIED, twice, timeout)


def test_the_patterns_other_resources_are_no_repeat_of_the_faulted_call() -> None:
    # A failback deletes the stale primary (held past the deadline, then joined) and, later,
    # the secondary: the second DELETE is another instance, not the first one sent again.
    call = Call("sql", "DELETE", "/v1/projects/p/instances/{instance}")
    old, other = "/v1/projects/p/instances/varai-prod", "/v1/projects/p/instances/varai-db-sec"
    entries = [
        _entry("sql", "GET", "/v1/projects/p/operations", seq=1, time=10.5, write=False),
        _entry("sql", "DELETE", old, injected=True, seq=2, time=11.0, write=True),
        _entry("sql", "DELETE", other, write=True, seq=3, time=40.0),
    ]
    base = Baseline([call], Counter({f"sql DELETE {old}": 1, f"sql DELETE {other}": 1}), Counter())
    seen = observe(call, {"state": {"type": "COMPLETED"}}, entries, base, [], ["p"])
    assert not seen.repeated and seen.read_during_hold
    assert judge(RETRIED, seen, FAULTS["timeout"]) == "adopted"
    # A failback creates two instances by one path (POST .../instances): the second is no
    # resend of the held first one when the writes are the baseline's.
    path = "/v1/projects/p/instances"
    create = Call("sql", "POST", path)
    two = [
        _entry("sql", "GET", "/v1/projects/p/operations", seq=1, time=10.5, write=False),
        _entry("sql", "POST", path, injected=True, seq=2, time=11.0, write=True),
        _entry("sql", "POST", path, write=True, seq=3, time=40.0),
    ]
    made = Baseline([create], Counter({f"sql POST {path}": 2}), Counter())
    created = observe(create, {"state": {"type": "COMPLETED"}}, two, made, [], ["p"])
    assert created.repeated and created.write  # the same path again...
    assert judge(RETRIED, created, FAULTS["timeout"]) == "adopted"  # ...yet no resend
    resent = observe(create, {"state": {"type": "COMPLETED"}}, [*two, two[2]], made, [], ["p"])
    assert judge(RETRIED, resent, FAULTS["timeout"]).startswith("WRONG")
    # The same instance deleted again is a repeat.
    again = [*entries, _entry("sql", "DELETE", old, write=True, seq=4, time=41.0)]
    assert observe(call, {"state": {"type": "COMPLETED"}}, again, base, [], ["p"]).repeated


def test_a_create_names_its_resource_through_its_step() -> None:
    message = (
        "PermanentError: sql-create-replica failed on ml-datadriven-recos:varai-prod ← "
        "varai-db-secondary: 403 Forbidden"
    )
    assert names_step_and_resource(message, [])  # POST .../instances: no id in the path
    assert not names_step_and_resource("PermanentError: 403 Forbidden", [])
