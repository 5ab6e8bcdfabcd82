"""`lifeboat iam`: the table, the projects it resolves to, the text and the role YAML.

The lab test (tests/flows/test_iam_table.py) checks the table against the calls flows
make; these check what is derived from it, on the lab's topology and on edited copies.
"""

from __future__ import annotations

import importlib
import re

import pytest
import yaml

from commands.cli import main
from commands.iam import render_text, role_documents, role_id, role_yaml
from lifeboat.iam import (
    CALLS,
    FLOWS,
    USERS,
    Place,
    find,
    grants_by_flow,
    grants_by_project,
    projects_of,
)
from lifeboat.topology import REPO_ROOT, Topology, TopologyError, load_topology

LAB = load_topology("lab")
PRIMARY, DR = "ml-datadriven-recos", "ml-datadriven-recos-dr"
PERMISSION = re.compile(r"^[a-z]+(\.[a-zA-Z]+){2}$")


def _edited(**changes: object) -> Topology:
    """The lab topology with top-level sections replaced (a dict merged into each)."""
    data = LAB.model_dump()
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return Topology.model_validate(data)


def _deployed_flow_names() -> set[str]:
    deployments = yaml.safe_load((REPO_ROOT / "deployments" / "prefect.yaml").read_text())
    names = set()
    for deployment in deployments["deployments"]:
        path, _, attr = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        names.add(getattr(module, attr).name)
    return names


def test_the_flows_in_the_table_are_the_deployed_flows() -> None:
    assert set(FLOWS) == _deployed_flow_names()
    named = set().union(*(c.flows for c in CALLS))
    assert named <= set(USERS), named - set(USERS)


def test_every_row_is_distinct_and_well_formed() -> None:
    keys = [(c.api, c.method, c.path) for c in CALLS]
    assert len(keys) == len(set(keys))
    for call in CALLS:
        assert call.flows and call.lands_on and call.does
        # Only a call Google documents as needing no permission has none (below).
        assert call.permissions or call.path.endswith(":testIamPermissions"), call.path
        assert all(PERMISSION.match(p) for p in call.permissions), call.permissions
        assert call.method in {"GET", "POST", "PUT", "PATCH", "DELETE"}


def test_test_iam_permissions_needs_no_permission() -> None:
    """Readiness asks Resource Manager in every project; Google documents that the call
    needs no permission, so it adds none to any role and lists no project of its own."""
    ask = find("resourcemanager", "POST", f"/v3/projects/{DR}:testIamPermissions")
    assert ask is not None and ask.permissions == () and ask.flows == {"readiness"}
    assert set(ask.lands_on) == set(Place)
    without = [c for c in CALLS if c is not ask]
    assert grants_by_flow(LAB) == grants_by_flow(LAB, without)


def test_each_row_is_the_only_row_its_own_calls_match() -> None:
    for call in CALLS:
        path = re.sub(r"\{object\}", "a/b.json", re.sub(r"\{(?!object)[a-z_]+\}", "x1", call.path))
        assert [c for c in CALLS if c.matches(call.api, call.method, path)] == [call], path


def test_a_logged_path_finds_its_row_and_a_placeholder_is_one_segment() -> None:
    service = "/v2/projects/p/locations/us-east1/services/auth-service"
    assert find("run", "PATCH", service) is not None
    assert "iam.serviceAccounts.actAs" in (find("run", "PATCH", service) or CALLS[0]).permissions
    revisions = find("run", "GET", service + "/revisions")
    assert revisions is not None and revisions.permissions == ("run.revisions.list",)
    # An object name may hold slashes; a service name may not.
    assert find("storage", "GET", "/storage/v1/b/varai-backups/o/cloudsql/a/b.json")
    assert find("run", "GET", service + "/extra/segment") is None
    assert find("dns", "DELETE", "/dns/v1/projects/p/managedZones/z") is None
    # A custom verb is not part of the id before it.
    access = find("secretmanager", "GET", "/v1/projects/p/secrets/s/versions/latest:access")
    assert access is not None and access.permissions == ("secretmanager.versions.access",)


def test_non_obvious_permissions_are_in_the_rows_that_need_them() -> None:
    sql_op = find("sql", "GET", f"/v1/projects/{PRIMARY}/operations/op-1")
    assert sql_op is not None and sql_op.permissions == ("cloudsql.instances.get",)
    change = find("dns", "POST", f"/dns/v1/projects/{PRIMARY}/managedZones/z/changes")
    assert change is not None
    assert {"dns.changes.create", "dns.resourceRecordSets.update"} <= set(change.permissions)
    upload = find("storage", "POST", "/upload/storage/v1/b/varai-dr-records/o")
    assert upload is not None
    assert {"storage.objects.create", "storage.objects.delete"} <= set(upload.permissions)


def test_projects_resolve_from_the_lab_topology() -> None:
    assert projects_of(Place.primary_region, LAB) == (PRIMARY,)
    assert projects_of(Place.secondary_region, LAB) == (DR,)
    assert projects_of(Place.cloud_sql, LAB) == (PRIMARY,)
    assert projects_of(Place.dns, LAB) == (PRIMARY,)
    assert projects_of(Place.cdn, LAB) == (PRIMARY,)
    assert projects_of(Place.buckets, LAB) == (PRIMARY,)  # backups.project unset
    assert projects_of(Place.app_secret, LAB) == (DR,)


def test_each_permission_goes_to_the_project_that_holds_its_resource() -> None:
    topo = _edited(
        dns={"project": "dns-host-project"},
        cdn={"project": "edge-cdn-project"},
        backups={"project": "backup-vault-proj"},
    )
    failover = grants_by_flow(topo)["failover"]
    assert set(failover) == {
        PRIMARY,
        DR,
        "dns-host-project",
        "edge-cdn-project",
        "backup-vault-proj",
    }
    assert "dns.changes.create" in failover["dns-host-project"]
    assert not any(p.startswith("dns.") for p in failover[PRIMARY])
    assert failover["edge-cdn-project"] == ("compute.urlMaps.invalidateCache",)
    assert all(p.startswith("storage.") for p in failover["backup-vault-proj"])
    assert "secretmanager.versions.add" in failover[DR]
    # Readiness only reads the cloud; its one write is its run record, in the bucket.
    readiness = grants_by_flow(topo)["readiness"]
    outside_buckets = {
        p for project, ps in readiness.items() if project != "backup-vault-proj" for p in ps
    }
    assert all(p.endswith((".get", ".list")) for p in outside_buckets), outside_buckets


def test_the_text_lists_flow_then_project_then_permissions() -> None:
    text = render_text(LAB)
    for flow in FLOWS:
        assert re.search(rf"^{re.escape(flow)}$", text, re.M), flow
    failover = text.split("\nfailover\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert failover[0].startswith(f"  {PRIMARY} (primary region, Cloud SQL")
    assert "    cloudsql.instances.promoteReplica" in failover
    assert any(line.startswith(f"  {DR} (secondary region, app secret)") for line in failover)
    assert "backups.project is not set" in text
    assert "lifeboat discover (run with your own credentials; not in the roles)" in text


def test_the_roles_leave_out_what_only_discover_needs() -> None:
    role = set().union(*grants_by_project(LAB).values())
    assert "run.services.get" in role
    # run.services.list is the config backup's too (every service of both regions).
    assert not role & {"dns.managedZones.list", "storage.buckets.list"}
    assert grants_by_flow(LAB)["config-backup"][LAB.regions.primary.project].count(
        "run.services.list"
    )


def test_the_role_yaml_parses_back_one_role_per_project_with_gcloud_fields() -> None:
    documents = list(yaml.safe_load_all(role_yaml(LAB)))
    assert len(documents) == 2
    union = grants_by_project(LAB)
    for document, project in zip(documents, sorted(union), strict=True):
        assert set(document) == {"title", "description", "stage", "includedPermissions"}
        assert document["stage"] == "GA"
        assert project in document["title"]
        assert document["includedPermissions"] == list(union[project])
        assert len(document["title"].encode()) <= 100
    assert role_id("lab-2") == "lifeboat_lab_2"
    assert f"--project={PRIMARY}" in role_yaml(LAB)


def test_role_yaml_for_one_project_and_a_project_with_nothing_to_grant() -> None:
    only = list(yaml.safe_load_all(role_yaml(LAB, DR)))
    assert len(only) == 1 and only[0] == role_documents(LAB)[DR]
    with pytest.raises(TopologyError, match="no permission is needed in project"):
        role_yaml(LAB, "some-other-project")


def test_the_command_prints_the_text_and_one_role(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["iam", "--env", "lab"]) == 0
    assert "run.services.update" in capsys.readouterr().out
    assert main(["iam", "--env", "lab", "--role-yaml", "--project", PRIMARY]) == 0
    (document,) = yaml.safe_load_all(capsys.readouterr().out)
    assert "cloudsql.instances.promoteReplica" in document["includedPermissions"]
    assert main(["iam", "--env", "nope"]) == 2
