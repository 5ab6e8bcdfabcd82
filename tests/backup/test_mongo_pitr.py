"""MongoDB to a point in time: a base backup, then the change slices that mongo-capture
ships every 5 minutes, replayed up to the moment; and a gap is never skipped."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from lab.prefect_api import PrefectApi
from lifeboat.slices import CAPTURE_STATE, CaptureState
from tests.backup.backup_checks import (
    BACKUPS,
    TOPOLOGY,
    bucket_objects,
    documents_by_id,
    mongo,
    params,
    read_manifest,
)
from tests.flows.lab_checks import read_object, run_records
from tests.flows.readiness_checks import readiness
from tests.labharness import Lab


def run(api: PrefectApi, deployment: str, **extra: Any) -> dict[str, Any]:
    final: dict[str, Any] = api.wait(api.launch(deployment, params(**extra))["id"], timeout=400)
    return final


def capture_state(lab: Lab) -> CaptureState:
    return CaptureState.model_validate_json(read_object(lab, BACKUPS, CAPTURE_STATE))


def base_manifests(lab: Lab) -> list[str]:
    return [n for n in bucket_objects(lab, "mongodb/") if n.endswith("manifest.json")]


def databases(lab: Lab) -> set[str]:
    with mongo(lab) as client:
        return set(client.list_database_names())


def test_a_restore_to_a_moment_holds_exactly_what_was_there_then(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    # The first capture finds no base backup with change tokens: it takes one, then a slice.
    first = run(api, "mongo-capture/lab")
    assert first["state"]["type"] == "COMPLETED", first["state"]
    assert len(base_manifests(fresh_lab)) == 1
    assert capture_state(fresh_lab).seq == 1

    with mongo(fresh_lab) as client:
        sessions = client.varai.sessions
        ids = [d["_id"] for d in sessions.find().limit(4)]
        # Before the moment: inserts, an update, a delete.
        sessions.insert_many([{"_id": "a1", "n": 1}, {"_id": "a2", "n": 2}])
        sessions.update_one({"_id": ids[0]}, {"$set": {"face_shape": "before"}})
        sessions.delete_one({"_id": ids[1]})
        time.sleep(0.3)
        at_the_moment = documents_by_id(fresh_lab, "varai")
        moment = datetime.now(UTC)
        time.sleep(0.3)
        # After it: the same kinds again, on the documents written before it too.
        sessions.insert_one({"_id": "b1", "n": 3})
        sessions.update_one({"_id": "a1"}, {"$set": {"n": 10}})
        sessions.delete_one({"_id": "a2"})
        sessions.update_one({"_id": ids[0]}, {"$set": {"face_shape": "after"}})
        sessions.delete_one({"_id": ids[2]})
        product = client.varai.products.find_one()
        assert product is not None
        client.varai.products.update_one({"_id": product["_id"]}, {"$set": {"in_stock": False}})

    second = run(api, "mongo-capture/lab")
    assert second["state"]["type"] == "COMPLETED", second["state"]
    state = capture_state(fresh_lab)
    assert state.seq == 2 and state.until > moment
    [slice_two] = [
        n for n in bucket_objects(fresh_lab, "mongodb-oplog/") if "/000002/manifest" in n
    ]
    assert json.loads(read_object(fresh_lab, BACKUPS, slice_two))["oplog"]["entries"] >= 10

    target = "pitr"
    restored = run(api, "restore/lab", point_in_time=moment.isoformat(), target_database=target)
    assert restored["state"]["type"] == "COMPLETED", restored["state"]
    try:
        assert documents_by_id(fresh_lab, target) == at_the_moment
    finally:
        with mongo(fresh_lab) as client:
            client.drop_database(target)

    # Outside what is covered: refused, naming the field, before anything is written.
    before = databases(fresh_lab)
    for point in (datetime.now(UTC) + timedelta(hours=1), moment - timedelta(hours=2)):
        refused = run(api, "restore/lab", point_in_time=point.isoformat(), target_database="no")
        assert refused["state"]["type"] == "FAILED"
        assert "point_in_time" in refused["state"]["message"], refused["state"]["message"]
    # The slices are in the backups bucket only: a copy's bucket with a moment is refused.
    refused = run(
        api,
        "restore/lab",
        point_in_time=moment.isoformat(),
        source_bucket="europe-west1",
        target_database="no",
    )
    assert refused["state"]["type"] == "FAILED"
    assert "source_bucket: 'europe-west1'" in refused["state"]["message"]
    assert databases(fresh_lab) == before


def slice_manifests(lab: Lab) -> list[dict[str, Any]]:
    names = [n for n in bucket_objects(lab, "mongodb-oplog/") if n.endswith("/manifest.json")]
    found = [json.loads(read_object(lab, BACKUPS, n)) for n in names]
    return sorted(found, key=lambda m: int(m["seq"]))


def test_a_backlog_over_the_cap_ships_as_several_slices_in_one_run(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    first = run(api, "mongo-capture/lab")
    assert first["state"]["type"] == "COMPLETED", first["state"]
    with mongo(fresh_lab) as client:
        sessions = client.varai.sessions
        sessions.insert_many([{"_id": f"bulk{i}", "pad": "x" * 200} for i in range(60)])
        sessions.update_one({"_id": "bulk0"}, {"$set": {"pad": "y"}})
        time.sleep(0.3)
        at_the_moment = documents_by_id(fresh_lab, "varai")
        moment = datetime.now(UTC)
        time.sleep(1.1)  # a cluster time counts whole seconds: the cut falls after the moment

    # About 17 changes of ~250 bytes fit in 4 KiB: one run ships the 61 as several slices.
    caught_up = run(api, "mongo-capture/lab", slice_max_bytes=4096)
    assert caught_up["state"]["type"] == "COMPLETED", caught_up["state"]
    slices = [m for m in slice_manifests(fresh_lab) if m["seq"] >= 2]
    assert len(slices) >= 3, [m["oplog"]["entries"] for m in slices]
    assert capture_state(fresh_lab).seq == slices[-1]["seq"]
    assert sum(m["oplog"]["entries"] for m in slices) == 61  # none lost, none twice
    assert all(m["status"] == "verified" for m in slices)
    assert [m["capped"] for m in slices] == [True] * (len(slices) - 1) + [False]
    assert all(m["flow_run_id"] == caught_up["id"] for m in slices)

    restored = run(api, "restore/lab", point_in_time=moment.isoformat(), target_database="capped")
    assert restored["state"]["type"] == "COMPLETED", restored["state"]
    try:
        assert documents_by_id(fresh_lab, "capped") == at_the_moment
    finally:
        with mongo(fresh_lab) as client:
            client.drop_database("capped")


def test_a_gap_is_reported_and_starts_a_new_base_backup(fresh_lab: Lab, api: PrefectApi) -> None:
    first = run(api, "mongo-capture/lab")
    assert first["state"]["type"] == "COMPLETED", first["state"]
    chain = capture_state(fresh_lab)
    with mongo(fresh_lab) as client:
        client.varai.sessions.insert_one({"_id": "lost", "n": 0})
    # The oplog moves past the stored tokens (a capture down for longer than its window).
    fresh_lab.roll_oplog("varai")

    gap = run(api, "mongo-capture/lab")
    assert gap["state"]["type"] == "FAILED"
    assert "gap" in gap["state"]["message"] and "ChangeStreamHistoryLost" in gap["state"]["message"]
    record = json.loads(
        read_object(fresh_lab, TOPOLOGY.backups.records_bucket, _record_name(fresh_lab))
    )
    assert record["outcome"] == "failed" and record["after"]["chain_ended"]["after_slice"] == 1
    assert len(base_manifests(fresh_lab)) == 2  # a new base backup was taken
    fresh = capture_state(fresh_lab)
    assert fresh.base_backup_id == record["after"]["new_base"] != chain.base_backup_id
    assert fresh.seq == 0
    assert fresh_lab.webhooks(), "the gap was not notified"

    after = run(api, "mongo-capture/lab")
    assert after["state"]["type"] == "COMPLETED", after["state"]
    assert capture_state(fresh_lab).seq == 1

    # The newest slice is minutes old at most: staleness reports it within the 5-min RPO,
    # and so does readiness (red here for what this lab lacks: a Cloud SQL backup, a drill).
    stale = run(api, "backup-staleness/lab", sources=["mongodb"])
    assert stale["state"]["type"] == "COMPLETED", stale["state"]
    [staleness] = run_records(fresh_lab, "backup-staleness", stale["id"])
    rows = {r["source"]: r for r in staleness["after"]["sources"]}
    assert rows["mongodb-changes"]["level"] == "ok"
    assert rows["mongodb-changes"]["age_hours"] < 5 / 60
    _, checks = readiness(api, fresh_lab)
    capture = checks[("capture-age", "mongodb-changes")]
    assert capture["status"] == "green", capture
    # The base backup turned post-images on; a collection where they are off is red.
    assert checks[("post-images", "mongodb")]["status"] == "green", checks
    with mongo(fresh_lab) as client:
        client.varai.command("collMod", "sessions", changeStreamPreAndPostImages={"enabled": False})
    _, checks = readiness(api, fresh_lab)
    images = checks[("post-images", "mongodb")]
    assert images["status"] == "RED" and "varai.sessions" in images["detail"], images
    # ...and the next capture a gap, whose new base turns them on again.
    off = run(api, "mongo-capture/lab")
    assert off["state"]["type"] == "FAILED"
    assert "varai.sessions have no changeStreamPreAndPostImages" in off["state"]["message"]
    with mongo(fresh_lab) as client:
        options = {i["name"]: i["options"] for i in client.varai.list_collections()}
    assert options["sessions"]["changeStreamPreAndPostImages"] == {"enabled": True}


def test_a_collection_created_or_dropped_since_the_base_is_a_gap(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    first = run(api, "mongo-capture/lab")
    assert first["state"]["type"] == "COMPLETED", first["state"]
    with mongo(fresh_lab) as client:
        client.varai.wishlists.insert_one({"_id": "w1"})  # no token: in no slice

    created = run(api, "mongo-capture/lab")
    assert created["state"]["type"] == "FAILED"
    assert "varai.wishlists created since the chain's base" in created["state"]["message"]
    fresh = capture_state(fresh_lab)
    assert fresh.seq == 0 and "varai.wishlists" in fresh.tokens  # the new base has it

    with mongo(fresh_lab) as client:
        client.varai.wishlists.drop()
    dropped = run(api, "mongo-capture/lab")
    assert dropped["state"]["type"] == "FAILED"
    assert "varai.wishlists of the chain's tokens are gone" in dropped["state"]["message"]
    assert "varai.wishlists" not in capture_state(fresh_lab).tokens
    assert len(base_manifests(fresh_lab)) == 3

    after = run(api, "mongo-capture/lab")
    assert after["state"]["type"] == "COMPLETED", after["state"]


def test_an_unreadable_capture_state_is_a_red_row_not_a_crash(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    storage = fresh_lab.clients().storage(TOPOLOGY.regions.primary.project)
    storage.bucket(BACKUPS).blob(CAPTURE_STATE).upload_from_string("{not json")

    stale = run(api, "backup-staleness/lab", sources=["mongodb"])
    assert stale["state"]["type"] == "FAILED"  # an alert, with every row recorded
    [staleness] = run_records(fresh_lab, "backup-staleness", stale["id"])
    rows = {r["source"]: r for r in staleness["after"]["sources"]}
    assert rows["mongodb-changes"]["level"] == "alert"
    assert "capture state unreadable" in rows["mongodb-changes"]["error"]
    assert "capture state unreadable" in stale["state"]["message"]

    _, checks = readiness(api, fresh_lab)
    capture = checks[("capture-age", "mongodb-changes")]
    assert capture["status"] == "RED" and "capture state unreadable" in capture["detail"]


def _record_name(lab: Lab) -> str:
    client = lab.clients().storage(TOPOLOGY.regions.primary.project)
    names = [
        b.name
        for b in client.bucket(TOPOLOGY.backups.records_bucket).list_blobs(prefix="mongo-capture/")
    ]
    failed = [
        n
        for n in names
        if json.loads(read_object(lab, TOPOLOGY.backups.records_bucket, n))["outcome"] == "failed"
    ]
    [name] = failed
    return name


def test_a_newer_base_backup_starts_a_new_chain_after_closing_the_old_one(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    first = run(api, "mongo-capture/lab")
    assert first["state"]["type"] == "COMPLETED", first["state"]
    old = capture_state(fresh_lab)
    backed_up = run(api, "backup/lab", sources=["mongodb"], retention=False)
    assert backed_up["state"]["type"] == "COMPLETED", backed_up["state"]
    [newer] = [n for n in base_manifests(fresh_lab) if old.base_backup_id not in n]
    base_end = read_manifest(fresh_lab, newer).consistent_at
    assert base_end is not None

    second = run(api, "mongo-capture/lab")
    assert second["state"]["type"] == "COMPLETED", second["state"]
    state = capture_state(fresh_lab)
    assert state.base_backup_id != old.base_backup_id and state.seq == 1
    # The old chain got a last slice reaching past the new base's end: no moment between
    # the two is in neither chain.
    closing = json.loads(
        read_object(fresh_lab, BACKUPS, f"mongodb-oplog/{old.base_backup_id}/000002/manifest.json")
    )
    assert datetime.fromisoformat(closing["oplog"]["until"]) >= base_end


def test_a_base_backup_whose_copy_fails_still_starts_the_chain(
    fresh_lab: Lab, api: PrefectApi
) -> None:
    europe = next(c.bucket for c in TOPOLOGY.backups.copies if c.location == "europe-west1")
    fresh_lab.storage_rewrites(corrupt={europe: 1})  # the base's archive lands damaged there

    first = run(api, "mongo-capture/lab")

    assert first["state"]["type"] == "COMPLETED", first["state"]
    assert capture_state(fresh_lab).seq == 1
    [name] = base_manifests(fresh_lab)
    base = read_manifest(fresh_lab, name)
    assert base.verified and base.consistent_at is not None
    assert not base.copies[europe].verified  # reported by the backup run, which notified
    assert fresh_lab.webhooks()


def test_the_capture_runs_every_four_minutes_one_at_a_time(lab: Lab, api: PrefectApi) -> None:
    deployment = api.http.get("/deployments/name/mongo-capture/lab").json()
    # 4 min + a slice's shipping stays under seed 004's 5-minute RPO; 5 min did not.
    assert [s["schedule"]["interval"] for s in deployment["schedules"]] == [240.0]
    # A second run while one captures would only be cancelled: the state's precondition
    # already keeps two from both extending the chain.
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
