"""The crash sweep's pure parts: which calls count, where its crash points are, repeats."""

from __future__ import annotations

from reliability.__main__ import SWEEPS, closing_figures
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


def test_the_closing_figures_merge_two_lanes_of_one_sweep() -> None:
    failover = "# faults\nfault_cells=121\nfault_cells_wrong=1\nfault_matrix_s=4561.2\n"
    failback = "fault_cells=48\nfault_cells_wrong=0\nfault_matrix_s=4800.5\nnote=a b\n"
    crash = "crash_points=14\ncrash_rerun_max_s=61.0\n"
    crash_failback = "crash_points=15\ncrash_rerun_max_s=75.5\nstorm_winners=1\n"
    merged = closing_figures([failover, failback, crash, crash_failback])
    assert merged["fault_cells"] == "169"
    assert merged["fault_cells_wrong"] == "1"
    assert merged["fault_matrix_s"] == "4800.5"  # lanes run side by side: the longer
    assert merged["crash_points"] == "29"
    assert merged["crash_rerun_max_s"] == "75.5"
    assert merged["storm_winners"] == "1"
    assert "note" not in merged  # a value with a space is no figure


def test_every_sweep_lane_has_ports_of_its_own() -> None:
    lanes = [tuple(sorted(env.items())) for _, env in SWEEPS.values() if env]
    assert len(lanes) == len(set(lanes)) == 2
    ports = {v for lane in lanes for k, v in lane if k.endswith("_PORT")}
    # Apart from the benches' labs and the other sweeps' own.
    assert ports.isdisjoint({"21780", "22780", "24780", "25780", "26780", "28780", "29780"})
