"""The crash sweep's pure parts: which calls count, where its crash points are, repeats."""

from __future__ import annotations

from reliability.crash import duplicates, effect, groups


def _entry(api: str, method: str, path: str, status: int = 200, write: bool = True) -> dict:
    return {"api": api, "method": method, "path": path, "status": status, "write": write}


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
