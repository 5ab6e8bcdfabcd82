"""Topology rules beyond the schema's types: each bad file is refused with the field and
the rule named, before any flow runs (lifeboat/topology.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lifeboat.topology import ENVIRONMENTS_DIR, TopologyError, parse_topology_file
from tests.unit.builders import lab_topology


def _refusal(tmp_path: Path, data: Any) -> str:
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TopologyError) as refused:
        parse_topology_file(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def _lab() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ENVIRONMENTS_DIR / "lab.yaml").read_text())
    return data


def test_a_replica_in_another_project_than_its_primary_is_refused(tmp_path: Path) -> None:
    data = _lab()
    data["cloud_sql"]["replica"]["project"] = "ml-datadriven-recos-dr"
    assert _refusal(tmp_path, data) == (
        "invalid topology: cloud_sql: Value error, replica.project must equal primary.project"
        " (Cloud SQL keeps a read replica in its primary's project)"
    )


def test_the_apps_role_as_the_monitoring_role_is_refused(tmp_path: Path) -> None:
    data = _lab()
    data["cloud_sql"]["monitor_user"] = data["cloud_sql"].get("app_user", "varai_user")
    assert _refusal(tmp_path, data) == (
        "invalid topology: cloud_sql: Value error, monitor_user must differ from app_user (a"
        " planned switch keeps the apps' role off the old primary, as the monitoring role)"
    )


def test_a_minimum_above_the_maximum_is_refused_with_both_figures(tmp_path: Path) -> None:
    data = _lab()
    data["services"][2]["standby_scaling"] = {"min": 11, "max": 10}
    assert _refusal(tmp_path, data) == (
        "invalid topology: services.2.standby_scaling: Value error, min (11) must not exceed"
        " max (10)"
    )


def test_every_error_of_a_file_is_named_at_once(tmp_path: Path) -> None:
    data = _lab()
    data["dns"]["records"][0]["ttl"] = 0
    data["services"][0]["tier"] = "urgent"
    message = _refusal(tmp_path, data)
    assert message.startswith("invalid topology: ")
    fields = [part.split(":")[0] for part in message.removeprefix("invalid topology: ").split("; ")]
    assert fields == ["services.0.tier", "dns.records.0.ttl"]


@pytest.mark.parametrize("document", [["a", "list"], "text", None])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, document: object) -> None:
    assert _refusal(tmp_path, document) == "expected a mapping at the top level"


def test_an_unknown_service_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(TopologyError) as refused:
        lab_topology().service("billing")
    assert str(refused.value) == (
        "unknown service 'billing' in environment 'lab'; known: auth-service, ai-service,"
        " recommendation-service, face-service"
    )
