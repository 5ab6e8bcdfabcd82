"""The one place that builds Google clients, for Google and the lab alike.

With endpoints set (the lab), clients use anonymous credentials and plain HTTP or an
insecure gRPC channel; otherwise they use Application Default Credentials and Google's
endpoints. Tasks ask this factory for clients and never build their own.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import grpc
from google.api_core.client_options import ClientOptions
from google.api_core.future.polling import DEFAULT_POLLING
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import compute_v1, dns, run_v2, sqladmin_v1, storage  # type: ignore[attr-defined]
from google.cloud.sqladmin_v1.services.sql_backup_runs_service.transports import (
    SqlBackupRunsServiceGrpcTransport,
)
from google.cloud.sqladmin_v1.services.sql_instances_service.transports import (
    SqlInstancesServiceGrpcTransport,
)
from google.cloud.sqladmin_v1.services.sql_operations_service.transports import (
    SqlOperationsServiceGrpcTransport,
)

from lifeboat.endpoints import ResolvedEndpoints


class ClientFactory:
    """Builds and caches one client of each kind per factory (clients are thread-safe)."""

    def __init__(self, endpoints: ResolvedEndpoints):
        self.endpoints = endpoints
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None

    @property
    def polling(self) -> Any:
        """How long-running operations are polled: quickly in the lab, gently at Google."""
        if self.endpoints.is_google:
            return DEFAULT_POLLING.with_delay(initial=1.0, maximum=10.0, multiplier=1.5)
        return DEFAULT_POLLING.with_delay(initial=0.02, maximum=0.25, multiplier=1.5)

    @property
    def poll_interval(self) -> tuple[float, float]:
        """(first, largest) seconds between polls for the hand-polled APIs (DNS, SQL, Compute)."""
        return (1.0, 10.0) if self.endpoints.is_google else (0.02, 0.25)

    def _credentials(self) -> Credentials | None:
        # None makes the libraries use Application Default Credentials against Google.
        return AnonymousCredentials() if not self.endpoints.is_google else None  # type: ignore[no-untyped-call]

    @staticmethod
    def _options(endpoint: str | None) -> ClientOptions | None:
        return ClientOptions(api_endpoint=endpoint) if endpoint else None

    def _sql_channel(self) -> grpc.Channel:
        with self._lock:
            if self._channel is None:
                assert self.endpoints.sql_grpc is not None
                self._channel = grpc.insecure_channel(self.endpoints.sql_grpc)
            return self._channel

    @functools.cache  # noqa: B019 - one client per factory and project is the point
    def dns(self, project: str) -> dns.Client:
        return dns.Client(
            project=project,
            credentials=self._credentials(),
            client_options=self._options(self.endpoints.dns),
        )

    @functools.cached_property
    def run_services(self) -> run_v2.ServicesClient:
        return run_v2.ServicesClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.run),
        )

    @functools.cached_property
    def run_revisions(self) -> run_v2.RevisionsClient:
        return run_v2.RevisionsClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.run),
        )

    @functools.cached_property
    def sql_instances(self) -> sqladmin_v1.SqlInstancesServiceClient:
        if self.endpoints.sql_grpc is None:
            return sqladmin_v1.SqlInstancesServiceClient()
        transport = SqlInstancesServiceGrpcTransport(channel=self._sql_channel())
        return sqladmin_v1.SqlInstancesServiceClient(transport=transport)

    @functools.cached_property
    def sql_operations(self) -> sqladmin_v1.SqlOperationsServiceClient:
        if self.endpoints.sql_grpc is None:
            return sqladmin_v1.SqlOperationsServiceClient()
        transport = SqlOperationsServiceGrpcTransport(channel=self._sql_channel())
        return sqladmin_v1.SqlOperationsServiceClient(transport=transport)

    @functools.cached_property
    def sql_backup_runs(self) -> sqladmin_v1.SqlBackupRunsServiceClient:
        if self.endpoints.sql_grpc is None:
            return sqladmin_v1.SqlBackupRunsServiceClient()
        transport = SqlBackupRunsServiceGrpcTransport(channel=self._sql_channel())
        return sqladmin_v1.SqlBackupRunsServiceClient(transport=transport)

    @functools.cached_property
    def url_maps(self) -> compute_v1.UrlMapsClient:
        return compute_v1.UrlMapsClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.compute),
        )

    @functools.cached_property
    def global_operations(self) -> compute_v1.GlobalOperationsClient:
        # Built here with the same endpoint: the library's own .result() poller ignores
        # client_options and would go to Google (reference/gcp-clients.md).
        return compute_v1.GlobalOperationsClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.compute),
        )

    @functools.cache  # noqa: B019
    def storage(self, project: str) -> storage.Client:
        options = {"api_endpoint": self.endpoints.storage} if self.endpoints.storage else None
        return storage.Client(
            project=project, credentials=self._credentials(), client_options=options
        )
