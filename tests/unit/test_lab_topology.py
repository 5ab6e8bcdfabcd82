"""The lab reads the topology file with its own model: the same names as the product's
reading, and a clear error naming what a lab cannot do without."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.topology import Role, TopologyFileError, read_topology
from lifeboat.topology import REPO_ROOT, RegionRole, parse_topology_file

LAB_YAML = REPO_ROOT / "deployments" / "environments" / "lab.yaml"


def test_the_lab_reads_the_names_the_product_reads() -> None:
    lab, product = read_topology(LAB_YAML), parse_topology_file(LAB_YAML)
    for role, product_role in zip(Role, RegionRole, strict=True):
        assert lab.regions.by_role(role).name == product.regions.by_role(product_role).name
        assert lab.regions.by_role(role).project == product.regions.by_role(product_role).project
    assert [s.name for s in lab.services] == [s.name for s in product.services]
    assert lab.cloud_sql.app_secret.resource == product.cloud_sql.app_secret.resource
    assert lab.cloud_sql.primary.instance == product.cloud_sql.primary.instance
    assert [r.rrdatas[Role.primary] for r in lab.dns.records] == [
        r.rrdatas[RegionRole.primary] for r in product.dns.records
    ]


def test_a_file_without_what_the_lab_seeds_is_refused_naming_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load(LAB_YAML.read_text())
    del data["cloud_sql"]["replica"]
    broken = tmp_path / "lab.yaml"
    broken.write_text(yaml.safe_dump(data))
    with pytest.raises(TopologyFileError, match=r"cloud_sql\.replica: Field required"):
        read_topology(broken)
    broken.write_text("regions: [unclosed")
    with pytest.raises(TopologyFileError, match=r"lab\.yaml"):
        read_topology(broken)
    with pytest.raises(TopologyFileError):
        read_topology(tmp_path / "missing.yaml")
