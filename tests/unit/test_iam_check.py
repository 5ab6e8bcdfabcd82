"""Readiness's ``permissions`` rows, the pure half (lifeboat/iam_check.py): what is
needed in each project, in calls of at most 100, and how a missing one is worded."""

from __future__ import annotations

from lifeboat.iam import FLOWS, grants_by_project
from lifeboat.iam_check import MAX_PER_CALL, batches, missing, needs_by_project, verdict
from lifeboat.topology import load_topology

LAB = load_topology("lab")
PRIMARY, DR = "ml-datadriven-recos", "ml-datadriven-recos-dr"
PROMOTE = "cloudsql.instances.promoteReplica"


def test_each_project_needs_what_the_worker_roles_grant_there() -> None:
    needs = needs_by_project(LAB)
    assert set(needs) == {PRIMARY, DR}
    # The same permissions as `lifeboat iam --role-yaml` grants: one table, two readers.
    assert {p: tuple(sorted(n)) for p, n in needs.items()} == grants_by_project(LAB)


def test_each_permission_names_the_flows_that_need_it_in_flow_order() -> None:
    needs = needs_by_project(LAB)
    # The replica lives in the primary's project (lab.yaml): promoting it is needed there.
    assert needs[PRIMARY][PROMOTE] == ("failover", "failback")
    assert PROMOTE not in needs[DR]
    # The app secret lives in the DR project; restore-config puts back any region's secret.
    assert needs[DR]["secretmanager.versions.add"] == ("failover", "failback", "restore-config")
    for permissions in needs.values():
        for flows in permissions.values():
            assert list(flows) == sorted(flows, key=FLOWS.index)


def test_the_operators_commands_are_not_the_workers_needs() -> None:
    """``dns.managedZones.list`` is only `lifeboat discover`'s: the worker needs it nowhere."""
    assert all("dns.managedZones.list" not in n for n in needs_by_project(LAB).values())
    assert all(
        set(flows) <= set(FLOWS) for n in needs_by_project(LAB).values() for flows in n.values()
    )


def test_a_project_holding_the_secret_only_needs_the_secret_calls() -> None:
    """Moved to a project of its own, the app secret's project needs Secret Manager only."""
    data = LAB.model_dump()
    data["cloud_sql"]["app_secret"]["project"] = "secrets-only"
    edited = type(LAB).model_validate(data)
    needs = needs_by_project(edited)["secrets-only"]
    assert needs and all(p.startswith("secretmanager.") for p in needs)


def test_batches_cut_at_the_per_call_limit_in_order() -> None:
    names = [f"storage.objects.v{i}" for i in range(2 * MAX_PER_CALL + 1)]
    cut = list(batches(names))
    assert [len(b) for b in cut] == [100, 100, 1]
    assert [n for b in cut for n in b] == names
    assert list(batches([])) == []


def test_green_when_every_needed_permission_is_held() -> None:
    needed = needs_by_project(LAB)[PRIMARY]
    green, measured, detail = verdict(needed, [*needed, "extra.permission.held"])
    assert green and measured == f"{len(needed)}/{len(needed)} held"
    assert "holds every permission" in detail


def test_red_names_each_missing_permission_and_the_flows_that_need_it() -> None:
    needed = needs_by_project(LAB)[PRIMARY]
    held = [p for p in needed if p not in {PROMOTE, "run.services.update"}]
    green, measured, detail = verdict(needed, held)
    assert not green
    assert measured == f"{len(needed) - 2}/{len(needed)} held"
    assert detail == (
        f"missing 2: {PROMOTE} (needed by failover, failback); run.services.update "
        "(needed by failover, failback, rollback, restore-config, recovery-drill)"
    )
    assert set(missing(needed, held)) == {PROMOTE, "run.services.update"}


def test_nothing_held_is_red_for_every_permission() -> None:
    needed = needs_by_project(LAB)[DR]
    green, measured, _ = verdict(needed, [])
    assert not green and measured == f"0/{len(needed)} held"
    assert len(missing(needed, [])) == len(needed)
