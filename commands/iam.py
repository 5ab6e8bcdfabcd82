"""`lifeboat iam`: the IAM permissions each flow needs, per project, from ``lifeboat/iam.py``.

Read-only: it reads the environment's topology file and never calls the cloud. With
``--role-yaml`` it prints custom roles for ``gcloud iam roles create --file``: one role
per project, as YAML documents separated by ``---`` (``--project`` picks one, the file
that gcloud takes). One role per project, not one with the union: a union would grant each
project what only the others need (DNS changes where only Cloud Run lives, say), and a
custom role is created in one project (``projects.roles.create``, parent
``projects/{PROJECT_ID}``), so a role per project is what gcloud makes anyway. An
organization-level role with the union is the alternative this does not print.
"""

from __future__ import annotations

import argparse
import re

import yaml

from lifeboat.iam import (
    CALLS,
    COMMANDS,
    buckets_project,
    grants_by_flow,
    grants_by_project,
    places_in,
)
from lifeboat.topology import Topology, TopologyError, load_topology

# gcloud's launch stage for a role meant to be used (sdk/gcloud/reference/iam/roles/create).
STAGE = "GA"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    iam = sub.add_parser("iam", help="print the IAM permissions each flow needs, per project")
    iam.add_argument("--env", required=True, help="environment whose topology names the projects")
    iam.add_argument(
        "--role-yaml",
        action="store_true",
        help="print custom-role YAML for `gcloud iam roles create --file`, one per project",
    )
    iam.add_argument("--project", default=None, help="with --role-yaml: only this project's role")


def run(args: argparse.Namespace) -> int:
    topology = load_topology(args.env)
    if args.role_yaml:
        print(role_yaml(topology, args.project), end="")
    else:
        print(render_text(topology), end="")
    return 0


def render_text(topology: Topology) -> str:
    """Per flow, per project, the permissions; then the notes an operator needs."""
    lines = [
        f"Permissions Lifeboat's flows need in environment {topology.environment!r}",
        f"(from lifeboat/iam.py: {len(CALLS)} Google API calls; read-only, nothing was called)",
        "",
    ]
    for flow, projects in grants_by_flow(topology).items():
        lines.append(
            f"lifeboat {flow} (run with your own credentials; not in the roles)"
            if flow in COMMANDS
            else flow
        )
        if not projects:
            lines.append("  (no Google API call)")
        for project, permissions in projects.items():
            lines.append(f"  {project} ({', '.join(places_in(project, topology))})")
            lines.extend(f"    {p}" for p in permissions)
        lines.append("")
    lines.extend(_notes(topology))
    return "\n".join(lines) + "\n"


def _notes(topology: Topology) -> list[str]:
    notes = [
        "Notes:",
        "- iam.serviceAccounts.actAs is checked on each Cloud Run service's runtime service "
        "account: a region's grant covers the accounts in that region's project; for an "
        "account kept elsewhere, grant roles/iam.serviceAccountUser on it.",
        "- A Cloud SQL export writes to the backup bucket as the instance's own service "
        "account: grant it storage.objects.create on that bucket.",
    ]
    if topology.backups.project is None:
        notes.append(
            f"- backups.project is not set: the buckets are taken to be in "
            f"{buckets_project(topology)} (the primary region's project)."
        )
    notes.append(
        "- watch reads Cloud Monitoring in the project of the region that serves users: "
        "both regions' projects need monitoring.timeSeries.list (roles/monitoring.viewer "
        "holds it)."
    )
    return notes


def role_id(environment: str) -> str:
    """A custom role id IAM accepts: letters, digits, underscores and periods, 3 to 64
    characters (iam/reference/rest/v1/projects.roles/create); environment names have 31
    at most."""
    return "lifeboat_" + re.sub(r"[^A-Za-z0-9_.]", "_", environment)


def role_documents(topology: Topology) -> dict[str, dict[str, object]]:
    """project → the custom role for it: every permission any flow needs there."""
    return {
        project: {
            # IAM limits a title to 100 UTF-8 bytes (iam/reference/rest/v1/projects.roles);
            # at most 9 + 31 + 33 here.
            "title": f"Lifeboat {topology.environment} ({project})",
            "description": (
                f"Lifeboat {topology.environment}: {', '.join(places_in(project, topology))}. "
                f"From `lifeboat iam --env {topology.environment} --role-yaml`."
            ),
            "stage": STAGE,
            "includedPermissions": list(permissions),
        }
        for project, permissions in grants_by_project(topology).items()
    }


def role_yaml(topology: Topology, project: str | None = None) -> str:
    """The roles as YAML documents, each headed by the gcloud command that creates it."""
    documents = role_documents(topology)
    if project is not None:
        if project not in documents:
            raise TopologyError(
                f"iam: no permission is needed in project {project!r}; "
                f"projects: {', '.join(documents)}"
            )
        documents = {project: documents[project]}
    rid = role_id(topology.environment)
    parts = [
        f"# gcloud iam roles create {rid} --project={name} --file=FILE\n"
        + yaml.safe_dump(body, sort_keys=False, width=100)
        for name, body in documents.items()
    ]
    return "---\n".join(parts)
