"""Cloud SQL Admin over REST without a lab: errors, timeouts, paging and settings copies.

A tiny HTTP server stands in for Google here: it answers with Google's error JSON, hangs,
or pages, and the real discovery client talks to it. No lab, no mocks.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from lifeboat.sqladmin import Instance, Operation, SqlAdmin, settings_like
from tasks.errors import classify, is_transient

Reply = tuple[int, dict[str, Any]]


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[str], Reply]], str]]:
    """serve(answer) -> base URL; ``answer(path)`` gives each GET's status and JSON."""
    servers: list[ThreadingHTTPServer] = []

    def serve(answer: Callable[[str], Reply]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # shutdown() waits up to one poll interval (0.5 s by default) for the loop to see it.
        poll = {"poll_interval": 0.02}
        threading.Thread(target=httpd.serve_forever, kwargs=poll, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield serve
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def google_error(code: int, reason: str, message: str) -> Reply:
    status = {404: "NOT_FOUND", 409: "ABORTED", 403: "PERMISSION_DENIED", 503: "UNAVAILABLE"}
    errors = [{"domain": "global", "reason": reason, "message": message}]
    body = {"code": code, "message": message, "status": status[code], "errors": errors}
    return code, {"error": body}


def get_instance(api: SqlAdmin, timeout: float = 5) -> dict[str, Any]:
    return api.call(lambda s: s.instances().get(project="p", instance="db"), timeout)


@pytest.mark.parametrize(
    ("code", "reason", "exception", "transient"),
    [
        (409, "operationInProgress", gexc.Conflict, True),
        (503, "backendError", gexc.ServiceUnavailable, True),
        (404, "instanceDoesNotExist", gexc.NotFound, False),
        (403, "forbidden", gexc.Forbidden, False),
    ],
)
def test_google_errors_become_api_core_exceptions_and_classify(
    server: Any, code: int, reason: str, exception: type[Exception], transient: bool
) -> None:
    url = server(lambda path: google_error(code, reason, f"{reason} on db"))
    with pytest.raises(exception) as got:
        get_instance(SqlAdmin(url))
    assert got.value.message == f"{reason} on db"  # type: ignore[attr-defined]
    assert is_transient(got.value) is transient
    classified = classify(got.value, "promote-replica", "p:db")
    assert str(classified).startswith("promote-replica failed on p:db: ")


def test_a_hanging_server_times_out_as_a_transient_error() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts the connection, never answers
    try:
        api = SqlAdmin(f"http://127.0.0.1:{listener.getsockname()[1]}")
        with pytest.raises(TimeoutError) as got:
            get_instance(api, timeout=0.3)
        assert is_transient(got.value)
    finally:
        listener.close()


def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError) as got:
        get_instance(SqlAdmin(f"http://127.0.0.1:{port}"))
    assert is_transient(got.value)


def test_pages_follow_next_page_token_to_the_end(server: Any) -> None:
    pages = {
        "": {"items": [{"name": "a"}, {"name": "b"}], "nextPageToken": "t2"},
        "t2": {"items": [{"name": "c"}], "nextPageToken": "t3"},
        "t3": {"kind": "sql#instancesList"},  # an empty last page has no items
    }

    def answer(path: str) -> Reply:
        token = path.partition("pageToken=")[2].partition("&")[0]
        return 200, pages[token]

    api = SqlAdmin(server(answer))
    items = api.pages(lambda s, token: s.instances().list(project="p", pageToken=token), 5)
    assert [i["name"] for i in items] == ["a", "b", "c"]


def test_a_done_operation_with_errors_reports_its_failure() -> None:
    op = Operation.model_validate(
        {
            "name": "op-1",
            "status": "DONE",
            "operationType": "EXPORT",
            "error": {"errors": [{"code": "ERROR_RDBMS", "message": "no such database"}]},
        }
    )
    assert op.failure == "ERROR_RDBMS: no such database"
    assert Operation.model_validate({"name": "op-2", "status": "DONE"}).failure is None


SOURCE = {
    "name": "varai-prod",
    "databaseVersion": "POSTGRES_15",
    "ipAddresses": [
        {"type": "PRIMARY", "ipAddress": "34.1.2.3"},
        {"type": "PRIVATE", "ipAddress": "10.0.0.5"},
    ],
    "settings": {
        "tier": "db-custom-4-15360",
        "edition": "ENTERPRISE_PLUS",
        "userLabels": {"team": "data"},
        "ipConfiguration": {
            "ipv4Enabled": False,
            "privateNetwork": "projects/p/global/networks/vpc",
            "sslMode": "ENCRYPTED_ONLY",
        },
        "databaseFlags": [{"name": "max_connections", "value": "400"}],
        "backupConfiguration": {
            "enabled": True,
            "pointInTimeRecoveryEnabled": True,
            "transactionLogRetentionDays": 7,
        },
        "dataDiskSizeGb": "250",
        "deletionProtectionEnabled": True,
    },
}


def test_a_scratch_instance_copies_the_source_settings_that_make_it_reachable() -> None:
    source = Instance.model_validate(SOURCE)
    settings = settings_like(source, {"lifeboat-drill": "d-1"}, replica=False)
    assert settings["tier"] == "db-custom-4-15360"
    assert settings["edition"] == "ENTERPRISE_PLUS"
    assert settings["userLabels"] == {"lifeboat-drill": "d-1"}  # not the source's labels
    # Unknown nested fields travel too: the network settings are copied whole.
    assert settings["ipConfiguration"] == SOURCE["settings"]["ipConfiguration"]  # type: ignore[index]
    assert settings["databaseFlags"] == [{"name": "max_connections", "value": "400"}]
    assert settings["backupConfiguration"]["transactionLogRetentionDays"] == 7
    assert settings["dataDiskSizeGb"] == "250"
    assert "deletionProtectionEnabled" not in settings  # a scratch must stay deletable


def test_a_replica_takes_no_backup_settings() -> None:
    settings = settings_like(Instance.model_validate(SOURCE), {}, replica=True)
    assert "backupConfiguration" not in settings and "dataDiskSizeGb" not in settings
    assert settings["ipConfiguration"]["privateNetwork"] == "projects/p/global/networks/vpc"


def test_without_an_endpoint_requests_go_to_googles_rest_api() -> None:
    """Built from the bundled discovery document: nothing is fetched to build it."""
    request = SqlAdmin(None).service.instances().promoteReplica(project="p", instance="db")
    assert request.method == "POST"
    assert request.uri.startswith("https://sqladmin.googleapis.com/v1/projects/p/instances/db/")
