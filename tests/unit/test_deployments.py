"""deployments/prefect.yaml agrees with the topologies it deploys.

The automatic-rollback automation's `within` and the topology's `min_interval_s` both say
how long to wait between automatic rollbacks; Prefect reads one and the flow the other,
so a change to only one of them would go unnoticed until an error storm. Production's
deployments are the lab's twins: a flow scheduled or triggered in one and not the other
would be a surprise on the worst day. (tests/api/test_prod_deployments.py has the Prefect
server accept them.)
"""

from __future__ import annotations

from typing import Any

import yaml

from lifeboat.topology import REPO_ROOT, Topology, load_topology, parse_topology_file

PREFECT_YAML = REPO_ROOT / "deployments" / "prefect.yaml"
PROD_EXAMPLE = REPO_ROOT / "deployments" / "environments" / "prod.example.yaml"


def _topology(environment: str) -> Topology:
    """prod is an operator's copy of prod.example.yaml: the example stands in for it."""
    return (
        parse_topology_file(PROD_EXAMPLE) if environment == "prod" else load_topology(environment)
    )


def _deployments() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    return found


def _rollback_triggers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(d["parameters"]["environment"]), trigger)
        for d in _deployments()
        if d["entrypoint"] == "flows/rollback.py:rollback"
        for trigger in d.get("triggers") or []
    ]


def test_every_environment_has_an_automatic_rollback_trigger() -> None:
    triggers = _rollback_triggers()
    assert triggers, "no rollback deployment carries a trigger"
    for environment, trigger in triggers:
        assert trigger["name"] == f"lifeboat-auto-rollback-{environment}"
        assert trigger["expect"] == ["lifeboat.watch.threshold-crossed"]
        assert trigger["match"] == {"prefect.resource.id": f"lifeboat.environment.{environment}"}
        assert trigger["parameters"]["automatic"] is True
        # The strategy the watch's trigger calls for, and the trigger for the run's name
        # (flows/watch.py puts both in the event's payload).
        assert trigger["parameters"]["strategy"] == "{{ event.payload.strategy }}"
        assert trigger["parameters"]["trigger"] == "{{ event.payload.trigger }}"


def test_the_automation_waits_as_long_as_the_flow_does() -> None:
    for environment, trigger in _rollback_triggers():
        min_interval_s = _topology(environment).rollback_triggers.min_interval_s
        assert trigger["within"] == min_interval_s, (
            f"{environment}: the automation's within ({trigger['within']} s) differs from "
            f"rollback_triggers.min_interval_s ({min_interval_s} s)"
        )


def test_every_lab_deployment_has_a_production_twin() -> None:
    by_name: dict[str, dict[str, dict[str, Any]]] = {}
    for d in _deployments():
        by_name.setdefault(d["name"], {})[d["entrypoint"]] = d
    assert set(by_name) == {"lab", "prod"}
    lab, prod = by_name["lab"], by_name["prod"]
    assert set(prod) == set(lab)
    for entrypoint, twin in prod.items():
        mine = lab[entrypoint]
        for key in ("description", "tags", "schedules"):
            assert twin.get(key) == mine.get(key), (entrypoint, key)
        assert twin["parameters"] == {**mine["parameters"], "environment": "prod"}
        assert bool(twin.get("triggers")) == bool(mine.get("triggers")), entrypoint


def test_production_runs_in_the_region_a_failover_activates() -> None:
    topology = _topology("prod")
    for d in _deployments():
        if d["name"] != "prod":
            continue
        pool = d["work_pool"]
        assert pool["name"] == "lifeboat-prod", d["entrypoint"]
        region = pool["job_variables"]["region"]
        assert region == topology.regions.secondary.name == topology.workers.location
        # The image holds the code: each run starts in its copy of the repository.
        assert d["pull"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/lifeboat"}}
        ]
