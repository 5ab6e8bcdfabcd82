"""deployments/prefect.yaml agrees with the topologies it deploys.

The automatic-rollback automation's `within` and the topology's `min_interval_s` both say
how long to wait between automatic rollbacks; Prefect reads one and the flow the other,
so a change to only one of them would go unnoticed until an error storm.
"""

from __future__ import annotations

from typing import Any

import yaml

from lifeboat.topology import REPO_ROOT, load_topology

PREFECT_YAML = REPO_ROOT / "deployments" / "prefect.yaml"


def _rollback_triggers() -> list[tuple[str, dict[str, Any]]]:
    deployments = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    return [
        (str(d["parameters"]["environment"]), trigger)
        for d in deployments
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


def test_the_automation_waits_as_long_as_the_flow_does() -> None:
    for environment, trigger in _rollback_triggers():
        min_interval_s = load_topology(environment).rollback_triggers.min_interval_s
        assert trigger["within"] == min_interval_s, (
            f"{environment}: the automation's within ({trigger['within']} s) differs from "
            f"rollback_triggers.min_interval_s ({min_interval_s} s)"
        )
