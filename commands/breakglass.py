"""Run a region switch from this machine, for when the Prefect server itself is down.

The flow is the same code the deployment runs. If the configured Prefect server answers,
the run reports to it as usual; if not, it runs against a throwaway local server so that
retries, results and the record to GCS all still work. Without a deployment there is no
pause to approve in the UI, so a switch that needs approval also needs ``--approve``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx


def server_answers(api_url: str | None) -> bool:
    if not api_url:
        return False
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def prepare_environment(say: Any = print) -> None:
    """Point Prefect at the real server if it answers, else at a local throwaway one."""
    api_url = os.environ.get("PREFECT_API_URL")
    if server_answers(api_url):
        say(f"Prefect server {api_url} answers; the run will show there.")
        return
    say(f"Prefect server {api_url or '(none set)'} does not answer: break-glass, local server.")
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "true"
    # Prefect waits 20 s for the local server by default; a machine busy with an incident
    # can take longer, and a break-glass run must not fail on its own start-up.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_HOME", str(Path.home() / ".lifeboat" / "break-glass"))


def ensure_region_limit(environment: str) -> None:
    """A throwaway server has no concurrency limits; create the region-switch one."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from flows.region_lock import limit_name

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(limit_name(environment))
        except Exception:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit_name(environment), limit=1)
            )


def run_failover(**parameters: Any) -> dict[str, Any]:
    prepare_environment()
    from flows.failover import failover

    ensure_region_limit(parameters["environment"])
    result: dict[str, Any] = failover(**parameters)
    return result
