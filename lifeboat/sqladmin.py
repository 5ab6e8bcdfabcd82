"""Cloud SQL Admin v1 over REST, the way Google serves it, with typed replies.

Google serves this API over HTTP/JSON only (cloud.google.com/sql/docs/postgres/admin-api/
libraries); google-cloud-sql's gRPC clients get UNIMPLEMENTED from it. Its documented
Python client is google-api-python-client's discovery client, built here from the
discovery document bundled in the package, so nothing is fetched at run time.

lifeboat/discovery_api.py evens out what the discovery client does differently from the
other Google clients (its errors, its transport's threads).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from googleapiclient.http import HttpRequest
from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from lifeboat.discovery_api import DiscoveryApi


class _Api(BaseModel):
    """Reads the API's camelCase JSON; fields Lifeboat does not read are ignored."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="ignore",
    )


class _Passthrough(_Api):
    """A nested settings object copied to a new instance as it is: unknown fields are kept."""

    model_config = ConfigDict(extra="allow")


class IpMapping(_Api):
    type: str = ""
    ip_address: str = ""


class AclEntry(_Passthrough):
    value: str = ""


class IpConfiguration(_Passthrough):
    ipv4_enabled: bool | None = None
    private_network: str | None = None
    authorized_networks: list[AclEntry] = []


class BackupConfiguration(_Passthrough):
    enabled: bool | None = None
    point_in_time_recovery_enabled: bool | None = None
    transaction_log_retention_days: int | None = None


class DatabaseFlag(_Passthrough):
    name: str = ""
    value: str | None = None


class Settings(_Api):
    tier: str = ""
    edition: str | None = None
    availability_type: str | None = None
    user_labels: dict[str, str] = {}
    ip_configuration: IpConfiguration | None = None
    backup_configuration: BackupConfiguration | None = None
    database_flags: list[DatabaseFlag] = []
    deletion_protection_enabled: bool | None = None
    data_disk_size_gb: int | None = None


class Instance(_Api):
    name: str
    project: str = ""
    region: str = ""
    state: str = ""
    instance_type: str = ""
    database_version: str = ""
    master_instance_name: str | None = None
    replica_names: list[str] = []
    ip_addresses: list[IpMapping] = []
    settings: Settings = Settings()


class OperationError(_Api):
    code: str = ""
    message: str = ""


class OperationErrors(_Api):
    errors: list[OperationError] = []


class BackupContext(_Api):
    backup_id: int | None = None


class ImportContext(_Api):
    uri: str = ""
    database: str = ""


class Operation(_Api):
    name: str
    status: str = ""
    operation_type: str = ""
    target_id: str = ""
    error: OperationErrors | None = None
    backup_context: BackupContext | None = None
    import_context: ImportContext | None = None

    @property
    def failure(self) -> str | None:
        """What went wrong, if the operation ended with errors (DONE does not mean success)."""
        if self.error is None or not self.error.errors:
            return None
        return "; ".join(f"{e.code}: {e.message}" for e in self.error.errors)


class BackupRun(_Api):
    id: int
    instance: str = ""
    status: str = ""
    type: str = ""
    description: str = ""
    enqueued_time: datetime | None = None
    end_time: datetime | None = None
    error: OperationError | None = None


class ListPage(_Api):
    items: list[dict[str, Any]] = []
    next_page_token: str | None = Field(None)


def settings_like(source: Instance, labels: dict[str, str], *, replica: bool) -> dict[str, Any]:
    """Settings for a new instance built after ``source``: same tier, edition, network and
    flags, so that it is reachable the way the source is (an instance inserted without
    ``ipConfiguration`` gets a public IP that accepts no connection). A replica takes no
    backup settings: Cloud SQL keeps backups and point-in-time recovery on primaries."""
    settings = source.settings
    body: dict[str, Any] = {"tier": settings.tier, "userLabels": dict(labels)}
    if settings.edition:
        body["edition"] = settings.edition
    if settings.ip_configuration is not None:
        body["ipConfiguration"] = settings.ip_configuration.model_dump(
            by_alias=True, exclude_unset=True
        )
    if settings.database_flags:
        body["databaseFlags"] = [
            flag.model_dump(by_alias=True, exclude_unset=True) for flag in settings.database_flags
        ]
    if not replica and settings.backup_configuration is not None:
        body["backupConfiguration"] = settings.backup_configuration.model_dump(
            by_alias=True, exclude_unset=True
        )
    if not replica and settings.data_disk_size_gb:
        body["dataDiskSizeGb"] = str(settings.data_disk_size_gb)
    return body


def insert_body(
    name: str, region: str, spec: dict[str, Any], labels: dict[str, str]
) -> dict[str, Any]:
    """An ``instances.insert`` body from a recorded spec (``databaseVersion`` and
    ``settings_like``'s settings), carrying ``labels`` instead of the source's."""
    settings = {**spec.get("settings", {}), "userLabels": dict(labels)}
    return {
        "name": name,
        "region": region,
        "databaseVersion": spec.get("databaseVersion"),
        "settings": settings,
    }


class SqlAdmin(DiscoveryApi):
    """The Cloud SQL Admin v1 discovery client, shared by threads, one connection each."""

    def __init__(self, endpoint: str | None):
        """``endpoint`` None means Google, with Application Default Credentials."""
        super().__init__("sqladmin", "v1", endpoint)

    def pages(self, make: Callable[..., HttpRequest], timeout: float) -> Iterator[dict[str, Any]]:
        """Every item of a paged list: ``make(service, token=...)`` builds each request."""
        token: str | None = None
        while True:
            page = ListPage.model_validate(self.call(functools.partial(make, token=token), timeout))
            yield from page.items
            if not page.next_page_token:
                return
            token = page.next_page_token
