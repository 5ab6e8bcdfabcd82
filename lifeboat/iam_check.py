"""What readiness asks of each project's IAM, and how it words the answer.

The pure half of readiness's ``permissions`` rows: from the table in ``lifeboat/iam.py``,
which permissions the worker needs in each project and which flows need each one; how
those are cut into ``testIamPermissions`` calls; and the verdict once Google has said
which it holds. ``tasks/resource_manager.py`` makes the calls.

Google allows at most 100 permissions in one call (a limit callers report, e.g.
openshift/cloud-credential-operator#94, and the lab enforces); wildcards are refused
(``TestIamPermissionsRequest.permissions``: "Permissions with wildcards ... are not
allowed"), and the table names none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from lifeboat.iam import CALLS, FLOWS, Call, projects_of
from lifeboat.topology import Topology

MAX_PER_CALL = 100

# project → permission → the flows that need it there, in FLOWS order.
Needs = dict[str, dict[str, tuple[str, ...]]]


def needs_by_project(topology: Topology, calls: Iterable[Call] = CALLS) -> Needs:
    """Every permission the worker's flows need, per project, with the flows needing it.

    The operator's commands (``discover``) are left out: the worker does not run them.
    """
    found: dict[str, dict[str, set[str]]] = {}
    for call in calls:
        for flow in (f for f in call.flows if f in FLOWS):
            for place in call.places(flow):
                for project in projects_of(place, topology):
                    for permission in call.permissions:
                        found.setdefault(project, {}).setdefault(permission, set()).add(flow)
    order = {flow: i for i, flow in enumerate(FLOWS)}
    return {
        project: {
            permission: tuple(sorted(flows, key=order.__getitem__))
            for permission, flows in sorted(permissions.items())
            if flows
        }
        for project, permissions in sorted(found.items())
    }


def batches(permissions: Sequence[str], size: int = MAX_PER_CALL) -> Iterator[list[str]]:
    """The permissions in calls of at most ``size``, in order."""
    for start in range(0, len(permissions), size):
        yield list(permissions[start : start + size])


def missing(needed: Mapping[str, Sequence[str]], held: Iterable[str]) -> dict[str, Sequence[str]]:
    """The needed permissions not held, each with the flows that need it."""
    have = set(held)
    return {p: flows for p, flows in needed.items() if p not in have}


def verdict(needed: Mapping[str, Sequence[str]], held: Iterable[str]) -> tuple[bool, str, str]:
    """(green, measured, detail) of one project's ``permissions`` row."""
    lacking = missing(needed, held)
    measured = f"{len(needed) - len(lacking)}/{len(needed)} held"
    if not lacking:
        return True, measured, "the worker holds every permission its flows need here"
    named = "; ".join(f"{p} (needed by {', '.join(flows)})" for p, flows in lacking.items())
    return False, measured, f"missing {len(lacking)}: {named}"
