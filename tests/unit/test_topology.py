"""The topology model: the lab file loads, and a bad file names the field that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lifeboat.topology import (
    ENVIRONMENTS_DIR,
    RegionRole,
    Tier,
    TopologyError,
    load_topology,
    parse_topology_file,
)


def _lab_data() -> dict:
    return yaml.safe_load((ENVIRONMENTS_DIR / "lab.yaml").read_text())


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_lab_topology_uses_the_seed_names() -> None:
    t = load_topology("lab")
    assert (t.regions.primary.name, t.regions.secondary.name, t.regions.backup.name) == (
        "us-central1",
        "us-east1",
        "europe-west1",
    )
    assert t.regions.primary.project == "ml-datadriven-recos"
    assert t.regions.secondary.project == "ml-datadriven-recos-dr"
    assert [s.name for s in t.services] == [
        "auth-service",
        "ai-service",
        "recommendation-service",
        "face-service",
    ]
    assert t.service("auth-service").tier is Tier.critical
    assert t.service("face-service").tier is Tier.important
    assert t.dns.zone == "varai-ai-zone"
    record = t.dns.records[0]
    assert (record.name, record.type, record.ttl) == ("api.varai.ai.", "A", 300)
    assert record.rrdatas[RegionRole.primary] != record.rrdatas[RegionRole.secondary]
    assert (t.cloud_sql.primary.instance, t.cloud_sql.replica.instance) == (
        "varai-prod",
        "varai-db-secondary",
    )
    assert t.cdn.url_map == "varai-cdn-lb"
    assert (t.backups.bucket, t.backups.records_bucket) == ("varai-backups", "varai-dr-records")
    assert t.objectives[Tier.critical].rpo_minutes == 5
    assert t.objectives[Tier.important].rto_minutes == 30


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["services"][1]["active_scaling"].update(min=60), "services.1.active_scaling"),
        (lambda d: d["services"][0].update(tier="urgent"), "services.0.tier"),
        (lambda d: d["dns"]["records"][0]["rrdatas"].pop("secondary"), "dns.records.0.rrdatas"),
        (lambda d: d["cloud_sql"].pop("replica"), "cloud_sql.replica"),
        (lambda d: d["objectives"].pop("standard"), "objectives"),
        (lambda d: d["backups"].update(bucket="Bad_Bucket"), "backups.bucket"),
        (lambda d: d["regions"]["primary"].update(nmae="typo"), "regions.primary.nmae"),
        (lambda d: d["services"].append(dict(d["services"][0])), "duplicate name"),
    ],
)
def test_bad_topology_names_the_field(tmp_path: Path, mutate, field: str) -> None:
    data = _lab_data()
    mutate(data)
    with pytest.raises(TopologyError) as err:
        parse_topology_file(_write(tmp_path, data))
    assert field in str(err.value)


def test_mongo_uri_cannot_be_written_in_the_file(tmp_path: Path) -> None:
    data = _lab_data()
    data["mongodb"]["uri"] = "mongodb://user:secret@host/"
    with pytest.raises(TopologyError, match=r"mongodb\.uri"):
        parse_topology_file(_write(tmp_path, data))


@pytest.mark.parametrize("name", ["prod", "../lab", "", "LAB"])
def test_unknown_or_malformed_environment_is_refused(name: str) -> None:
    with pytest.raises(TopologyError, match="environment"):
        load_topology(name)


def test_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("regions: [unclosed")
    with pytest.raises(TopologyError, match="not valid YAML"):
        parse_topology_file(path)


def test_health_ca_bundle_is_optional_and_checked(tmp_path: Path) -> None:
    assert load_topology("lab").health.ca_bundle is None  # the system trust store
    data = _lab_data()
    data["health"].update(scheme="https", ca_bundle="lab:ca")
    assert parse_topology_file(_write(tmp_path, data)).health.ca_bundle == "lab:ca"
    data["health"]["ca_bundle"] = ["not", "a", "path"]
    with pytest.raises(TopologyError, match="ca_bundle"):
        parse_topology_file(_write(tmp_path, data))
