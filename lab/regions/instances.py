"""Which database each service's instances use: the URL they read from Secret Manager.

A region app's services find their database the way a Cloud Run container does, through
its revision's configuration (run/docs/configuring/secrets):

- env var ``DATABASE_URL`` from a secret (``valueSource.secretKeyRef``): resolved when the
  revision's instances start, and kept until they start again (a new revision begins to
  serve, the count goes 0 → n, or a request cold-starts a service at min 0: the Run
  backend says when). If the read fails, the instances do not start. ``version`` is
  ``latest`` or a pinned number.
- a secret volume with an item at path ``database-url``: read on every use, at the item's
  version, since "reading a volume always fetches the secret value from Secret Manager".
- a literal env var ``DATABASE_URL``: used as it is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from lab.core.context import LabContext
from lab.core.errors import ApiError

DATABASE_URL_ENV = "DATABASE_URL"
DATABASE_URL_FILE = "database-url"

Key = tuple[str, str, str, str]  # project, location, service, revision


class AppUnavailable(RuntimeError):
    """The service cannot reach a database; the message never holds the URL."""


@dataclass(frozen=True)
class UrlSource:
    kind: str  # "env-secret", "volume-secret" or "literal"
    secret: str = ""
    version: str = "latest"
    literal: str = ""

    def describe(self) -> str:
        if self.kind == "literal":
            return "a literal DATABASE_URL"
        return f"{self.kind} {self.secret}:{self.version}"


def url_source(template: dict[str, Any]) -> UrlSource | None:
    """How a revision template gives its container the database URL, if it does."""
    containers = template.get("containers") or [{}]
    container = containers[0]
    for env in container.get("env") or []:
        if env.get("name") != DATABASE_URL_ENV:
            continue
        ref = (env.get("valueSource") or {}).get("secretKeyRef")
        if ref:
            return UrlSource("env-secret", ref.get("secret", ""), ref.get("version") or "latest")
        return UrlSource("literal", literal=str(env.get("value", "")))
    mounted = {m.get("name") for m in container.get("volumeMounts") or []}
    for volume in template.get("volumes") or []:
        secret = volume.get("secret")
        if not secret or volume.get("name") not in mounted:
            continue
        for item in secret.get("items") or []:
            if item.get("path") == DATABASE_URL_FILE:
                return UrlSource(
                    "volume-secret", secret.get("secret", ""), item.get("version") or "latest"
                )
    return None


@dataclass
class Started:
    """One revision's running instances and what they resolved when they started."""

    source: UrlSource | None
    url: str | None = None
    error: str | None = None
    starts: int = 1


class AppInstances:
    """Every region app's instances, per service revision; fed by the Run backend."""

    def __init__(self, ctx: LabContext, sql_projects: tuple[str, ...] = ()) -> None:
        self._ctx = ctx
        self._sql_projects = sql_projects
        self._lock = threading.Lock()
        self._started: dict[Key, Started] = {}

    @classmethod
    def attach(cls, ctx: LabContext, sql_projects: tuple[str, ...] = ()) -> AppInstances:
        """Register with the Run backend; call before seeding so no start is missed.

        ``sql_projects`` hold the Cloud SQL instances a URL may name: one in a region in an
        outage cannot be reached, as the region's database would not answer.
        """
        instances = cls(ctx, sql_projects)
        ctx.backends["app_instances"] = instances
        ctx.backends["run"].on_instances_started(instances.start)
        return instances

    def reset(self) -> None:
        with self._lock:
            self._started.clear()

    def start(
        self, project: str, location: str, service: str, revision: str, template: dict[str, Any]
    ) -> None:
        """Instances of ``revision`` start now: resolve env-var secrets, as Cloud Run does."""
        source = url_source(template)
        started = Started(source)
        if source is not None and source.kind == "env-secret":
            try:
                started.url = self._read(source, project)
            except AppUnavailable as exc:
                started.error = f"instances of {revision} did not start: {exc}"
        elif source is not None and source.kind == "literal":
            started.url = source.literal
        key = (project, location, service, revision)
        with self._lock:
            previous = self._started.get(key)
            started.starts = previous.starts + 1 if previous else 1
            self._started[key] = started

    def database_url(self, project: str, location: str, service: str) -> str:
        """The URL the service's serving instances use now; AppUnavailable if none."""
        serving = self._ctx.backends["run"].serving_revisions(project, location, service)
        if not serving:
            raise AppUnavailable(f"{service} has no serving revision in {location}")
        revision = max(serving, key=lambda r: serving[r])
        with self._lock:
            started = self._started.get((project, location, service, revision))
        if started is None:
            raise AppUnavailable(f"{service}: no instance of {revision} has started")
        if started.source is None:
            raise AppUnavailable(f"{service}: {revision} has no {DATABASE_URL_ENV} configured")
        if started.error is not None:
            raise AppUnavailable(f"{service}: {started.error}")
        if started.source.kind == "volume-secret":
            url = self._read(started.source, project)
        else:
            assert started.url is not None
            url = started.url
        self._check_reachable(url)
        return url

    def _check_reachable(self, url: str) -> None:
        from lab.regions.database import host_of, where

        host = host_of(url)
        sql = self._ctx.backends.get("sql")
        if sql is None:
            return
        for project in self._sql_projects:
            for instance in sql.list_instances(project):
                if getattr(instance, "host", None) == host and self._ctx.is_down(instance.region):
                    raise AppUnavailable(
                        f"database {where(url)} is in {instance.region}, which is in an outage"
                    )

    def snapshot(self) -> dict[str, Any]:
        """For /_lab/state: how each revision gets its URL and whether it started; no value."""
        with self._lock:
            return {
                "/".join(key): {
                    "source": s.source.describe() if s.source else None,
                    "started": s.error is None,
                    "starts": s.starts,
                    "error": s.error,
                }
                for key, s in sorted(self._started.items())
            }

    def _read(self, source: UrlSource, project: str) -> str:
        try:
            value: str = self._ctx.backends["secretmanager"].read_value(
                source.secret, source.version, project
            )
        except ApiError as exc:
            raise AppUnavailable(f"secret {source.secret}:{source.version}: {exc.message}") from exc
        return value.strip()
