"""restore refuses what it cannot trust, before writing anything."""

from __future__ import annotations

import base64
import os

import pytest

from lab.prefect_api import PrefectApi
from tests.backup.backup_checks import (
    bucket_objects,
    mongo,
    params,
    read_manifest,
    read_secret_block,
    save_secret_block,
)
from tests.labharness import Lab, lifeboat


@pytest.fixture(scope="module")
def backed_up(lab: Lab, api: PrefectApi) -> str:
    """One verified MongoDB backup for the module; returns its manifest's name."""
    lab.reset()
    final = api.wait(api.launch("backup/lab", params(sources=["mongodb"]))["id"], timeout=300)
    assert final["state"]["type"] == "COMPLETED", final["state"]
    [name] = [n for n in bucket_objects(lab, "mongodb/") if n.endswith("manifest.json")]
    return name


def databases(lab: Lab) -> set[str]:
    with mongo(lab) as client:
        return set(client.list_database_names())


def restore(api: PrefectApi, **extra: object) -> dict[str, object]:
    return api.wait(api.launch("restore/lab", params(**extra))["id"], timeout=300)


def test_a_corrupted_object_is_refused_and_nothing_is_written(
    lab: Lab, api: PrefectApi, backed_up: str
) -> None:
    manifest = read_manifest(lab, backed_up)
    assert manifest.archive is not None
    # Bit rot in the stored object itself: same generation, one byte flipped mid-way.
    data = lab.root / "storage" / "data" / str(manifest.archive.generation)
    original = data.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    data.write_bytes(bytes(flipped))
    before = databases(lab)
    try:
        final = restore(api, target_database="tampered")
    finally:
        data.write_bytes(original)
    assert final["state"]["type"] == "FAILED"
    assert "failed verification" in final["state"]["message"]
    assert databases(lab) == before  # no scratch database was created


def test_a_wrong_key_is_refused_and_nothing_is_written(
    lab: Lab, api: PrefectApi, backed_up: str
) -> None:
    right = read_secret_block("lifeboat-backup-key")
    save_secret_block("lifeboat-backup-key", base64.b64encode(os.urandom(32)).decode())
    before = databases(lab)
    try:
        final = restore(api, target_database="wrongkey")
    finally:
        save_secret_block("lifeboat-backup-key", right)
    assert final["state"]["type"] == "FAILED"
    message = final["state"]["message"]
    assert "wrong key" in message and right not in message
    assert databases(lab) == before


def test_restoring_over_the_live_database_needs_force(
    lab: Lab, api: PrefectApi, backed_up: str
) -> None:
    final = restore(api, target_database="varai")
    assert final["state"]["type"] == "FAILED"
    assert "target_database: varai is a live database" in final["state"]["message"]


def test_a_malformed_backup_id_is_refused_by_the_api(lab: Lab, api: PrefectApi) -> None:
    response = api.http.post(
        f"/deployments/{api.deployment_id('restore/lab')}/create_flow_run",
        json={"parameters": params(backup_id="../../etc")},
    )
    assert response.status_code == 409
    assert "backup_id" in response.text


def test_the_cli_restores_the_newest_verified_backup(
    lab: Lab, api: PrefectApi, backed_up: str
) -> None:
    manifest = read_manifest(lab, backed_up)
    result = lifeboat("restore", "--env", "lab", "--target", "from_cli", env=dict(os.environ))
    try:
        assert result.returncode == 0, result.stderr[-2000:]
        assert "outcome: completed" in result.stdout
        with mongo(lab) as client:
            counts = {n: client.from_cli[n].count_documents({}) for n in ("products", "sessions")}
        expected = {c.name: c.documents for c in manifest.collections}
        assert counts == {n: expected[n] for n in counts}
    finally:
        with mongo(lab) as client:
            client.drop_database("from_cli")
