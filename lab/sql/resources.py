"""The Cloud SQL resources the backend keeps: instances, operations and backup runs.

Plain dataclasses with enum values as their API names; ``wire.py`` turns them into the
REST JSON the API returns.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.sql.postgres import PgCluster

DATABASE_VERSION = "POSTGRES_15"
DEFAULT_TIER = "db-custom-2-7680"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,96}[a-z0-9]$|^[a-z]$")


def now() -> datetime:
    return datetime.now(UTC)


def reachable(settings: dict[str, Any]) -> bool:
    """Whether clients may connect: a private network (the lab's callers are inside it),
    or an authorized network covering the loopback the lab's callers come from. A public
    IP with no authorized network accepts no connection (cloud.google.com/sql/docs/
    postgres/configure-ip)."""
    ip = settings.get("ipConfiguration") or {}
    if ip.get("privateNetwork"):
        return True
    for entry in ip.get("authorizedNetworks") or []:
        try:
            if ipaddress.ip_address("127.0.0.1") in ipaddress.ip_network(str(entry.get("value"))):
                return True
        except ValueError:
            continue
    return False


def valid_instance_name(name: str) -> bool:
    """Cloud SQL's rule: lowercase letters, digits and hyphens, starting with a letter."""
    return bool(_NAME.match(name))


def pitr_enabled(settings: dict[str, Any]) -> bool:
    """``settings.backupConfiguration.pointInTimeRecoveryEnabled``."""
    backup = settings.get("backupConfiguration") or {}
    return bool(backup.get("pointInTimeRecoveryEnabled"))


def log_retention_days(settings: dict[str, Any]) -> int:
    """Days of transaction logs kept for point-in-time recovery: as set, else Google's
    default, 14 for Enterprise Plus and 7 for Enterprise (sql/docs/sqlserver/backup-recovery/
    pitr, "Log storage for PITR"; the PostgreSQL page gives the same 1-7 and 1-35 ranges)."""
    backup = settings.get("backupConfiguration") or {}
    default = 14 if settings.get("edition") == "ENTERPRISE_PLUS" else 7
    try:
        return int(backup.get("transactionLogRetentionDays") or default)
    except (TypeError, ValueError):
        return default


@dataclass
class BaseBackup:
    """A physical copy of the cluster a point-in-time restore starts from; ``taken`` is when
    it became consistent, so it serves any point at or after that."""

    taken: datetime
    folder: Path


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
    database_version: str = DATABASE_VERSION
    # The rest of the instance's Settings as the caller gave them (network, backups,
    # flags, edition...), kept and returned the way Google echoes them.
    settings: dict[str, Any] = field(default_factory=dict)
    create_time: datetime = field(default_factory=now)
    busy_with: str | None = None  # the one operation allowed to run on it
    base_backups: list[BaseBackup] = field(default_factory=list)  # oldest first

    @property
    def wal_archive(self) -> Path:
        """Where its WAL is archived: next to its data, so it goes when the instance does."""
        assert self.cluster.archive is not None  # every instance's cluster archives
        return self.cluster.archive

    @property
    def key(self) -> tuple[str, str]:
        return (self.project, self.name)

    @property
    def instance_type(self) -> str:
        return "READ_REPLICA_INSTANCE" if self.master else "CLOUD_SQL_INSTANCE"

    @property
    def ip_types(self) -> list[str]:
        """PRIVATE with a VPC network, PRIMARY (public) unless ipv4 is turned off."""
        ip = self.settings.get("ipConfiguration") or {}
        types = ["PRIVATE"] if ip.get("privateNetwork") else []
        if ip.get("ipv4Enabled", True):
            types.insert(0, "PRIMARY")
        return types

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
    import_uri: str | None = None
    import_database: str | None = None
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
