"""Cloud SQL Admin REST routes: read the request, call the backend, return Google's JSON.

Google serves this API over REST/JSON only. google-api-python-client's discovery client
sends ``/v1/projects/...``; gcloud sends the same calls under ``/sql/v1beta4/projects/...``.
Both prefixes reach the same backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lab.core.http import json_response, read_json
from lab.core.paging import paginate
from lab.sql.exceptions import InvalidRequest, UnknownPath
from lab.sql.models import SqlBackend
from lab.sql.wire import (
    backup_run_json,
    database_json,
    instance_json,
    matches_filter,
    operation_json,
    user_json,
)

PREFIXES = ("/v1/projects/{project}", "/sql/v1beta4/projects/{project}")
# Google pages every list; the lab's pages are small so that a client that ignores
# nextPageToken misses items here as it would at Google.
# Settings fields the backend owns (or derives); the rest is kept as the caller gave it.
_OWNED_SETTINGS = {"kind", "tier", "userLabels", "settingsVersion", "activationPolicy"}


class SqlResponses:
    def __init__(self, backend: SqlBackend) -> None:
        self.b = backend

    def routes(self) -> list[Route]:
        table: list[tuple[str, Any, str]] = [
            ("/instances", self.list_instances, "GET"),
            ("/instances", self.insert_instance, "POST"),
            ("/instances/{instance}", self.get_instance, "GET"),
            ("/instances/{instance}", self.delete_instance, "DELETE"),
            ("/instances/{instance}", self.patch_instance, "PATCH"),
            ("/instances/{instance}/promoteReplica", self.promote_replica, "POST"),
            ("/instances/{instance}/restoreBackup", self.restore_backup, "POST"),
            ("/instances/{instance}/clone", self.clone, "POST"),
            ("/instances/{instance}/export", self.export, "POST"),
            ("/instances/{instance}/restart", self.restart, "POST"),
            ("/instances/{instance}/failover", self.failover, "POST"),
            ("/instances/{instance}/databases", self.list_databases, "GET"),
            ("/instances/{instance}/databases", self.insert_database, "POST"),
            ("/instances/{instance}/users", self.list_users, "GET"),
            ("/instances/{instance}/users", self.insert_user, "POST"),
            ("/instances/{instance}/import", self.import_, "POST"),
            ("/instances/{instance}/backupRuns", self.list_backup_runs, "GET"),
            ("/instances/{instance}/backupRuns", self.insert_backup_run, "POST"),
            ("/instances/{instance}/backupRuns/{id}", self.get_backup_run, "GET"),
            ("/instances/{instance}/backupRuns/{id}", self.delete_backup_run, "DELETE"),
            ("/operations", self.list_operations, "GET"),
            ("/operations/{operation}", self.get_operation, "GET"),
        ]
        routes = [
            Route(prefix + path, handler, methods=[method])
            for prefix in PREFIXES
            for path, handler, method in table
        ]
        # Unknown paths get Google's 404 JSON rather than Starlette's plain text.
        routes.append(
            Route("/{path:path}", unknown_path, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        )
        return routes

    # -- instances -------------------------------------------------------------------------
    async def list_instances(self, request: Request) -> Response:
        items = [instance_json(i) for i in self.b.list_instances(_project(request))]
        expression = request.query_params.get("filter")
        if expression:
            try:
                items = [i for i in items if matches_filter(i, expression)]
            except ValueError as exc:
                raise InvalidRequest(f"Invalid filter {expression!r}: {exc}") from exc
        return _page(request, "sql#instancesList", items, self.b.ctx.settings.page_cap)

    async def list_databases(self, request: Request) -> Response:
        # databases.list has no pages (no maxResults, no pageToken): every database at once.
        project, instance = _target(request)
        names = await run_in_threadpool(self.b.list_databases, project, instance)
        items = [database_json(project, instance, name) for name in names]
        return json_response({"kind": "sql#databasesList", "items": items})

    async def insert_database(self, request: Request) -> Response:
        body = await read_json(request)
        op = self.b.insert_database(*_target(request), str(body.get("name") or ""))
        return json_response(operation_json(op))

    async def list_users(self, request: Request) -> Response:
        # users.list has no pages ("nextPageToken: Unused"): every user at once.
        project, instance = _target(request)
        names = await run_in_threadpool(self.b.list_users, project, instance)
        items = [user_json(project, instance, name) for name in names]
        return json_response({"kind": "sql#usersList", "items": items})

    async def insert_user(self, request: Request) -> Response:
        body = await read_json(request)
        password = body.get("password")
        op = self.b.insert_user(
            *_target(request), str(body.get("name") or ""), str(password) if password else None
        )
        return json_response(operation_json(op))

    async def import_(self, request: Request) -> Response:
        context = _object(await read_json(request), "importContext")
        op = self.b.import_instance(
            *_target(request),
            uri=str(context.get("uri") or ""),
            database=str(context.get("database") or ""),
            file_type=str(context.get("fileType") or ""),
            user=str(context.get("importUser") or ""),
        )
        return json_response(operation_json(op))

    async def get_instance(self, request: Request) -> Response:
        return json_response(instance_json(self.b.get_instance(*_target(request))))

    async def insert_instance(self, request: Request) -> Response:
        body = await read_json(request)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("The instance name is required (body.name).")
        settings = _object(body, "settings")
        op = self.b.insert_instance(
            _project(request),
            name,
            str(body.get("region") or ""),
            master=str(body.get("masterInstanceName") or "") or None,
            tier=str(settings.get("tier") or ""),
            labels={str(k): str(v) for k, v in _object(settings, "userLabels").items()},
            database_version=str(body.get("databaseVersion") or ""),
            settings={k: v for k, v in settings.items() if k not in _OWNED_SETTINGS},
        )
        return json_response(operation_json(op))

    async def delete_instance(self, request: Request) -> Response:
        return json_response(operation_json(self.b.delete_instance(*_target(request))))

    async def patch_instance(self, request: Request) -> Response:
        settings = _object(await read_json(request), "settings")
        labels = _object(settings, "userLabels")
        op = self.b.patch_instance(
            *_target(request),
            tier=str(settings.get("tier") or "") or None,
            labels={str(k): str(v) for k, v in labels.items()} or None,
            deletion_protection=_optional_bool(settings, "deletionProtectionEnabled"),
            backup_configuration=_object(settings, "backupConfiguration") or None,
        )
        return json_response(operation_json(op))

    async def promote_replica(self, request: Request) -> Response:
        return json_response(operation_json(self.b.promote_replica(*_target(request))))

    async def restore_backup(self, request: Request) -> Response:
        context = _object(await read_json(request), "restoreBackupContext")
        run_id = _int64(context.get("backupRunId"), "restoreBackupContext.backupRunId")
        op = self.b.restore_backup(
            *_target(request),
            backup_run_id=run_id,
            source_instance=str(context.get("instanceId") or ""),
            source_project=str(context.get("project") or ""),
        )
        return json_response(operation_json(op))

    async def clone(self, request: Request) -> Response:
        context = _object(await read_json(request), "cloneContext")
        raw_point = context.get("pointInTime")
        op = self.b.clone_instance(
            *_target(request),
            destination=str(context.get("destinationInstanceName") or ""),
            point_in_time=_timestamp(raw_point, "cloneContext.pointInTime") if raw_point else None,
        )
        return json_response(operation_json(op))

    async def export(self, request: Request) -> Response:
        context = _object(await read_json(request), "exportContext")
        databases = context.get("databases") or []
        if not isinstance(databases, list):
            raise InvalidRequest("exportContext.databases must be a list.")
        op = self.b.export_instance(
            *_target(request),
            uri=str(context.get("uri") or ""),
            databases=[str(d) for d in databases],
            file_type=str(context.get("fileType") or ""),
        )
        return json_response(operation_json(op))

    async def restart(self, request: Request) -> Response:
        return json_response(operation_json(self.b.restart_instance(*_target(request))))

    async def failover(self, request: Request) -> Response:
        return json_response(operation_json(self.b.failover_instance(*_target(request))))

    # -- backup runs -----------------------------------------------------------------------
    async def list_backup_runs(self, request: Request) -> Response:
        runs = self.b.list_backup_runs(*_target(request))
        runs_json = [backup_run_json(r) for r in runs]
        return _page(request, "sql#backupRunsList", runs_json, self.b.ctx.settings.page_cap)

    async def insert_backup_run(self, request: Request) -> Response:
        body = await read_json(request)
        op = self.b.insert_backup_run(*_target(request), str(body.get("description") or ""))
        return json_response(operation_json(op))

    async def get_backup_run(self, request: Request) -> Response:
        run_id = _int64(request.path_params["id"], "id")
        return json_response(backup_run_json(self.b.get_backup_run(*_target(request), run_id)))

    async def delete_backup_run(self, request: Request) -> Response:
        run_id = _int64(request.path_params["id"], "id")
        return json_response(operation_json(self.b.delete_backup_run(*_target(request), run_id)))

    # -- operations ------------------------------------------------------------------------
    async def list_operations(self, request: Request) -> Response:
        instance = request.query_params.get("instance", "")
        ops = self.b.list_operations(_project(request), instance)
        ops_json = [operation_json(o) for o in ops]
        return _page(request, "sql#operationsList", ops_json, self.b.ctx.settings.page_cap)

    async def get_operation(self, request: Request) -> Response:
        op = self.b.get_operation(_project(request), request.path_params["operation"])
        return json_response(operation_json(op))


async def unknown_path(request: Request) -> Response:
    raise UnknownPath(request.method, request.url.path)


def _project(request: Request) -> str:
    return str(request.path_params["project"])


def _target(request: Request) -> tuple[str, str]:
    return _project(request), str(request.path_params["instance"])


def _object(body: dict[str, Any], field: str) -> dict[str, Any]:
    value = body.get(field) or {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{field} must be an object.")
    return value


def _optional_bool(body: dict[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidRequest(f"Invalid value for field '{field}': {value!r} is not a boolean.")


def _timestamp(value: object, field: str) -> datetime:
    """A ``google-datetime`` field: RFC 3339, with a Z or an offset."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"Invalid value for {field}: {value!r} is not RFC 3339.") from None
    if parsed.tzinfo is None:
        raise InvalidRequest(f"Invalid value for {field}: {value!r} has no time zone.")
    return parsed.astimezone(UTC)


def _int64(value: object, field: str) -> int:
    """int64 fields arrive as JSON strings (or numbers from some clients)."""
    try:
        return int(str(value))
    except ValueError:
        raise InvalidRequest(f"Invalid value for {field}: {value!r}") from None


def _page(request: Request, kind: str, items: list[dict[str, Any]], cap: int) -> Response:
    query = request.query_params
    size = _int64(query.get("maxResults", "0"), "maxResults")
    page, next_token = paginate(items, size, query.get("pageToken", ""), default=cap, maximum=cap)
    # An empty list has no ``items`` at all in Google's replies.
    body: dict[str, Any] = {"kind": kind, "items": page} if page else {"kind": kind}
    if next_token:
        body["nextPageToken"] = next_token
    return json_response(body)
