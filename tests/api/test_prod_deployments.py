"""Production's deployments (deployments/prefect.yaml, named prod) deploy onto a Cloud Run
work pool, and the Prefect server accepts them: it checks each deployment's job
variables against the pool's base job template (prefect-gcp's cloud-run-v2 type, as the
server's own collection registry describes it). No Google project is needed for that.

The session lab's server is used, and what the test deploys is removed afterwards, so
no other test sees a prod deployment or its schedules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.labharness import Lab

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
POOL = "lifeboat-prod"


def _prefect(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": lab.endpoints["prefect_api_url"]}
    auth = lab.endpoints.get("prefect_api_auth_string")
    if auth:
        env["PREFECT_API_AUTH_STRING"] = auth
    prefect = str(Path(sys.executable).parent / "prefect")
    return subprocess.run(
        [prefect, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )


def _http(lab: Lab) -> httpx.Client:
    auth_string = lab.endpoints.get("prefect_api_auth_string")
    auth = tuple(auth_string.split(":", 1)) if auth_string else None
    return httpx.Client(base_url=lab.endpoints["prefect_api_url"], auth=auth, timeout=30)


def _prod_deployments(http: httpx.Client) -> list[dict[str, Any]]:
    response = http.post("/deployments/filter", json={"deployments": {"name": {"any_": ["prod"]}}})
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


@pytest.fixture
def prod_pool(lab: Lab) -> Iterator[httpx.Client]:
    created = _prefect(lab, "work-pool", "create", POOL, "--type", "cloud-run-v2", "--overwrite")
    assert created.returncode == 0, created.stdout + created.stderr
    with _http(lab) as http:
        try:
            yield http
        finally:
            for deployment in _prod_deployments(http):
                http.delete(f"/deployments/{deployment['id']}")
            http.delete(f"/work_pools/{POOL}")


def test_production_deployments_deploy_onto_a_cloud_run_pool_in_the_secondary_region(
    lab: Lab, prod_pool: httpx.Client
) -> None:
    pool = prod_pool.get(f"/work_pools/{POOL}").json()
    assert pool["type"] == "cloud-run-v2"
    assert "region" in pool["base_job_template"]["variables"]["properties"]

    deployed = _prefect(
        lab, "--no-prompt", "deploy", "--name", "prod", "--prefect-file", str(PREFECT_YAML)
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    written = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    twins = {d["entrypoint"]: d for d in written if d["name"] == "lab"}
    served = _prod_deployments(prod_pool)
    assert len(served) == len(twins)  # each lab deployment once, nothing else
    for deployment in served:
        assert deployment["work_pool_name"] == POOL
        assert deployment["parameters"] == {"environment": "prod"}
        assert deployment["job_variables"]["region"] == "us-east1"
        assert deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
    lab_deployments = prod_pool.post(
        "/deployments/filter", json={"deployments": {"name": {"any_": ["lab"]}}}
    ).json()
    # The lab's own, deployed once each by `lifeboat lab up` (--name lab), are untouched.
    assert len(lab_deployments) == len(twins)
    assert {d["work_pool_name"] for d in lab_deployments} == {"lifeboat-lab"}

    automations = prod_pool.post("/automations/filter", json={}).json()
    assert "lifeboat-auto-rollback-prod" in {a["name"] for a in automations}


def test_the_server_refuses_a_production_job_variable_of_the_wrong_type(
    lab: Lab, prod_pool: httpx.Client, tmp_path: Path
) -> None:
    config = yaml.safe_load(PREFECT_YAML.read_text())
    config["definitions"]["work_pools"]["prod"]["job_variables"]["timeout"] = "two hours"
    for deployment in config["deployments"]:
        if deployment["name"] == "prod":
            deployment["work_pool"] = config["definitions"]["work_pools"]["prod"]
    broken = tmp_path / "prefect.yaml"
    broken.write_text(yaml.safe_dump(config, sort_keys=False))

    deployed = _prefect(
        lab, "--no-prompt", "deploy", "--name", "prod", "--prefect-file", str(broken)
    )

    assert deployed.returncode != 0
    assert "timeout" in deployed.stdout + deployed.stderr
    assert _prod_deployments(prod_pool) == []
