"""Contract tests: google-cloud-resource-manager (REST transport) against the lab's
``projects.testIamPermissions``: the subset held, nothing held, an unknown project,
wildcards, the per-call limit, and the grants the control API sets."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import resourcemanager_v3

from lab.control.app import create_control_app
from lab.core.context import LabContext
from lab.resourcemanager import ResourceManagerBackend, create
from tests.discovery import assert_valid

PROJECT = "ml-datadriven-recos"
RESOURCE = f"projects/{PROJECT}"
ASKED = ["cloudsql.instances.get", "cloudsql.instances.promoteReplica", "dns.changes.create"]


@pytest.fixture
def emulator(lab_ctx: LabContext, serve: Callable[..., str]) -> tuple[ResourceManagerBackend, str]:
    backend, app = create(lab_ctx)
    backend.seed_projects([PROJECT, "ml-datadriven-recos-dr"])
    return backend, serve(app, "resourcemanager")


@pytest.fixture
def client(emulator: tuple[ResourceManagerBackend, str]) -> resourcemanager_v3.ProjectsClient:
    return resourcemanager_v3.ProjectsClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=emulator[1]),
    )


def held(client: resourcemanager_v3.ProjectsClient, permissions: list[str]) -> list[str]:
    answer = client.test_iam_permissions(
        request={"resource": RESOURCE, "permissions": permissions}, retry=None, timeout=5
    )
    return list(answer.permissions)


def test_an_untouched_lab_holds_every_permission_asked(
    client: resourcemanager_v3.ProjectsClient, lab_ctx: LabContext
) -> None:
    assert held(client, ASKED) == ASKED
    [entry] = lab_ctx.requests.entries(api="resourcemanager")
    assert (entry.method, entry.path) == ("POST", f"/v3/{RESOURCE}:testIamPermissions")
    assert not entry.write  # a question, not a change


def test_the_answer_is_the_subset_held(
    client: resourcemanager_v3.ProjectsClient, emulator: tuple[ResourceManagerBackend, str]
) -> None:
    backend, url = emulator
    backend.set_grant(PROJECT, None, revoked=["cloudsql.instances.promoteReplica"])
    assert held(client, ASKED) == ["cloudsql.instances.get", "dns.changes.create"]
    backend.set_grant(PROJECT, held=["dns.changes.create", "storage.objects.get"])
    assert held(client, ASKED) == ["dns.changes.create"]
    # The other project keeps every permission: a grant is per project.
    other = httpx.post(
        f"{url}/v3/projects/ml-datadriven-recos-dr:testIamPermissions",
        json={"permissions": ASKED},
    )
    assert other.json() == {"permissions": ASKED}
    assert_valid("cloudresourcemanager.v3", "TestIamPermissionsResponse", other.json())


def test_nothing_held_answers_an_empty_object(
    client: resourcemanager_v3.ProjectsClient, emulator: tuple[ResourceManagerBackend, str]
) -> None:
    backend, url = emulator
    backend.set_grant(PROJECT, held=[])
    wire = httpx.post(f"{url}/v3/{RESOURCE}:testIamPermissions", json={"permissions": ASKED})
    assert wire.status_code == 200 and wire.json() == {}
    assert held(client, ASKED) == []
    # Asking for nothing is answered the same way.
    assert held(client, []) == []


def test_an_unknown_project_is_permission_denied_not_not_found(
    client: resourcemanager_v3.ProjectsClient, emulator: tuple[ResourceManagerBackend, str]
) -> None:
    # The REST transport maps by HTTP status: 403 is Forbidden.
    with pytest.raises(exceptions.Forbidden) as caught:
        client.test_iam_permissions(
            request={"resource": "projects/no-such-project", "permissions": ASKED},
            retry=None,
            timeout=5,
        )
    assert caught.value.code == 403
    wire = httpx.post(
        f"{emulator[1]}/v3/projects/no-such-project:testIamPermissions",
        json={"permissions": ASKED},
    )
    assert wire.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("bad", ["*", "storage.*", "not-a-permission"])
def test_wildcards_and_malformed_names_are_invalid(
    client: resourcemanager_v3.ProjectsClient, bad: str
) -> None:
    with pytest.raises(exceptions.BadRequest):
        held(client, ["cloudsql.instances.get", bad])


def test_at_most_100_permissions_a_call(client: resourcemanager_v3.ProjectsClient) -> None:
    names = [f"storage.objects.verb{i}" for i in range(101)]
    assert held(client, names[:100]) == names[:100]
    with pytest.raises(exceptions.BadRequest) as caught:
        held(client, names)
    assert "100" in str(caught.value)


def test_other_v3_methods_are_not_served(emulator: tuple[ResourceManagerBackend, str]) -> None:
    """The lab serves one method; a get would be answered by nothing it made up."""
    response = httpx.get(f"{emulator[1]}/v3/{RESOURCE}")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


def test_the_control_api_sets_and_reports_grants(
    lab_ctx: LabContext,
    emulator: tuple[ResourceManagerBackend, str],
    client: resourcemanager_v3.ProjectsClient,
    serve: Callable[..., str],
) -> None:
    control = serve(create_control_app(lab_ctx, ["us-central1"], lambda: None, lambda: {}))
    set_grant = httpx.post(
        f"{control}/_lab/iam",
        json={"project": PROJECT, "revoked": ["cloudsql.instances.promoteReplica"]},
    )
    assert set_grant.status_code == 200
    assert set_grant.json()["revoked"] == ["cloudsql.instances.promoteReplica"]
    assert "cloudsql.instances.promoteReplica" not in held(client, ASKED)
    unknown = httpx.post(f"{control}/_lab/iam", json={"project": "nope", "held": []})
    assert unknown.status_code == 400 and "unknown project" in unknown.text
    grants = httpx.get(f"{control}/_lab/iam").json()
    assert grants["grants"][PROJECT]["held"] == "every permission"
    # A reset gives back every permission (the daemon's reset re-seeds the projects).
    emulator[0].reset()
    emulator[0].seed_projects([PROJECT])
    assert held(client, ASKED) == ASKED
