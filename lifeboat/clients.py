"""The one place that builds Google clients, for Google and the lab alike.

With endpoints set (the lab), clients use anonymous credentials and plain HTTP;
otherwise they use Application Default Credentials and Google's endpoints. Tasks ask
this factory for clients and never build their own.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from google.api_core.client_options import ClientOptions
from google.api_core.future.polling import DEFAULT_POLLING
from google.auth.credentials import AnonymousCredentials, Credentials

from lifeboat.discovery_api import DiscoveryApi
from lifeboat.endpoints import ResolvedEndpoints
from lifeboat.sqladmin import SqlAdmin

# Each Google library is imported by the builder that needs it, not here: every flow run
# is a new process, and google.cloud.compute_v1 alone takes 1.1-2.5 s of CPU to import (its
# package loads all of Compute's services). No switch, backup, drill or readiness run
# needs it: their url-map calls go through ``compute``, the discovery client.
if TYPE_CHECKING:
    from google.cloud import compute_v1, dns, resourcemanager_v3, run_v2, secretmanager_v1, storage  # type: ignore[attr-defined]


class ClientFactory:
    """Builds and caches one client of each kind per factory (clients are thread-safe)."""

    def __init__(self, endpoints: ResolvedEndpoints):
        self.endpoints = endpoints

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

    @functools.cache  # noqa: B019 - one client per factory and project is the point
    def dns(self, project: str) -> dns.Client:
        from google.cloud import dns  # type: ignore[attr-defined]

        return dns.Client(
            project=project,
            credentials=self._credentials(),
            client_options=self._options(self.endpoints.dns),
        )

    @functools.cached_property
    def run_services(self) -> run_v2.ServicesClient:
        from google.cloud import run_v2

        return run_v2.ServicesClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.run),
        )

    @functools.cached_property
    def run_revisions(self) -> run_v2.RevisionsClient:
        from google.cloud import run_v2

        return run_v2.RevisionsClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.run),
        )

    @functools.cached_property
    def sql(self) -> SqlAdmin:
        """Cloud SQL Admin over REST (Google serves no gRPC for it; see lifeboat/sqladmin.py)."""
        return SqlAdmin(self.endpoints.sql)

    @functools.cached_property
    def url_maps(self) -> compute_v1.UrlMapsClient:
        from google.cloud import compute_v1

        return compute_v1.UrlMapsClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.compute),
        )

    @functools.cached_property
    def backend_services(self) -> compute_v1.BackendServicesClient:
        from google.cloud import compute_v1

        # The url-map's backend services, which the config backup keeps beside it.
        return compute_v1.BackendServicesClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.compute),
        )

    @functools.cached_property
    def global_operations(self) -> compute_v1.GlobalOperationsClient:
        from google.cloud import compute_v1

        # Built here with the same endpoint: the library's own .result() poller ignores
        # client_options and would go to Google (reference/gcp-clients.md).
        return compute_v1.GlobalOperationsClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.compute),
        )

    @functools.cache  # noqa: B019
    def storage(self, project: str) -> storage.Client:
        from google.cloud import storage  # type: ignore[attr-defined]

        options = {"api_endpoint": self.endpoints.storage} if self.endpoints.storage else None
        return storage.Client(
            project=project, credentials=self._credentials(), client_options=options
        )

    @functools.cached_property
    def secret_manager(self) -> secretmanager_v1.SecretManagerServiceClient:
        from google.cloud import secretmanager_v1

        # REST, like Run and Compute: the lab serves Secret Manager over HTTP/JSON.
        return secretmanager_v1.SecretManagerServiceClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.secretmanager),
        )

    @functools.cached_property
    def compute(self) -> DiscoveryApi:
        """Compute Engine v1 over REST, through Google's discovery client: for the url-map
        calls every switch and readiness run makes (the CDN purge, the url-map look-up).

        google.cloud.compute_v1 speaks the same REST surface, but importing it costs each
        flow-run process about 1.1 s of CPU (its package defines every Compute type), where
        building this client from the bundled discovery document costs about 0.03 s. The
        document's base path is ``compute/v1/``, and an endpoint override replaces the
        whole base, so the lab's endpoint gets the path appended.
        """
        endpoint = self.endpoints.compute
        return DiscoveryApi(
            "compute", "v1", f"{endpoint.rstrip('/')}/compute/v1/" if endpoint else None
        )

    @functools.cached_property
    def monitoring(self) -> DiscoveryApi:
        """Cloud Monitoring v3 over REST, through Google's discovery client.

        google-cloud-monitoring (2.32.0) generates gRPC transports only: its
        ``MetricServiceClient`` has no ``transport="rest"``. The discovery client speaks
        the same REST surface Google serves (monitoring/api/ref_v3/rest) and the lab serves.
        """
        return DiscoveryApi("monitoring", "v3", self.endpoints.monitoring)

    @functools.cached_property
    def projects(self) -> resourcemanager_v3.ProjectsClient:
        from google.cloud import resourcemanager_v3

        # Resource Manager v3 over REST: readiness asks testIamPermissions of each project.
        return resourcemanager_v3.ProjectsClient(
            credentials=self._credentials(),
            transport="rest",
            client_options=self._options(self.endpoints.resourcemanager),
        )
