"""The Cloud SQL resources the backend keeps: instances, operations and backup runs.

Plain dataclasses with enum values as their API names; ``wire.py`` turns them into the
proto-plus messages the gRPC service returns.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lab.sql.postgres import PgCluster

DATABASE_VERSION = "POSTGRES_15"
DEFAULT_TIER = "db-custom-2-7680"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,96}[a-z0-9]$|^[a-z]$")


def now() -> datetime:
    return datetime.now(UTC)


def valid_instance_name(name: str) -> bool:
    """Cloud SQL's rule: lowercase letters, digits and hyphens, starting with a letter."""
    return bool(_NAME.match(name))


@dataclass
class Instance:
    project: str
    name: str
    region: str
    cluster: PgCluster
    tier: str = DEFAULT_TIER
    labels: dict[str, str] = field(default_factory=dict)
    master: str | None = None  # instance name in the same project
    replicas: list[str] = field(default_factory=list)
    state: str = "PENDING_CREATE"
    settings_version: int = 1
    create_time: datetime = field(default_factory=now)
    busy_with: str | None = None  # the one operation allowed to run on it

    @property
    def key(self) -> tuple[str, str]:
        return (self.project, self.name)

    @property
    def instance_type(self) -> str:
        return "READ_REPLICA_INSTANCE" if self.master else "CLOUD_SQL_INSTANCE"

    @property
    def host(self) -> str:
        return self.cluster.host

    @property
    def port(self) -> int:
        return self.cluster.port


@dataclass
class OperationError:
    code: str
    message: str


@dataclass
class Operation:
    project: str
    target: str
    operation_type: str
    name: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "PENDING"
    insert_time: datetime = field(default_factory=now)
    start_time: datetime | None = None
    end_time: datetime | None = None
    errors: list[OperationError] = field(default_factory=list)
    # Echoed back like Google does, so a caller can tell which export or backup it was.
    export_uri: str | None = None
    export_databases: list[str] = field(default_factory=list)
    backup_id: int | None = None


@dataclass
class BackupRun:
    id: int
    project: str
    instance: str
    region: str
    folder: Path
    description: str = ""
    status: str = "ENQUEUED"
    enqueued_time: datetime = field(default_factory=now)
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: str | None = None
