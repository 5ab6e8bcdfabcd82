"""config-backup through the real Prefect server and worker, against the lab's Cloud Run,
Cloud DNS, Compute, Secret Manager and Cloud Storage emulators."""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from lab.prefect_api import PrefectApi
from lifeboat.archive import parse_key, read_archive
from lifeboat.manifest import Manifest
from tests.backup.backup_checks import (
    BACKUPS,
    TOPOLOGY,
    bucket_objects,
    params,
    read_manifest,
    read_secret_block,
    write_synthetic,
)
from tests.flows.lab_checks import read_object
from tests.labharness import Lab

ASSETS = TOPOLOGY.cdn.assets_bucket
APP_SECRET = TOPOLOGY.cloud_sql.app_secret.resource


def _run(api: PrefectApi, kinds: list[str]) -> dict[str, Any]:
    return api.wait(api.launch("config-backup/lab", params(kinds=kinds))["id"], timeout=300)


def _manifest(lab: Lab, kind: str) -> Manifest:
    names = [n for n in bucket_objects(lab, f"{kind}/") if n.endswith("manifest.json")]
    assert names, f"no {kind} manifest"
    return read_manifest(lab, names[-1])


def _members(lab: Lab, manifest: Manifest) -> dict[str, Any]:
    """The archive's members, decrypted with the lab's backup key: path → JSON."""
    assert manifest.archive is not None
    data = read_object(lab, BACKUPS, manifest.archive.uri.removeprefix(f"gs://{BACKUPS}/"))
    key = parse_key(read_secret_block(TOPOLOGY.backups.encryption_key_secret))
    return {m.path: json.loads(m.stream.read()) for m in read_archive(io.BytesIO(data), key)}


def _secret_value(lab: Lab) -> bytes:
    got = lab.clients().secret_manager.access_secret_version(name=f"{APP_SECRET}/versions/latest")
    return bytes(got.payload.data)


def test_each_kind_is_archived_verified_and_holds_what_the_apis_say(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    final = _run(api, ["config", "secrets", "assets"])
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]

    # config: every Run service of both regions, the zone's record sets, the url-map.
    config = _manifest(fresh_lab, "config")
    assert config.status == "verified" and config.key_id
    members = _members(fresh_lab, config)
    assert set(members) == set(config.files) == {i.path for i in config.items}
    for region in (TOPOLOGY.regions.primary, TOPOLOGY.regions.secondary):
        for service in TOPOLOGY.services:
            spec = members[f"run/{region.name}/{service.name}.json"]
            assert spec["name"].endswith(f"/locations/{region.name}/services/{service.name}")
            assert spec["template"]["containers"][0]["image"]
    for record in TOPOLOGY.dns.records:
        rrset = members[f"dns/{TOPOLOGY.dns.zone}/{record.type}/{record.name.rstrip('.')}.json"]
        assert rrset["rrdatas"] == record.rrdatas["primary"]
    url_map = members[f"compute/urlMaps/{TOPOLOGY.cdn.url_map}.json"]
    assert url_map["name"] == TOPOLOGY.cdn.url_map
    # The backend service the url-map names, kept whole beside it (by its link's name).
    link = url_map["defaultService"]
    backend = members[f"compute/backendServices/{link.rsplit('/', 1)[-1]}.json"]
    assert backend["selfLink"] == link and backend["enableCDN"] and backend["backends"]
    assert {i.kind for i in config.items if i.path.startswith("compute/")} == {
        "url-map",
        "backend-service",
    }

    # secrets: the apps' secret with its latest value, inside the encrypted archive only.
    secrets = _manifest(fresh_lab, "secrets")
    assert secrets.status == "verified"
    project = TOPOLOGY.cloud_sql.app_secret.project
    kept = _members(fresh_lab, secrets)[
        f"secrets/{project}/{TOPOLOGY.cloud_sql.app_secret.name}.json"
    ]
    value = _secret_value(fresh_lab)
    assert base64.b64decode(kept["latest"]["data"]) == value
    assert secrets.archive is not None
    archive = read_object(fresh_lab, BACKUPS, secrets.archive.uri.removeprefix(f"gs://{BACKUPS}/"))
    assert value not in archive  # encrypted
    record = read_object(
        fresh_lab, TOPOLOGY.backups.records_bucket, f"config-backup/cb-{secrets.backup_id}.json"
    )
    assert value not in record and value.decode() not in "\n".join(api.final_logs(final["id"]))

    # assets: each object of the assets bucket, copied and checked by checksum.
    assets = _manifest(fresh_lab, "assets")
    assert assets.status == "verified"
    client = fresh_lab.clients().storage(TOPOLOGY.cdn.project)
    source = {b.name: b.crc32c for b in client.bucket(ASSETS).list_blobs()}
    assert source and {n: o.crc32c for n, o in assets.assets.items()} == source
    for name in source:
        copy = client.bucket(BACKUPS).get_blob(f"{assets.prefix}objects/{name}")
        assert copy is not None and copy.crc32c == source[name]

    # The archived kinds are copied cross-region, as the data backups are.
    for manifest in (config, secrets):
        assert {c.location for c in manifest.copies.values() if c.verified} == {
            c.location for c in TOPOLOGY.backups.copies
        }


def test_unchanged_assets_are_not_copied_again(fresh_lab: Lab, api: PrefectApi) -> None:
    assert _run(api, ["assets"])["state"]["type"] == "COMPLETED"
    first = _manifest(fresh_lab, "assets")
    since = fresh_lab.last_seq()
    final = _run(api, ["assets"])
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    rewrites = [
        e for e in fresh_lab.requests(api="storage", since=since) if "rewriteTo" in e["path"]
    ]
    assert rewrites == []
    assert _manifest(fresh_lab, "assets").backup_id == first.backup_id

    # A changed asset makes a new backup holding it.
    client = fresh_lab.clients().storage(TOPOLOGY.cdn.project)
    client.bucket(ASSETS).blob("widget/v1/widget.js").upload_from_string(b"window.varai2={};\n")
    assert _run(api, ["assets"])["state"]["type"] == "COMPLETED"
    second = _manifest(fresh_lab, "assets")
    assert second.backup_id != first.backup_id
    assert second.assets["widget/v1/widget.js"].bytes == len(b"window.varai2={};\n")


def test_a_kind_that_fails_fails_the_run_and_not_the_others(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # Listing secrets refused (a permanent 403): the secrets kind fails, named; the
    # configuration is still backed up and verified.
    fresh_lab.fault(api="secretmanager", method="GET", path="/secrets$", status=403)
    since = fresh_lab.last_seq()
    final = _run(api, ["config", "secrets"])
    assert final["state"]["type"] == "FAILED"
    assert "secrets" in final["state"]["message"], final["state"]["message"]
    assert _manifest(fresh_lab, "config").status == "verified"
    assert _manifest(fresh_lab, "secrets").status == "failed"
    lists = [
        e
        for e in fresh_lab.requests(api="secretmanager", method="GET", since=since)
        if e["path"].endswith("/secrets")
    ]
    assert len(lists) == 1  # a 403 is not retried
    assert sorted(w["name"] for w in fresh_lab.webhooks()) == ["email", "slack"]


def test_a_backend_service_answered_404_fails_the_config_backup_naming_it(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # The url-map names a backend service Compute no longer knows: the backup fails, named,
    # rather than keep a url-map that could not be put back.
    fresh_lab.fault(api="compute", method="GET", path="/backendServices/", status=404)
    final = _run(api, ["config"])
    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert f"backendServices/{TOPOLOGY.cdn.url_map}-backend" in message, message
    assert "404" in message, message
    manifest = _manifest(fresh_lab, "config")
    assert manifest.status == "failed" and "backendServices/" in (manifest.error or "")


def test_transient_errors_are_retried(fresh_lab: Lab, api: PrefectApi) -> None:
    fresh_lab.fault(api="run", method="GET", path="/services$", status=503, count=1)
    fresh_lab.fault(api="dns", method="GET", path="/rrsets$", status=429, count=1)
    fresh_lab.fault(api="compute", method="GET", path="/backendServices/", status=503, count=1)
    final = _run(api, ["config"])
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    assert _manifest(fresh_lab, "config").status == "verified"


def test_retention_keeps_each_kind_its_own_days(fresh_lab: Lab, api: PrefectApi) -> None:
    # Past retention: config after 90 days, secrets after 30; a 40-day-old config stays.
    old_config = write_synthetic(fresh_lab, "config", timedelta(days=120))
    kept_config = write_synthetic(fresh_lab, "config", timedelta(days=40))
    old_secrets = write_synthetic(fresh_lab, "secrets", timedelta(days=40))
    final = _run(api, ["config", "secrets"])
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    left = set(bucket_objects(fresh_lab, "config/")) | set(bucket_objects(fresh_lab, "secrets/"))
    assert not any(n.startswith(old_config.prefix) for n in left)
    assert not any(n.startswith(old_secrets.prefix) for n in left)
    assert any(n.startswith(kept_config.prefix) for n in left)
    # A secrets copy is kept no longer than the secrets backup itself.
    for copy in TOPOLOGY.backups.copies:
        client = fresh_lab.clients().storage(TOPOLOGY.regions.primary.project)
        there = [b.name for b in client.bucket(copy.bucket).list_blobs(prefix="secrets/")]
        assert not any(n.startswith(old_secrets.prefix) for n in there), copy.location


def test_bad_kinds_are_refused_before_any_call(fresh_lab: Lab, api: PrefectApi) -> None:
    since = fresh_lab.last_seq()
    for kinds in (["databases"], []):
        with pytest.raises(httpx.HTTPStatusError) as err:
            api.launch("config-backup/lab", params(kinds=kinds))
        assert err.value.response.status_code == 409
        assert "kinds" in err.value.response.text
    assert fresh_lab.requests(since=since) == []
