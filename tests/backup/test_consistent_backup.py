"""A MongoDB backup taken while a writer inserts, updates and deletes is consistent at its
end: the dump plus its oplog.bson, restored, is the data as it was at that moment.

The end is the server's cut, a cluster time (whole seconds and an increment): in wall
time, the data as it was just after the newest change the backup holds (``last_wall``);
the next change is after the cut, in the capture's first slice."""

from __future__ import annotations

from lab.prefect_api import PrefectApi
from lifeboat.oplog import OPLOG_FILE
from tests.backup.backup_checks import (
    bucket_objects,
    documents_by_id,
    mongo,
    params,
    read_manifest,
)
from tests.backup.mongo_writer import Writer, state_at
from tests.labharness import Lab


def test_a_backup_under_writes_restores_the_data_as_it_was_at_its_end(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    before = documents_by_id(fresh_lab, "varai")
    writer = Writer(str(fresh_lab.endpoints["mongodb_uri"]), "varai", "sessions")
    writer.start()
    try:
        run = api.launch("backup/lab", params(sources=["mongodb"], retention=False))
        final = api.wait(run["id"], timeout=300)
    finally:
        writer.stop()
    assert final["state"]["type"] == "COMPLETED", final["state"]
    [name] = [n for n in bucket_objects(fresh_lab, "mongodb/") if n.endswith("manifest.json")]
    manifest = read_manifest(fresh_lab, name)
    assert manifest.oplog is not None and manifest.consistent_at is not None
    assert manifest.oplog.entries > 0, "no write landed while the dump ran"
    assert OPLOG_FILE in manifest.files
    assert manifest.oplog.tokens.keys() == {f"varai.{n}" for n in before}

    target = "consistent"
    restored = api.wait(
        api.launch("restore/lab", params(backup_id=manifest.backup_id, target_database=target))[
            "id"
        ],
        timeout=300,
    )
    assert restored["state"]["type"] == "COMPLETED", restored["state"]
    try:
        got = documents_by_id(fresh_lab, target)
        assert manifest.oplog.last_wall is not None
        assert manifest.oplog.last_wall < manifest.consistent_at
        expected = state_at(before["sessions"], writer.log, manifest.oplog.last_wall)
        assert got["sessions"] in expected, _difference(got["sessions"], expected[0])
        for name in ("products", "analytics"):
            assert got[name] == before[name]
    finally:
        with mongo(fresh_lab) as client:
            client.drop_database(target)


def _difference(got: dict[bytes, bytes], want: dict[bytes, bytes]) -> str:
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    changed = [k for k in want if k in got and got[k] != want[k]]
    return f"missing {len(missing)}, extra {len(extra)}, changed {len(changed)}"
