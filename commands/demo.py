"""The README's demo: a regional outage, a failover launched through the Prefect API,
followed live, its record and RTO, then the primary back and a failback."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import httpx

from lab.supervisor import LabError, LabOptions, up
from lifeboat.endpoints import lab_dir
from lifeboat.topology import ENVIRONMENTS_DIR, load_topology

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Api:
    def __init__(self, url: str, auth: str | None):
        credentials = tuple(auth.split(":", 1)) if auth else None
        self.http = httpx.Client(base_url=url, timeout=30, auth=credentials)  # type: ignore[arg-type]

    def launch(self, deployment: str, parameters: dict[str, Any], key: str) -> str:
        dep = self.http.get(f"/deployments/name/{deployment}")
        dep.raise_for_status()
        run = self.http.post(
            f"/deployments/{dep.json()['id']}/create_flow_run",
            json={"parameters": parameters, "idempotency_key": key, "tags": ["demo"]},
        )
        run.raise_for_status()
        return str(run.json()["id"])

    def follow(self, run_id: str, timeout: float = 600) -> dict[str, Any]:
        """Print each task as it finishes, until the run ends."""
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = self.http.post(
                "/task_runs/filter",
                json={"flow_runs": {"id": {"any_": [run_id]}}, "sort": "EXPECTED_START_TIME_ASC"},
            ).json()
            for task in tasks:
                state = task["state"]["type"] if task.get("state") else "PENDING"
                if state in FINAL and task["id"] not in seen:
                    seen.add(task["id"])
                    seconds = task.get("total_run_time") or 0.0
                    print(f"  [{state.lower():9s}] {task['name']:45s} {seconds:6.2f} s")
            run = self.http.get(f"/flow_runs/{run_id}").json()
            if run["state"]["type"] in FINAL:
                return dict(run)
            time.sleep(0.5)
        raise TimeoutError(f"flow run {run_id} still running after {timeout} s")


def _control(endpoints: dict[str, Any], path: str, body: dict[str, Any]) -> None:
    httpx.post(f"{endpoints['control']}/_lab/{path}", json=body, timeout=30).raise_for_status()


def _record(endpoints: dict[str, Any], bucket: str, name: str) -> dict[str, Any]:
    url = f"{endpoints['storage']}/download/storage/v1/b/{bucket}/o/{name.replace('/', '%2F')}"
    return dict(httpx.get(url, params={"alt": "media"}, timeout=30).json())


def _switch(api: Api, endpoints: dict[str, Any], flow: str, reason: str, bucket: str) -> bool:
    incident = f"DEMO-{uuid.uuid4().hex[:6]}"
    print(f"\n== {flow}/lab, incident {incident}, launched through the Prefect API ==")
    run = api.follow(
        api.launch(f"{flow}/lab", {"reason": reason, "incident_id": incident}, incident)
    )
    print(f"{flow} finished: {run['state']['type']} {run['state'].get('message') or ''}")
    record = _record(endpoints, bucket, f"{flow}/{incident}.json")
    print(
        json.dumps(
            {k: record[k] for k in ("outcome", "rto_seconds", "plan", "record_uri")}, indent=2
        )
    )
    if record.get("rto_seconds"):
        print(
            f"RTO measured: {record['rto_seconds']:.1f} s "
            f"(lab time_scale {endpoints['time_scale']})"
        )
    return bool(run["state"]["type"] == "COMPLETED")


def main() -> int:
    topology = load_topology("lab")
    try:
        endpoints = up(LabOptions(root=lab_dir(), topology=ENVIRONMENTS_DIR / "lab.yaml"))
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _control(endpoints, "reset", {})
    api = Api(endpoints["prefect_api_url"], endpoints.get("prefect_api_auth_string"))
    primary = topology.regions.primary.name
    bucket = topology.backups.records_bucket
    print(f"\n== Taking {primary} down ==")
    _control(endpoints, "outage", {"region": primary, "down": True})
    ok = _switch(api, endpoints, "failover", f"demo: {primary} outage", bucket)
    print(f"\n== {primary} is back ==")
    _control(endpoints, "outage", {"region": primary, "down": False})
    dep = api.http.get("/deployments/name/failback/lab")
    if ok and dep.status_code == 200:
        ok = _switch(api, endpoints, "failback", f"demo: {primary} recovered", bucket)
    print(f"\nPrefect UI (still running): {endpoints['prefect_ui_url']}")
    print("Stop the lab with: .venv/bin/lifeboat lab down")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
