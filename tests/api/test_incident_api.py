"""Incident tooling over the Prefect REST API: the README's calls, made with httpx.

The first tests run the documented calls against the session lab's server. The last one
starts a small Prefect server of its own with basic auth (PREFECT_SERVER_API_AUTH_STRING),
because the session lab runs without it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.flows.lab_checks import PRIMARY, TOPOLOGY, incident, read_object
from tests.labharness import Lab
from tests.polling import wait_for

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _client(lab: Lab) -> httpx.Client:
    """`curl -u user:pass $API/...`: basic auth only when the lab's server asks for it."""
    auth_string = lab.endpoints.get("prefect_api_auth_string")
    auth = tuple(auth_string.split(":", 1)) if auth_string else None
    return httpx.Client(base_url=lab.endpoints["prefect_api_url"], auth=auth, timeout=30)


def _deployment_id(http: httpx.Client) -> str:
    response = http.get("/deployments/name/failover/lab")
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _poll(http: httpx.Client, run_id: str, until: set[str], timeout: float = 120) -> dict[str, Any]:
    """GET /flow_runs/{id} until its state is one of ``until`` (the flow run, not its tasks:
    task run states lag it by seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = http.get(f"/flow_runs/{run_id}").raise_for_status().json()
        if run["state"]["type"] in until:
            return run
        assert time.monotonic() < deadline, f"run {run_id} not in {until}: {run['state']}"
        time.sleep(0.5)


def test_launch_with_idempotency_key_poll_and_read_artifacts(fresh_lab: Lab) -> None:
    fresh_lab.outage(PRIMARY.name, True)
    inc = incident()
    body = {
        "parameters": {"reason": "us-central1 down (incident tooling)", "incident_id": inc},
        "idempotency_key": f"{inc}:failover",
        "tags": [f"incident:{inc}"],
    }
    with _client(fresh_lab) as http:
        deployment_id = _deployment_id(http)
        first = http.post(f"/deployments/{deployment_id}/create_flow_run", json=body)
        assert first.status_code == 201, first.text
        # A retried POST (a timeout, a pager bot firing twice) returns the same run.
        again = http.post(f"/deployments/{deployment_id}/create_flow_run", json=body)
        assert again.is_success, again.text
        run_id = first.json()["id"]
        assert again.json()["id"] == run_id
        assert f"incident:{inc}" in first.json()["tags"]

        final = _poll(http, run_id, FINAL)
        assert final["state"]["type"] == "COMPLETED", final["state"]
        assert final["parameters"]["environment"] == "lab"  # from the deployment

        # Only the record's artifacts: persisted results show up as key-less artifacts.
        response = http.post(
            "/artifacts/filter",
            json={
                "artifacts": {
                    "flow_run_id": {"any_": [run_id]},
                    "type": {"any_": ["markdown", "table"]},
                }
            },
        )
        assert response.status_code == 200, response.text
        artifacts = {a["key"]: a for a in response.json()}
    assert set(artifacts) == {f"failover-{inc.lower()}", f"failover-{inc.lower()}-steps"}
    summary = artifacts[f"failover-{inc.lower()}"]
    assert summary["type"] == "markdown"
    assert inc in summary["data"] and "completed" in summary["data"]
    steps = artifacts[f"failover-{inc.lower()}-steps"]["data"]
    steps = json.loads(steps) if isinstance(steps, str) else steps
    # The switch's last step, then the new primary's backups (outside the RTO).
    assert [row["step"] for row in steps][-2:] == ["verify", "backups-on-new-primary"]


def test_bad_parameters_are_refused_before_any_run(lab: Lab) -> None:
    with _client(lab) as http:
        deployment_id = _deployment_id(http)
        for parameters in ({"reason": ""}, {"reason": "x", "incident_id": "bad id!"}):
            response = http.post(
                f"/deployments/{deployment_id}/create_flow_run", json={"parameters": parameters}
            )
            assert response.status_code == 409, response.text
            assert "Validation failed" in response.json()["detail"]
        assert http.get("/deployments/name/failover/no-such-env").status_code == 404


def test_resume_a_paused_failover_with_run_input(fresh_lab: Lab) -> None:
    inc = incident()
    with _client(fresh_lab) as http:
        deployment_id = _deployment_id(http)
        created = http.post(
            f"/deployments/{deployment_id}/create_flow_run",
            json={
                "parameters": {"reason": "planned move, primary healthy", "incident_id": inc},
                "idempotency_key": f"{inc}:failover",
                "tags": [f"incident:{inc}"],
            },
        )
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]

        def resume(run_input: dict[str, Any]) -> dict[str, Any]:
            response = http.post(f"/flow_runs/{run_id}/resume", json={"run_input": run_input})
            # 2xx whatever the outcome (201 on ACCEPT, 200 otherwise): read `status`.
            assert response.is_success, response.text
            return dict(response.json())

        # The primary is healthy, so the run waits for an operator.
        assert _poll(http, run_id, {"PAUSED", *FINAL})["state"]["type"] == "PAUSED"

        # Prefect sets PAUSED, then saves the form: tooling waits for the form before it
        # resumes (a resume in between is refused and the run stays paused).
        def form() -> dict[str, str]:
            keys = http.post(f"/flow_runs/{run_id}/input/filter", json={"prefix": "paused"})
            found = {row["key"].rsplit("-", 1)[-1]: row["value"] for row in keys.json()}
            return found if "schema" in found else {}

        schema = json.loads(wait_for(form, timeout=60, what="the pause's input form")["schema"])
        assert set(schema["properties"]) == {"approved", "approver", "note"}

        rejected = resume({"approved": "maybe", "approver": "alice"})
        assert rejected["status"] == "REJECT"
        assert "approved" in rejected["details"]["reason"]
        # Nobody on record is not an approval.
        anonymous = resume({"approved": True})
        assert anonymous["status"] == "REJECT"
        assert "approver" in anonymous["details"]["reason"]
        assert http.get(f"/flow_runs/{run_id}").json()["state"]["type"] == "PAUSED"

        accepted = resume({"approved": True, "approver": "alice", "note": "bridge call agreed"})
        assert accepted["status"] == "ACCEPT", accepted
        final = _poll(http, run_id, FINAL)
        assert final["state"]["type"] == "COMPLETED", final["state"]
        assert resume({"approved": True, "approver": "alice"})["status"] == "ABORT"

    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, f"failover/{inc}.json")
    )
    assert record["approval"]["approver"] == "alice"
    assert record["approval"]["note"] == "bridge call agreed"


# --- basic auth, on a small server of this module's own --------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the server's process group (`prefect server start` runs uvicorn as a
    child), then SIGKILL whatever is still there after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader: a zombie still counts as a group member
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    proc.wait(timeout=5)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A throwaway Prefect server (SQLite, no UI) that requires admin:<random>."""
    home = tmp_path_factory.mktemp("auth-server")
    port = _free_port()
    auth_string = f"admin:{secrets.token_urlsafe(16)}"
    # Nothing of the session lab's client settings (PREFECT_API_URL, PREFECT_HOME, ...).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_API_AUTH_STRING=auth_string,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",  # starts faster; this test needs the API only
    )
    log = (home / "server.log").open("wb")
    prefect = str(Path(sys.executable).with_name("prefect"))
    proc = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own group, so the teardown reaches uvicorn too
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        # A second Prefect server starting beside the suite's lab on 2 busy cores took over
        # 60 s once (a CI rehearsal at load 6+): this test is about auth, not start time.
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{api_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the auth test's Prefect server did not start"
            time.sleep(0.25)
        yield api_url, auth_string
    finally:
        _stop_group(proc)
        log.close()
        with pytest.raises(ProcessLookupError):  # nothing of it is left running
            os.killpg(proc.pid, 0)


def test_basic_auth_on_a_server_that_sets_an_auth_string(auth_server: tuple[str, str]) -> None:
    api_url, auth_string = auth_server
    user, password = auth_string.split(":", 1)
    filter_runs = {"method": "POST", "url": f"{api_url}/flow_runs/filter", "json": {}}
    with httpx.Client(timeout=30) as http:
        assert http.request(**filter_runs).status_code == 401
        assert http.request(**filter_runs, auth=(user, "wrong")).status_code == 401
        assert http.request(**filter_runs, auth=("root", password)).status_code == 401
        answer = http.request(**filter_runs, auth=(user, password))
        assert answer.status_code == 200, answer.text
        assert answer.json() == []  # a fresh server: no runs yet
        # The README's first call: past auth, then an honest 404 (nothing deployed here).
        lookup = f"{api_url}/deployments/name/failover/lab"
        assert http.get(lookup).status_code == 401
        assert http.get(lookup, auth=(user, password)).status_code == 404
        # Liveness probes need no credentials.
        assert http.get(f"{api_url}/health").status_code == 200
