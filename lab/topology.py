"""The lab's own reading of a topology file: only the names it seeds and serves.

The lab imports nothing from the product, so that an emulator cannot inherit the
product's assumptions by sharing its code. It reads the same YAML with this small model
and ignores every field it has no use for; whether a file is a valid topology is the
product's question (``lifeboat validate``), not the lab's.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class TopologyFileError(ValueError):
    """The file cannot describe a lab: unreadable, not YAML, or missing what the lab seeds."""


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Role(StrEnum):
    primary = "primary"
    secondary = "secondary"


class Region(_Read):
    name: str
    project: str


class Regions(_Read):
    primary: Region
    secondary: Region

    def by_role(self, role: Role) -> Region:
        return self.primary if role is Role.primary else self.secondary


class Scaling(_Read):
    min: int
    max: int


class Service(_Read):
    name: str
    image: str
    active_scaling: Scaling
    standby_scaling: Scaling


class Record(_Read):
    name: str
    type: str = "A"
    ttl: int
    rrdatas: dict[Role, list[str]]


class Dns(_Read):
    project: str
    zone: str
    dns_name: str
    records: list[Record]


class SqlInstance(_Read):
    project: str
    instance: str
    region: str


class AppSecret(_Read):
    name: str = "prod-database-url"
    project: str

    @property
    def resource(self) -> str:
        return f"projects/{self.project}/secrets/{self.name}"


class CloudSql(_Read):
    primary: SqlInstance
    replica: SqlInstance
    databases: list[str]
    app_user: str = "varai_user"
    app_secret: AppSecret


class Cdn(_Read):
    project: str
    url_map: str
    host: str
    assets_bucket: str | None = None


class Health(_Read):
    host: str


class Mongo(_Read):
    databases: list[str]


class BackupCopy(_Read):
    bucket: str
    location: str


class Backups(_Read):
    bucket: str
    records_bucket: str
    copies: list[BackupCopy] = []


class LabTopology(_Read):
    environment: str
    regions: Regions
    services: list[Service]
    dns: Dns
    cloud_sql: CloudSql
    cdn: Cdn
    health: Health
    mongodb: Mongo
    backups: Backups


def read_topology(path: Path) -> LabTopology:
    """The lab's view of the topology at ``path``; TopologyFileError names what is wrong."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TopologyFileError(f"{path}: {exc}") from exc
    try:
        return LabTopology.model_validate(data)
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise TopologyFileError(f"{path}: {fields}") from exc
