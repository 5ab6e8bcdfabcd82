"""Secret Manager resource names, parsed in one place: ``projects/P/secrets/S`` and
``projects/P/secrets/S/versions/V`` (V a number, or an alias such as ``latest``).

P is a project id or number, as whoever wrote the name chose: Secret Manager itself
answers with the number; Lifeboat's topology and IAM table use the id, which the API
takes as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^projects/([^/]+)/secrets/([^/]+)(?:/versions/([^/]+))?$")


@dataclass(frozen=True)
class SecretName:
    project: str
    secret: str
    version: str | None = None

    @classmethod
    def parse(cls, name: str) -> SecretName | None:
        """The parts of a secret or secret version name; None for anything else."""
        match = _NAME.match(name)
        if match is None:
            return None
        project, secret, version = match.groups()
        return cls(project, secret, version)

    @property
    def secret_resource(self) -> str:
        """``projects/P/secrets/S``, whatever version this names."""
        return f"projects/{self.project}/secrets/{self.secret}"
