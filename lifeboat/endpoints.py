"""Resolve where each API lives: Google by default, or the addresses of a running lab."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lifeboat.topology import API_NAMES, REPO_ROOT, Endpoints, TopologyError

LAB_DIR_ENV = "LIFEBOAT_LAB_DIR"


class ResolvedEndpoints(BaseModel):
    """Concrete addresses; None means the real Google endpoint."""

    model_config = ConfigDict(frozen=True)

    dns: str | None = None
    run: str | None = None
    sql: str | None = None
    compute: str | None = None
    storage: str | None = None
    secretmanager: str | None = None
    monitoring: str | None = None
    resourcemanager: str | None = None
    front_door: str | None = None
    control: str | None = None
    region_apps: dict[str, str] = {}
    # The same front door and region apps over HTTPS, and the CA that signed them.
    front_door_https: str | None = None
    region_apps_https: dict[str, str] = {}
    tls_ca: str | None = None
    # How much faster than the world the lab's clock runs (its Monitoring windows and
    # modelled delays); Google's runs at 1. Waits the product measures in the world's
    # seconds (a rollback's validation period) are scaled by it.
    time_scale: float = 1.0

    @property
    def is_google(self) -> bool:
        return not any(getattr(self, name) for name in API_NAMES)


def lab_dir(configured: str | None = None) -> Path:
    """The lab folder: $LIFEBOAT_LAB_DIR, else the topology's lab_dir under the repo root."""
    override = os.environ.get(LAB_DIR_ENV)
    if override:
        return Path(override)
    return REPO_ROOT / (configured or ".lab")


def read_lab_endpoints(directory: Path) -> dict[str, object]:
    path = directory / "endpoints.json"
    if not path.is_file():
        raise TopologyError(
            f"endpoints: the lab is not running ({path} is missing); "
            "start it with `lifeboat lab up`"
        )
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def resolve(endpoints: Endpoints) -> ResolvedEndpoints:
    """Where each API lives. A lab that lacks one API's address is refused, naming it:
    a missing key must never quietly mean "Google" for that one API."""
    if endpoints.lab_dir is None:
        return ResolvedEndpoints(**{name: getattr(endpoints, name) for name in API_NAMES})
    directory = lab_dir(endpoints.lab_dir)
    lab = read_lab_endpoints(directory)
    missing = [name for name in API_NAMES if not lab.get(name)]
    if missing:
        raise TopologyError(
            f"endpoints: the lab at {directory} gives no address for {', '.join(missing)}; "
            "restart it with this version (`lifeboat lab down && lifeboat lab up`)"
        )
    return ResolvedEndpoints.model_validate(
        {k: lab.get(k) for k in ResolvedEndpoints.model_fields if k in lab}
    )
