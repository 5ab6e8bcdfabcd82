"""deployments/environments/prod.example.yaml: valid, and it means Google.

An operator copies it to prod.yaml; a copy that does not validate, or that still points
at the lab, would only be found when a flow first runs against it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.cli import main
from lifeboat.topology import API_NAMES, REPO_ROOT, TopologyError, parse_topology_file

PROD_EXAMPLE = REPO_ROOT / "deployments" / "environments" / "prod.example.yaml"


def test_the_production_example_validates_and_reaches_google() -> None:
    topology = parse_topology_file(PROD_EXAMPLE)
    assert topology.environment == "prod"
    assert topology.endpoints.lab_dir is None
    assert [name for name in API_NAMES if getattr(topology.endpoints, name)] == []
    health = topology.health
    assert health.scheme == "https"
    targets = [health.connect_to, *health.regional_connect_to.values()]
    assert not any(t and t.startswith("lab:") for t in targets), targets
    # Region independence, as readiness checks it: the worker runs in the secondary.
    assert topology.workers.location == topology.regions.secondary.name


def test_lifeboat_validate_reads_a_file_by_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--file", str(PROD_EXAMPLE)]) == 0
    assert "valid (4 services)" in capsys.readouterr().out


def test_a_broken_copy_is_refused_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "prod.yaml"
    broken.write_text(PROD_EXAMPLE.read_text().replace("scheme: https", "scheme: gopher"))
    with pytest.raises(TopologyError, match=r"health\.scheme"):
        parse_topology_file(broken)
    assert main(["validate", "--file", str(broken)]) == 2
    assert "health.scheme" in capsys.readouterr().err
