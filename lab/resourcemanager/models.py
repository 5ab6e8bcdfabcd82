"""The projects the lab holds, and which permissions the caller holds on each.

The lab has one caller (every client uses anonymous credentials), so a grant is per
project: by default the caller holds every permission on every project, so an untouched
lab answers as a fully granted worker would. The control API (``/_lab/iam``) narrows a
project to a list of permissions held, or takes some away. The lab knows nothing of which
permissions any product needs: it answers for whatever names it is asked about.

What Google documents, and the lab keeps (lab/FIDELITY.md cites each):
- the answer is the subset of the asked permissions the caller holds; none held answers
  ``{}`` (an empty repeated field is left out of proto3 JSON);
- permissions with wildcards (``*``, ``storage.*``) are not allowed;
- at most 100 permissions per call;
- a project that does not exist answers 403 PERMISSION_DENIED, as one the caller may not
  see does: Resource Manager does not tell the two apart.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from lab.resourcemanager.exceptions import InvalidArgument, PermissionDenied

MAX_PERMISSIONS = 100
# service.resource.verb, each part letters and digits (IAM permission names).
_PERMISSION = re.compile(r"^[a-z][a-zA-Z0-9]*(\.[a-zA-Z][a-zA-Z0-9]*){2,}$")


@dataclass
class Grant:
    """What the caller holds on one project: ``held`` None means every permission."""

    held: frozenset[str] | None = None
    revoked: frozenset[str] = field(default_factory=frozenset)

    def holds(self, permission: str) -> bool:
        if permission in self.revoked:
            return False
        return self.held is None or permission in self.held

    def to_json(self) -> dict[str, object]:
        return {
            "held": "every permission" if self.held is None else sorted(self.held),
            "revoked": sorted(self.revoked),
        }


class ResourceManagerBackend:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._projects: set[str] = set()
        self._grants: dict[str, Grant] = {}

    # -- seeding and control -------------------------------------------------------
    def seed_projects(self, projects: Iterable[str]) -> None:
        with self._lock:
            self._projects.update(projects)

    def set_grant(
        self, project: str, held: Iterable[str] | None, revoked: Iterable[str] = ()
    ) -> Grant:
        """Replace what the caller holds on ``project`` (``held`` None: everything)."""
        with self._lock:
            if project not in self._projects:
                raise KeyError(project)
            grant = Grant(None if held is None else frozenset(held), frozenset(revoked))
            self._grants[project] = grant
            return grant

    def reset(self) -> None:
        """Forget the projects and every narrowed grant (the seed adds the projects back)."""
        with self._lock:
            self._projects.clear()
            self._grants.clear()

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "projects": sorted(self._projects),
                "grants": {p: g.to_json() for p, g in sorted(self._grants.items())},
            }

    # -- the API ---------------------------------------------------------------------
    def test_iam_permissions(self, project: str, permissions: list[str]) -> dict[str, object]:
        """``projects.testIamPermissions``: the asked permissions the caller holds, in order."""
        if len(permissions) > MAX_PERMISSIONS:
            raise InvalidArgument(
                f"The number of permissions in the request ({len(permissions)}) exceeds "
                f"the maximum of {MAX_PERMISSIONS}."
            )
        for permission in permissions:
            if "*" in permission:
                raise InvalidArgument(
                    f"Permissions with wildcards are not allowed: {permission!r}."
                )
            if not _PERMISSION.match(permission):
                raise InvalidArgument(f"Invalid permission name: {permission!r}.")
        with self._lock:
            if project not in self._projects:
                raise PermissionDenied("The caller does not have permission")
            grant = self._grants.get(project, Grant())
        held = list(dict.fromkeys(p for p in permissions if grant.holds(p)))
        # proto3 JSON leaves an empty repeated field out: nothing held answers {}.
        return {"permissions": held} if held else {}
