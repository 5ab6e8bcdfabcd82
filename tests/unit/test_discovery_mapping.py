"""`lifeboat discover`'s pure part: from what the lists returned to a topology, and the
guesses it says it made. No lab: snapshots are built by hand, shaped like the lab's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from lifeboat.discovery import DiscoveryError
from lifeboat.discovery.build import Discovered, build
from lifeboat.discovery.guesses import app_secret, buckets, region_records, sql_pair, url_map
from lifeboat.discovery.render import render
from lifeboat.discovery.snapshot import (
    Bucket,
    RecordSet,
    RunService,
    Snapshot,
    SqlInstance,
    UrlMap,
    Zone,
)
from lifeboat.topology import RegionRole, Topology

P, S = "ml-datadriven-recos", "ml-datadriven-recos-dr"
SECRET = f"projects/{S}/secrets/prod-database-url"
PRIMARY = SqlInstance(
    project=P, name="varai-prod", region="us-central1", replica_names=["varai-db-secondary"],
    databases=["postgres", "varai_prod"],
)  # fmt: skip
REPLICA = SqlInstance(
    project=P, name="varai-db-secondary", region="us-east1", master=f"{P}:varai-prod",
    instance_type="READ_REPLICA_INSTANCE",
)  # fmt: skip
GEO = RecordSet(
    name="geo.api.varai.ai.",
    type="A",
    routing_policy={
        "geo": {
            "items": [
                {"location": "us-central1", "rrdatas": ["34.120.10.10"]},
                {"location": "us-east1", "rrdatas": ["34.140.20.20"]},
            ]
        }
    },
)
API = RecordSet(name="api.varai.ai.", type="A", ttl=300, rrdatas=["34.120.10.10"])
SOA = RecordSet(name="varai.ai.", type="SOA", ttl=21600, rrdatas=["ns. admin. 1 2 3 4 5"])
ZONE = Zone(project=P, name="varai-ai-zone", dns_name="varai.ai.", record_sets=[SOA, API, GEO])
CDN = UrlMap(project=P, name="varai-cdn-lb", hosts=["api.varai.ai"])
BUCKETS = [
    Bucket(project=P, name="varai-backups", location="US"),
    Bucket(project=P, name="varai-dr-records", location="US"),
]


def _service(project: str, region: str, name: str, lo: int, hi: int, **kw: object) -> RunService:
    return RunService(
        project=project, region=region, name=name, image=f"gcr.io/{P}/{name}:v1",
        min_instances=lo, max_instances=hi, secrets=[SECRET], **kw,
    )  # fmt: skip


def _snapshot(**change: object) -> Snapshot:
    fields: dict[str, object] = {
        "primary_project": P,
        "secondary_project": S,
        "sql_instances": [REPLICA, PRIMARY],
        "services": [
            _service(P, "us-central1", "auth-service", 3, 50),
            _service(S, "us-east1", "auth-service", 0, 10),
            _service(P, "us-central1", "ai-service", 3, 50, labels={"tier": "important"}),
            _service(S, "us-east1", "ai-service", 0, 10),
        ],
        "zone": ZONE,
        "url_maps": [CDN],
        "buckets": BUCKETS,
    }
    fields.update(change)
    return Snapshot.model_validate(fields)


def test_a_lab_shaped_snapshot_makes_a_valid_topology_with_each_guess_said() -> None:
    discovered = build(_snapshot(), "found")
    topology = Topology.model_validate(discovered.data)
    assert (topology.regions.primary.name, topology.regions.primary.project) == ("us-central1", P)
    assert (topology.regions.secondary.name, topology.regions.secondary.project) == ("us-east1", S)
    assert [s.name for s in topology.services] == ["ai-service", "auth-service"]
    ai, auth = topology.services
    assert (ai.tier, auth.tier) == ("important", "critical")  # a label, else the guess
    assert (auth.active_scaling.min, auth.active_scaling.max) == (3, 50)
    assert (auth.standby_scaling.min, auth.standby_scaling.max) == (0, 10)
    record = topology.dns.records[0]
    assert record.name == "api.varai.ai."
    assert record.rrdatas[RegionRole.primary] == ["34.120.10.10"]
    assert record.rrdatas[RegionRole.secondary] == ["34.140.20.20"]  # from the geo set
    assert (topology.cloud_sql.primary.instance, topology.cloud_sql.replica.instance) == (
        "varai-prod",
        "varai-db-secondary",
    )
    assert topology.cloud_sql.databases == ["varai_prod"]  # postgres is Cloud SQL's own
    assert topology.cloud_sql.app_secret.resource == SECRET
    assert (topology.cdn.url_map, topology.cdn.host) == ("varai-cdn-lb", "api.varai.ai")
    assert (topology.backups.bucket, topology.backups.records_bucket) == (
        "varai-backups",
        "varai-dr-records",
    )
    sections = {g.section for g in discovered.guesses}
    assert {"regions", "services", "dns", "cloud_sql", "cdn", "health", "mongodb"} <= sections
    assert {"backups", "objectives", "workers"} <= sections
    # Not read from the cloud: the worker belongs where a failover goes.
    assert topology.workers.location == topology.regions.secondary.name
    assert "tier critical (no tier label): auth-service" in [g.text for g in discovered.guesses]


def test_the_rendered_file_reads_back_as_the_same_topology_with_guesses_as_comments() -> None:
    discovered = build(_snapshot(), "found", endpoints={"lab_dir": ".lab"})
    text = render(discovered, "environment lab", datetime(2026, 12, 5, tzinfo=UTC))
    assert yaml.safe_load(text) == discovered.data
    lines = text.splitlines()
    regions = lines.index("regions:")
    assert lines[regions - 1].startswith("# GUESS: backup:")
    assert lines[regions - 2].startswith("# GUESS: primary region us-central1")
    assert lines[0].startswith("# Discovered by `lifeboat discover` from environment lab")


def test_a_value_shared_by_two_records_is_written_out_twice_not_as_a_yaml_alias() -> None:
    shared = {"primary": ["34.120.10.10"], "secondary": ["34.140.20.20"]}
    data = {
        "dns": {"records": [{"name": "a.", "rrdatas": shared}, {"name": "b.", "rrdatas": shared}]}
    }
    text = render(Discovered(data=data), "lab", datetime(2026, 12, 5, tzinfo=UTC))
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == data


def test_the_primary_region_is_the_sql_primary_s_whichever_way_the_link_is_listed() -> None:
    # The primary lists its replica; the replica names its primary: either link is enough.
    unlinked_replica = REPLICA.model_copy(update={"master": None})
    assert sql_pair([PRIMARY, unlinked_replica], P)[:2] == (PRIMARY, unlinked_replica)
    unlisted = PRIMARY.model_copy(update={"replica_names": []})
    assert sql_pair([unlisted, REPLICA], P)[:2] == (unlisted, REPLICA)


def test_no_cross_region_replica_is_an_error_naming_the_instances() -> None:
    same_region = REPLICA.model_copy(update={"region": "us-central1"})
    with pytest.raises(DiscoveryError, match="read replica in another region") as err:
        sql_pair([PRIMARY, same_region], P)
    assert f"{P}/varai-prod (us-central1)" in str(err.value)
    with pytest.raises(DiscoveryError, match="instances found: none"):
        sql_pair([], P)


def test_several_pairs_prefer_the_primary_project_and_say_which_were_left() -> None:
    other = SqlInstance(project=S, name="aaa", region="europe-west1", replica_names=["bbb"])
    other_replica = SqlInstance(project=S, name="bbb", region="us-east1", master=f"{S}:aaa")
    primary, replica, guess = sql_pair([other, other_replica, PRIMARY, REPLICA], P)
    assert (primary.name, replica.name) == ("varai-prod", "varai-db-secondary")
    assert "not used: aaa->bbb" in guess.text


def test_a_record_pointing_at_the_secondary_takes_both_regions_and_says_so() -> None:
    moved = API.model_copy(update={"rrdatas": ["34.140.20.20"]})
    zone = ZONE.model_copy(update={"record_sets": [moved, GEO]})
    records, said = region_records(zone, "us-central1", "us-east1", ["api.varai.ai"])
    assert records[0]["rrdatas"] == {"primary": ["34.120.10.10"], "secondary": ["34.140.20.20"]}
    assert "answers with us-east1's addresses now" in said[0].text


def test_a_host_with_no_geo_set_is_kept_for_the_operator_to_fill_in_and_others_left_out() -> None:
    www = RecordSet(name="www.varai.ai.", type="CNAME", rrdatas=["varai.ai."])
    zone = ZONE.model_copy(update={"record_sets": [API, www]})
    records, said = region_records(zone, "us-central1", "us-east1", ["api.varai.ai"])
    assert records == [
        {
            "name": "api.varai.ai.",
            "type": "A",
            "ttl": 300,
            "rrdatas": {"primary": ["34.120.10.10"], "secondary": []},
            "failover_ttl": 60,
        }
    ]
    texts = [g.text for g in said]
    assert any("fill in rrdatas.secondary" in t for t in texts)
    assert "left out, no per-region addresses found: www.varai.ai. CNAME" in texts
    # The file is printed, but the topology model refuses it until it is filled in.
    discovered = build(_snapshot(zone=zone), "found")
    with pytest.raises(ValueError, match="rrdatas needs a non-empty list for secondary"):
        Topology.model_validate(discovered.data)


def test_a_zone_with_no_record_of_the_regions_is_an_error_naming_the_zone() -> None:
    zone = ZONE.model_copy(update={"record_sets": [SOA]})
    with pytest.raises(DiscoveryError, match=r"varai-ai-zone .* has no A/AAAA/CNAME record"):
        build(_snapshot(zone=zone), "found")


def test_services_in_one_region_only_are_left_out_and_none_in_both_is_an_error() -> None:
    lone = _service(P, "us-central1", "face-service", 3, 50)
    discovered = build(_snapshot(services=[*_snapshot().services, lone]), "found")
    assert "face-service" not in [s["name"] for s in discovered.data["services"]]
    assert "left out, in one region only: face-service" in [g.text for g in discovered.guesses]
    with pytest.raises(DiscoveryError, match=r"no Cloud Run service runs in both .*face-service"):
        build(_snapshot(services=[lone]), "found")


def test_a_standby_warmer_than_the_active_region_is_pointed_out() -> None:
    swapped = [
        _service(P, "us-central1", "auth-service", 0, 10),
        _service(S, "us-east1", "auth-service", 3, 50),
    ]
    texts = [g.text for g in build(_snapshot(services=swapped), "found").guesses]
    assert any("keeps more instances warm (3)" in t and "failover in effect" in t for t in texts)
    assert not any("warm" in g.text for g in build(_snapshot(), "found").guesses)


def test_buckets_are_told_apart_by_name_and_a_missing_kind_is_named() -> None:
    backup, records, _ = buckets(list(reversed(BUCKETS)))
    assert (backup.name, records.name) == ("varai-backups", "varai-dr-records")
    with pytest.raises(DiscoveryError, match=r"no bucket named like 'record'.*varai-backups"):
        buckets(BUCKETS[:1])


def test_the_url_map_is_the_one_named_else_the_one_serving_a_record() -> None:
    other = UrlMap(project=P, name="aaa-internal", hosts=["intranet.example"])
    assert url_map([other, CDN], None, ZONE)[0] == CDN
    assert url_map([other, CDN], "aaa-internal", ZONE) == (other, None)
    with pytest.raises(DiscoveryError, match="url-map 'missing' not found"):
        url_map([other, CDN], "missing", ZONE)


def test_a_secret_referenced_by_project_number_is_taken_to_be_in_the_fallback_project() -> None:
    service = _service(P, "us-central1", "auth-service", 3, 50)
    numbered = service.model_copy(update={"secrets": ["projects/582582007446/secrets/db-url"]})
    project, name, guess = app_secret([numbered], S)
    assert (project, name) == (S, "db-url")
    assert "project number 582582007446 taken to be" in guess.text


def test_a_primary_with_only_system_databases_is_an_error() -> None:
    bare = PRIMARY.model_copy(update={"databases": ["postgres"]})
    with pytest.raises(DiscoveryError, match="varai-prod holds no database besides"):
        build(_snapshot(sql_instances=[bare, REPLICA]), "found")
