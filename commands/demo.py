"""The README's demo: a regional outage, a failover launched through the Prefect API,
followed live, its record and RTO, then the primary back and a failback.

It prints for a person: a live table of the run's tasks while it runs, then the plan,
the steps as the run record has them, and the measured RTO.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lab.control.client import LabControl
from lab.prefect_api import FINAL, PrefectApi
from lab.supervisor import LabError, LabOptions, up
from lifeboat.endpoints import lab_dir
from lifeboat.topology import ENVIRONMENTS_DIR, load_topology

console = Console(highlight=False)
STATE_STYLE = {"COMPLETED": "green", "FAILED": "red", "CRASHED": "red", "CANCELLED": "yellow"}
OUTCOME_STYLE = {"done": "green", "unchanged": "cyan", "failed": "red", "skipped": "yellow"}


def _tasks_table(tasks: list[dict[str, Any]]) -> Table:
    table = Table(title="tasks", title_justify="left", show_edge=False)
    table.add_column("task")
    table.add_column("state")
    table.add_column("seconds", justify="right")
    for task in sorted(tasks, key=lambda t: t.get("expected_start_time") or ""):
        state = task["state"]["type"] if task.get("state") else "PENDING"
        seconds = task.get("total_run_time") or 0.0
        style = STATE_STYLE.get(state, "")
        # Text, not markup: a state with no style ("running") made "[]running[/]", which
        # rich refuses, and a name is not markup either.
        table.add_row(Text(task["name"]), Text(state.lower(), style=style), f"{seconds:.2f}")
    return table


def follow(api: PrefectApi, run_id: str, timeout: float = 600) -> dict[str, Any]:
    """Show the run's tasks live until the run ends; returns the flow run."""
    deadline = time.monotonic() + timeout
    with Live(_tasks_table([]), console=console, refresh_per_second=4) as live:
        while time.monotonic() < deadline:
            live.update(_tasks_table(api.task_runs(run_id)))
            run = api.flow_run(run_id)
            if run["state"]["type"] in FINAL:
                return run
            time.sleep(0.5)
    raise TimeoutError(f"flow run {run_id} still running after {timeout} s")


def report(record: dict[str, Any], time_scale: object) -> None:
    """The run record, for a person: plan, steps with their outcome and time, RTO."""
    console.print("[bold]plan[/]")
    for number, line in enumerate(record.get("plan") or [], 1):
        console.print(f"  {number:2d}. {line}")
    steps = Table(title="steps (run record)", title_justify="left", show_edge=False)
    steps.add_column("step")
    steps.add_column("outcome")
    steps.add_column("seconds", justify="right")
    for step in record.get("steps") or []:
        outcome = step.get("outcome", "")
        seconds = step.get("seconds")
        steps.add_row(
            Text(step["name"]),
            Text(outcome, style=OUTCOME_STYLE.get(outcome, "")),
            "" if seconds is None else f"{seconds:.2f}",
        )
    console.print(steps)
    console.print("[bold]what each step did[/]")
    for step in record.get("steps") or []:
        parts = [p for p in (step.get("detail") or "").split("; ") if p]
        if parts:
            console.print(f"  {step['name']}:")
            for part in parts:
                console.print(f"    - {part}")
    console.print(f"outcome: [bold]{record['outcome']}[/]; record: {record.get('record_uri')}")
    if record.get("rto_seconds"):
        console.print(
            f"RTO measured: [bold]{record['rto_seconds']:.1f} s[/] (lab time_scale {time_scale})"
        )
    if record.get("outage_seconds") is not None:
        console.print(
            f"planned outage: [bold]{record['outage_seconds']:.1f} s[/], from the fence to"
            " the verification"
        )


def _record(endpoints: dict[str, Any], bucket: str, name: str) -> dict[str, Any]:
    url = f"{endpoints['storage']}/download/storage/v1/b/{bucket}/o/{name.replace('/', '%2F')}"
    return dict(httpx.get(url, params={"alt": "media"}, timeout=30).json())


def _switch(
    api: PrefectApi, endpoints: dict[str, Any], flow: str, reason: str, bucket: str
) -> bool:
    incident = f"DEMO-{uuid.uuid4().hex[:6]}"
    console.rule(f"{flow}/lab, incident {incident}, launched through the Prefect API")
    launched = api.launch(
        f"{flow}/lab", {"reason": reason, "incident_id": incident}, incident, tags=["demo"]
    )
    run = follow(api, str(launched["id"]))
    state = run["state"]["type"]
    console.print(
        f"{flow} finished: [{STATE_STYLE.get(state, '')}]{state}[/] "
        f"{run['state'].get('message') or ''}"
    )
    report(_record(endpoints, bucket, f"{flow}/{incident}.json"), endpoints["time_scale"])
    return bool(state == "COMPLETED")


def main() -> int:
    topology = load_topology("lab")
    try:
        endpoints = up(LabOptions(root=lab_dir(), topology=ENVIRONMENTS_DIR / "lab.yaml"))
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    control = LabControl(endpoints["control"])
    control.reset()
    auth = endpoints.get("prefect_api_auth_string")
    api = PrefectApi(
        endpoints["prefect_api_url"],
        tuple(auth.split(":", 1)) if auth else None,
    )
    primary = topology.regions.primary.name
    bucket = topology.backups.records_bucket
    console.rule(f"Taking {primary} down")
    control.outage(primary, True)
    ok = _switch(api, endpoints, "failover", f"demo: {primary} outage", bucket)
    console.rule(f"{primary} is back")
    control.outage(primary, False)
    if ok and api.http.get("/deployments/name/failback/lab").status_code == 200:
        ok = _switch(api, endpoints, "failback", f"demo: {primary} recovered", bucket)
    console.print(f"\nPrefect UI (still running): {endpoints['prefect_ui_url']}")
    console.print("Stop the lab with: .venv/bin/lifeboat lab down")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
