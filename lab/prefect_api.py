"""The Prefect REST calls incident tooling makes (README), as a small httpx client."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def iso_ago(seconds: float = 1) -> str:
    """A UTC time ``seconds`` ago, as the API's filters take it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds))


def flow_processes(run_id: str) -> list[int]:
    """Every process of a flow run on this machine, found by the run id the worker puts
    in its environment (the worker may start it through a wrapper)."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"PREFECT__FLOW_RUN_ID={run_id}".encode() in environ.read_bytes():
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


class PrefectApi:
    def __init__(self, api_url: str, auth: tuple[str, str] | None = None):
        self.http = httpx.Client(base_url=api_url, auth=auth, timeout=30)

    def deployment_id(self, name: str) -> str:
        response = self.http.get(f"/deployments/name/{name}")
        response.raise_for_status()
        return str(response.json()["id"])

    def launch(
        self,
        deployment: str,
        parameters: dict[str, Any],
        idempotency_key: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"parameters": parameters, "tags": tags or []}
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        response = self.http.post(
            f"/deployments/{self.deployment_id(deployment)}/create_flow_run", json=body
        )
        response.raise_for_status()
        return dict(response.json())

    def deployments(self) -> list[dict[str, Any]]:
        response = self.http.post("/deployments/filter", json={"limit": 200})
        response.raise_for_status()
        return list(response.json())

    def pause_schedules(self) -> None:
        """Stop every schedule and drop the runs already scheduled.

        A suite that crosses the top of an hour would otherwise see the hourly staleness
        check (and its notifications) land in the middle of another test.
        """
        for deployment in self.deployments():
            if deployment.get("schedules"):
                self.http.patch(
                    f"/deployments/{deployment['id']}", json={"paused": True}
                ).raise_for_status()
        # Page after page: the scheduler makes runs ahead for every deployment (the
        # every-minute watch alone, dozens), more than one page can hold; a run left here
        # fired at the half hour in the middle of another test (CI rehearsal, session 16).
        while True:
            scheduled = self.http.post(
                "/flow_runs/filter",
                json={"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}, "limit": 200},
            )
            scheduled.raise_for_status()
            if not scheduled.json():
                return
            for run in scheduled.json():
                self.http.delete(f"/flow_runs/{run['id']}").raise_for_status()

    def forget_runs(self, flow: str) -> int:
        """Delete every run of ``flow`` the server holds; how many there were.

        The server outlives each test's lab reset: a test whose premise is that no run of
        a flow happened lately (the rollback's minimum delay between automatic runs reads
        them) says so first, instead of depending on which test files ran before it on its
        worker (CI rehearsal, session 17).
        """
        forgotten = 0
        while True:
            found = self.http.post(
                "/flow_runs/filter", json={"flows": {"name": {"any_": [flow]}}, "limit": 200}
            )
            found.raise_for_status()
            if not found.json():
                return forgotten
            for run in found.json():
                self.http.delete(f"/flow_runs/{run['id']}").raise_for_status()
                forgotten += 1

    def flow_run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/flow_runs/{run_id}")
        response.raise_for_status()
        return dict(response.json())

    def states(self, run_id: str) -> list[dict[str, Any]]:
        """Every state the run went through, oldest first."""
        response = self.http.get("/flow_run_states/", params={"flow_run_id": run_id})
        response.raise_for_status()
        return sorted(response.json(), key=lambda s: str(s["timestamp"]))

    def state(self, run_id: str) -> str:
        return str(self.flow_run(run_id)["state"]["type"])

    def wait(self, run_id: str, states: set[str] = FINAL, timeout: float = 240) -> dict[str, Any]:
        """The run once it is in one of ``states``; an AssertionError saying where it
        stands after ``timeout`` s.

        Polled every 0.25 s at first, then less often, up to every 1 s: each read costs the
        server a query and a serialisation, and on 2 cores the suite's four labs are bound
        by CPU (issue 13); a run that ends late is seen at most a second late.
        """
        deadline = time.monotonic() + timeout
        interval = 0.25
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state"]["type"] in states:
                return run
            time.sleep(interval)
            interval = min(interval * 1.25, 1.0)
        raise AssertionError(
            f"flow run {run_id} not in {states} after {timeout} s: {run['state']}\n"
            + self.where_it_stands(run_id)
        )

    def where_it_stands(self, run_id: str, lines: int = 15) -> str:
        """What a run that did not end was doing: its task runs' states and its last log
        lines. A CI failure is read only from its output; without these, a run stuck
        somewhere says nothing of where."""
        tasks = sorted(
            self.task_runs(run_id), key=lambda t: str(t.get("start_time") or t["created"])
        )
        task_lines = [f"  {t['name']}: {(t.get('state') or {}).get('type')}" for t in tasks]
        log_lines = [
            f"  {e['timestamp']} {e['message']}" for e in self.last_log_entries(run_id, lines)
        ]
        return "\n".join(["task runs:", *task_lines, f"last {lines} log lines:", *log_lines])

    def input_schema(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        """The paused run's input form (JSON schema). Prefect 3.8 sets PAUSED first and
        saves the schema after (prefect/flow_runs.py ``pause_flow_run``): a resume sent in
        between is refused, and the run stays paused. So wait for it."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.post(
                f"/flow_runs/{run_id}/input/filter", json={"prefix": "paused"}
            )
            response.raise_for_status()
            for row in response.json():
                if row["key"].endswith("-schema"):
                    return dict(json.loads(row["value"]))
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {run_id}: no input schema after {timeout} s")
            time.sleep(0.25)

    def resume(self, run_id: str, run_input: dict[str, Any]) -> dict[str, Any]:
        self.input_schema(run_id)  # a resume before the form exists is refused
        response = self.http.post(f"/flow_runs/{run_id}/resume", json={"run_input": run_input})
        response.raise_for_status()
        return dict(response.json())

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        response = self.http.post(
            "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}
        )
        response.raise_for_status()
        return list(response.json())

    def logs(self, run_id: str) -> list[str]:
        response = self.http.post(
            "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
        )
        response.raise_for_status()
        return [entry["message"] for entry in response.json()]

    def last_log_entries(self, run_id: str, lines: int) -> list[dict[str, Any]]:
        """The run's last ``lines`` log entries, oldest first."""
        response = self.http.post(
            "/logs/filter",
            json={
                "logs": {"flow_run_id": {"any_": [run_id]}},
                "sort": "TIMESTAMP_DESC",
                "limit": lines,
            },
        )
        response.raise_for_status()
        return list(reversed(response.json()))

    def final_logs(self, run_id: str, timeout: float = 20) -> list[str]:
        """The logs of a run that has ended, once its engine's last line is stored.

        A flow run sends its logs in batches from a thread, and its state turns final
        before the last batch leaves: logs read as soon as the state is final can lack
        the run's last lines. Prefect's flow engine logs "Finished in state" last, in
        every final state it reaches itself (not for a killed run: the worker marks that
        one Crashed).
        """
        # The flow engine's line, not a task engine's: they say the same words.
        query = {
            "logs": {"flow_run_id": {"any_": [run_id]}, "task_run_id": {"is_null_": True}},
            "sort": "TIMESTAMP_DESC",
            "limit": 3,
        }
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.post("/logs/filter", json=query)
            response.raise_for_status()
            if any(e["message"].startswith("Finished in state") for e in response.json()):
                return self.logs(run_id)
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"flow run {run_id}: its last log line not stored in {timeout:g} s"
                )
            time.sleep(0.2)

    def wait_event(
        self, name: str, since: str | None = None, timeout: float = 30, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The events named ``name`` (since an ISO time; emitted by flow run ``run_id``),
        once at least one is stored.

        The server persists events in batches after the flow that emitted them has
        ended, so reading them at once races that flush. ``since`` alone may reach back
        to the previous test's run: Prefect relates an event emitted in a run to it.
        """
        query: dict[str, Any] = {"event": {"name": [name]}}
        if since:
            query["occurred"] = {"since": since}
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.post("/events/filter", json={"filter": query, "limit": 50})
            response.raise_for_status()
            events = list(response.json()["events"])
            if run_id:
                ours = f"prefect.flow-run.{run_id}"
                events = [
                    e
                    for e in events
                    if any(r.get("prefect.resource.id") == ours for r in e.get("related", []))
                ]
            if events:
                return events
            if time.monotonic() > deadline:
                # The run's last lines say why it emitted nothing, if it did not.
                said = (
                    "; ".join(e["message"] for e in self.last_log_entries(run_id, 3))
                    if run_id
                    else ""
                )
                raise AssertionError(
                    f"no event {name} stored within {timeout} s"
                    + (f"; the run's last log lines: {said}" if said else "")
                )
            time.sleep(0.5)

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        response = self.http.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}}
        )
        response.raise_for_status()
        return list(response.json())
