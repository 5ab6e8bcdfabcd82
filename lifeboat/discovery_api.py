"""Google's discovery (REST) client for an API, shaped like the other Google clients.

Used for the APIs whose REST surface has no generated client that speaks REST: Cloud
SQL Admin (lifeboat/sqladmin.py) and Cloud Monitoring (google-cloud-monitoring 2.32.0
ships gRPC transports only; the lab serves Google's REST surface). Also for Compute's
url-map calls in flow runs, where google.cloud.compute_v1 costs 1.1 s of CPU to import
(ClientFactory.compute). It is built from the discovery document bundled in
google-api-python-client, so nothing is fetched at run time.

Two things the discovery client does differently from the other Google clients, and
that this module evens out:
- errors are ``googleapiclient.errors.HttpError``; they are turned into
  ``google.api_core.exceptions`` so that one classification (tasks/errors.py) serves all;
- its transport, httplib2, is not thread-safe: each thread gets its own connection,
  with the call's timeout.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httplib2
from google.api_core import exceptions as gexc
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest

_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


class DiscoveryApi:
    """One API's discovery client, shared by threads, one connection each."""

    def __init__(self, name: str, version: str, endpoint: str | None):
        """``endpoint`` None means Google, with Application Default Credentials."""
        self._endpoint = endpoint
        self._local = threading.local()
        self._credentials_lock = threading.Lock()
        self._credentials: Any = None
        options = {"api_endpoint": endpoint} if endpoint else None
        # The Http given here is only a placeholder: every call passes its own.
        self._service: Any = build(
            name,
            version,
            http=httplib2.Http(),
            static_discovery=True,
            client_options=options,
            cache_discovery=False,
        )

    @property
    def service(self) -> Any:
        """The discovery ``Resource``, e.g. ``service.instances().get(project=..., ...)``."""
        return self._service

    def call(self, make: Callable[[Any], HttpRequest], timeout: float) -> dict[str, Any]:
        """Build one request from the service and run it; Google's errors as api_core's."""
        request = make(self._service)
        try:
            result: dict[str, Any] = request.execute(http=self._http(timeout), num_retries=0)
        except HttpError as exc:
            raise _api_core_error(exc) from exc
        return result

    def _http(self, timeout: float) -> Any:
        cache: dict[float, Any] | None = getattr(self._local, "http", None)
        if cache is None:
            cache = self._local.http = {}
        if timeout not in cache:
            transport = httplib2.Http(timeout=timeout)
            cache[timeout] = transport if self._endpoint else self._authorized(transport)
        return cache[timeout]

    def _authorized(self, transport: httplib2.Http) -> Any:
        """Application Default Credentials over ``transport`` (Google, not the lab)."""
        import google.auth
        import google_auth_httplib2

        with self._credentials_lock:
            if self._credentials is None:
                self._credentials, _ = google.auth.default(scopes=_SCOPES)
        return google_auth_httplib2.AuthorizedHttp(self._credentials, http=transport)


def _api_core_error(exc: HttpError) -> gexc.GoogleAPICallError:
    """The api_core exception for an HttpError, keeping Google's message and reasons."""
    status = int(exc.resp.status)
    message = str(exc.reason or "")
    errors: list[dict[str, Any]] = []
    try:
        body = json.loads(exc.content or b"{}")
        error = body.get("error", {}) if isinstance(body, dict) else {}
        message = str(error.get("message") or message)
        errors = [e for e in error.get("errors", []) if isinstance(e, dict)]
    except ValueError:
        pass
    mapped: gexc.GoogleAPICallError = gexc.from_http_status(  # type: ignore[no-untyped-call]
        status, message, errors=errors
    )
    return mapped
