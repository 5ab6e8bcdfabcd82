"""The config backup's pure decisions: how long each kind is kept (and its copies), when
the assets changed, whose secrets are kept."""

from __future__ import annotations

from flows.config_assets import _same
from lifeboat.manifest import CopiedObject
from lifeboat.topology import Retention, load_topology
from tasks.config_read import secret_projects


def test_each_kind_is_kept_its_own_days_and_a_secrets_copy_no_longer() -> None:
    kept = Retention()
    assert [kept.days(k) for k in ("mongodb", "cloudsql", "config", "secrets", "assets")] == [
        30,
        90,
        90,
        30,
        180,
    ]
    assert kept.copy_days("mongodb") == kept.copy_days("cloudsql") == 90
    assert kept.copy_days("secrets") == 30  # seed 004: secrets 30 days, copies too
    assert Retention(secrets_days=7).copy_days("secrets") == 7


def test_assets_changed_means_a_name_a_size_or_a_checksum_differs() -> None:
    one = CopiedObject(generation=1, bytes=10, crc32c="AAAA", md5_hash="m1")
    kept = {"a.js": one}
    assert _same({"a.js": one.model_copy(update={"generation": 7})}, kept)  # rewritten alike
    assert not _same({"a.js": one.model_copy(update={"crc32c": "BBBB"})}, kept)
    assert not _same({"a.js": one.model_copy(update={"bytes": 11})}, kept)
    assert not _same({"a.js": one, "b.css": one}, kept)
    assert not _same({}, kept)


def test_the_secrets_kept_are_both_regions_and_the_app_secrets_projects() -> None:
    topo = load_topology("lab")
    projects = secret_projects(topo)
    assert projects[:2] == [topo.regions.primary.project, topo.regions.secondary.project]
    assert topo.cloud_sql.app_secret.project in projects
    assert len(projects) == len(set(projects))
