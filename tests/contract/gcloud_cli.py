"""Run Google's own CLI, gcloud, against in-process lab emulators, never against Google.

The recipe is in reference/gcp-clients.md: a CLOUDSDK_CONFIG folder of the test's own,
``auth/disable_credentials``, and ``api_endpoint_overrides/<api>`` for each API. The
configuration is written as ``gcloud config set`` writes it, which saves a CLI start per
property. ``run`` refuses a command whose API has no override: gcloud would send it to
Google.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GCLOUD = shutil.which("gcloud")
SKIP_REASON = "gcloud (Google Cloud CLI) is not installed"

# The first word of a gcloud command and the API (override key) it talks to.
COMMAND_APIS = {
    "storage": "storage",
    "compute": "compute",
    "secrets": "secretmanager",
    "sql": "sql",
    "dns": "dns",
}


def override_for(api: str, base_url: str) -> str:
    """The endpoint override of ``api`` for an emulator at ``base_url``: storage and
    compute include their service path, as their discovery documents do."""
    suffix = {"storage": "storage/v1/", "compute": "compute/v1/"}.get(api, "")
    return f"{base_url.rstrip('/')}/{suffix}"


class Gcloud:
    """One private gcloud configuration pointed at the given lab endpoints."""

    def __init__(
        self,
        config: Path,
        endpoints: dict[str, str],
        project: str,
        properties: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """``endpoints`` maps an API (``storage``, ``compute``, ``secretmanager``, ...)
        to its emulator's base URL; ``properties`` adds ``{section: {name: value}}``."""
        self.config = config
        self.apis = set(endpoints)
        sections: dict[str, dict[str, str]] = {
            "auth": {"disable_credentials": "true"},
            "component_manager": {"disable_update_check": "true"},
            "core": {"disable_usage_reporting": "true", "project": project},
            "api_endpoint_overrides": {
                api: override_for(api, url) for api, url in endpoints.items()
            },
        }
        for section, values in (properties or {}).items():
            sections.setdefault(section, {}).update(values)
        profile = config / "configurations" / "config_default"
        profile.parent.mkdir(parents=True, exist_ok=True)
        profile.write_text(
            "".join(
                f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
                for section, values in sections.items()
            )
        )
        (config / "active_config").write_text("default")

    def run(
        self, *args: str, stdin: str | None = None, cwd: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        api = COMMAND_APIS.get(args[0])
        if api is None or api not in self.apis:
            raise AssertionError(f"refusing gcloud {args[0]}: no lab endpoint override for it")
        return subprocess.run(
            [GCLOUD or "gcloud", *args, "--quiet"],
            env={**os.environ, "CLOUDSDK_CONFIG": str(self.config)},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )


def write_pattern(path: Path, size: int) -> None:
    """A cheap, position-dependent pattern (a misplaced block would differ), written in
    1 MiB blocks so the file is never held in memory."""
    block = bytes(range(256)) * 4096
    with path.open("wb") as out:
        index = 0
        while size > 0:
            piece = (index.to_bytes(8, "big") + block[8:])[:size]
            out.write(piece)
            size -= len(piece)
            index += 1
