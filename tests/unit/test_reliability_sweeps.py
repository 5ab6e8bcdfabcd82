"""The crash sweep's pure parts: which calls count, where its crash points are, repeats."""

from __future__ import annotations

from reliability.crash import duplicates, effect, groups, refences


def _entry(
    api: str, method: str, path: str, status: int = 200, write: bool = True, query: str = ""
) -> dict:
    return {
        "api": api,
        "method": method,
        "path": path,
        "status": status,
        "write": write,
        "query": query,
    }


def test_reads_refusals_records_and_leases_are_no_side_effect() -> None:
    assert effect(_entry("run", "GET", "/v2/s", write=False)) is None
    assert effect(_entry("dns", "POST", "/changes", status=412)) is None
    assert effect(_entry("storage", "POST", "/upload/storage/v1/b/varai-dr-records/o")) is None
    assert effect(_entry("webhooks", "POST", "/slack")) is None
    assert effect(_entry("dns", "POST", "/changes")) == "dns POST /changes"
    assert (
        effect(_entry("storage", "POST", "/b/varai-backups/o")) == "storage POST /b/varai-backups/o"
    )


def test_concurrent_calls_of_one_kind_are_one_crash_point() -> None:
    sequence = [
        "secretmanager POST /s:addVersion",
        "run PATCH /a",
        "run PATCH /b",
        "run PATCH /c",
        "sql POST /promoteReplica",
        "run PATCH /d",
        "dns POST /changes",
    ]
    assert groups(sequence) == [0, 1, 4, 5, 6]
    assert groups([]) == []


def test_only_calls_beyond_the_baseline_count_are_duplicates() -> None:
    base = ["run PATCH /a", "run PATCH /a", "sql POST /promote"]
    assert duplicates(base, base) == 0
    assert duplicates(base, ["run PATCH /a"]) == 0  # fewer is no repeat
    assert duplicates(base, [*base, "sql POST /promote", "dns POST /c"]) == 2


def test_a_fence_update_is_its_own_kind_of_call() -> None:
    fence = _entry("run", "PATCH", "/a", query="updateMask=ingress%2Cannotations")
    scale = _entry("run", "PATCH", "/a", query="updateMask=scaling")
    assert effect(fence) == "run PATCH /a (ingress)"
    assert effect(scale) == "run PATCH /a"
    assert groups(["run PATCH /a (ingress)", "run PATCH /b (ingress)", "run PATCH /a"]) == [0, 2]


def test_a_fence_set_again_after_a_kill_before_the_promotion_is_no_duplicate() -> None:
    fence, lift = "run PATCH /a (ingress)", "run PATCH /a (ingress)"
    base = [fence, "sql POST /promoteReplica", lift]
    seen = [fence, lift, fence, "sql POST /promoteReplica", lift]  # hook lifted, re-run fenced
    assert refences(base, seen) == 2
    assert duplicates(base, seen, promotion_started=False) == 0
    assert duplicates(base, seen, promotion_started=True) == 2  # after it, a fence is a repeat
    assert duplicates(base, [*seen, "run PATCH /a"], promotion_started=False) == 1
