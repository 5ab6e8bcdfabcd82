"""The README's demo: start the lab and show the two-region cloud it emulates."""

from __future__ import annotations

import sys

import httpx

from lab.supervisor import LabError, LabOptions, up
from lifeboat.endpoints import lab_dir
from lifeboat.topology import ENVIRONMENTS_DIR, load_topology


def main() -> int:
    topology = load_topology("lab")
    try:
        endpoints = up(LabOptions(root=lab_dir(), topology=ENVIRONMENTS_DIR / "lab.yaml"))
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    host = topology.health.host
    print("\n== The lab ==")
    for region, url in endpoints["region_apps"].items():
        health = httpx.get(f"{url}/health", timeout=10)
        print(f"region {region:12s} /health → {health.status_code} {health.json()['reason']}")
    via = httpx.get(f"{endpoints['front_door']}/version", headers={"host": host}, timeout=10)
    print(
        f"https://{host}/version via the front door → {via.json()} ({via.headers['x-lab-cache']})"
    )
    state = httpx.get(f"{endpoints['control']}/_lab/state", timeout=10).json()
    print(f"outages: {state['outages'] or 'none'}; time_scale: {state['latency']['time_scale']}")
    print(f"MongoDB ({endpoints['mongodb_server']}): {endpoints['mongodb_uri']}")
    print(f"\nPrefect UI: {endpoints.get('prefect_ui_url', '(not started)')}")
    print("Stop it with: .venv/bin/lifeboat lab down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
