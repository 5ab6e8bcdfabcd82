"""watch + the automation: an error storm fires exactly one automatic rollback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from lab.prefect_api import PrefectApi, iso_ago
from tests.flows.lab_checks import PRIMARY, TOPOLOGY, run_records
from tests.flows.rollback_helpers import deploy_new_revision, run_patches, serving
from tests.labharness import Lab
from tests.polling import wait_for

REGION_APP = f"region-app/{PRIMARY.name}"


class Storm:
    """Users hitting one path through the front door until stopped."""

    def __init__(self, lab: Lab, path: str = "/auth/status"):
        self.url = f"{lab.endpoints['front_door']}{path}"
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(headers={"host": TOPOLOGY.health.host}, timeout=5) as client:
            while not self.stop.is_set():
                client.get(self.url)
                self.sent += 1
                self.stop.wait(0.02)

    def __enter__(self) -> Storm:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def automatic_runs(api: PrefectApi, since: str) -> list[dict[str, Any]]:
    response = api.http.post(
        "/flow_runs/filter",
        json={
            "flow_runs": {"expected_start_time": {"after_": since}},
            "deployments": {"id": {"any_": [api.deployment_id("rollback/lab")]}},
            "limit": 50,
        },
    )
    response.raise_for_status()
    return [r for r in response.json() if (r.get("parameters") or {}).get("automatic")]


def test_watch_is_quiet_when_services_are_healthy(fresh_lab: Lab, api: PrefectApi) -> None:
    run = api.launch("watch/lab", {})
    final = api.wait(run["id"])
    assert final["state"]["type"] == "COMPLETED"
    wait_for(
        lambda: any("within thresholds" in line for line in api.logs(run["id"])),
        timeout=30,
        what="log line",
    )
    assert run_records(fresh_lab, "watch", run["id"]) == []  # a quiet sample leaves no record


def test_error_storm_fires_exactly_one_automatic_rollback(fresh_lab: Lab, api: PrefectApi) -> None:
    automations = api.http.post("/automations/filter", json={}).json()
    assert any(a["name"] == "lifeboat-auto-rollback-lab" for a in automations)
    old, new = deploy_new_revision(fresh_lab, "auth-service")
    since_iso = iso_ago(5)
    since = fresh_lab.last_seq()

    with Storm(fresh_lab) as storm:
        fresh_lab.fault(api=REGION_APP, method="GET", path="^/auth/status$", status=500)
        wait_for(lambda: storm.sent >= 30, timeout=30, what="storm traffic")
        watches = []
        for _ in range(2):  # two samples in a row, both over the thresholds
            run = api.launch("watch/lab", {})
            final = api.wait(run["id"])
            assert final["state"]["type"] == "COMPLETED", final["state"]
            watches.append(final)
        metrics = httpx.get(
            f"{fresh_lab.control}/_lab/metrics", params={"window_s": 600}, timeout=5
        ).json()
        assert metrics["services"]["auth-service"]["errors"] > 0
    fresh_lab.clear_faults()
    for final in watches:
        wait_for(
            lambda run_id=final["id"]: (
                "auth-service error_rate" in " ".join(api.logs(run_id))
                and "health_check_failures" in " ".join(api.logs(run_id))
            ),
            timeout=30,
            what="threshold log line",
        )

    fired = wait_for(
        lambda: automatic_runs(api, since_iso), timeout=120, what="automatic rollback run"
    )
    done = api.wait(fired[0]["id"])
    assert done["state"]["type"] == "COMPLETED", done["state"]
    assert fired[0]["parameters"]["services"] == ["auth-service"]
    assert fired[0]["parameters"]["operator"] == "lifeboat-watch"

    # A second automatic launch inside the minimum delay stands down and changes nothing.
    patches_before = run_patches(fresh_lab, since)
    second = api.launch(
        "rollback/lab",
        {
            "reason": "automatic: another threshold",
            "services": ["auth-service"],
            "automatic": True,
            "operator": "lifeboat-watch",
        },
    )
    refused = api.wait(second["id"])
    assert refused["state"]["type"] == "COMPLETED"
    assert refused["state"]["name"] == "Cooldown"
    assert run_patches(fresh_lab, since) == patches_before

    # Exactly one automatic rollback happened: one run from the automation, one PATCH.
    from_automation = [r for r in automatic_runs(api, since_iso) if r["id"] != second["id"]]
    assert len(from_automation) == 1
    assert len(run_patches(fresh_lab, since, "auth-service")) == 1
    assert serving(fresh_lab, "auth-service") == {old: 100}
    assert new not in serving(fresh_lab, "auth-service")
    bucket = fresh_lab.clients().storage(PRIMARY.project).bucket(TOPOLOGY.backups.records_bucket)
    records = [json.loads(b.download_as_bytes()) for b in bucket.list_blobs(prefix="rollbacks/")]
    outcomes = sorted((r["mode"], r["outcome"]) for r in records)
    assert outcomes == [("automatic", "completed"), ("automatic", "refused")]


@contextmanager
def automation_disabled(api: PrefectApi, name: str) -> Iterator[None]:
    """The automation off, so an event can be checked without starting a rollback."""
    [automation] = [
        a for a in api.http.post("/automations/filter", json={}).json() if a["name"] == name
    ]
    api.http.patch(f"/automations/{automation['id']}", json={"enabled": False}).raise_for_status()
    try:
        yield
    finally:
        api.http.patch(
            f"/automations/{automation['id']}", json={"enabled": True}
        ).raise_for_status()


def test_slow_replies_alone_cross_the_p95_threshold(fresh_lab: Lab, api: PrefectApi) -> None:
    # 0.08 wall seconds is 8 s of lab time at the suite's time_scale: over seed 004's 5 s,
    # with no error and no failed health check to cross another threshold.
    since = iso_ago(5)
    with (
        automation_disabled(api, "lifeboat-auto-rollback-lab"),
        Storm(fresh_lab, "/ai/status") as storm,
    ):
        fresh_lab.fault(api=REGION_APP, method="GET", path="^/ai/status$", latency_s=0.08)
        wait_for(lambda: storm.sent >= 30, timeout=30, what="slow traffic")
        final = api.wait(api.launch("watch/lab", {})["id"])
        fresh_lab.clear_faults()
        assert final["state"]["type"] == "COMPLETED", final["state"]
        [event] = api.wait_event("lifeboat.watch.threshold-crossed", since)
    [breach] = event["payload"]["breaches"]
    assert (breach["service"], breach["metric"], breach["threshold"]) == (
        "ai-service",
        "p95_latency_s",
        TOPOLOGY.rollback_triggers.p95_latency_s,
    )
    assert breach["value"] > TOPOLOGY.rollback_triggers.p95_latency_s
    assert event["payload"]["services"] == ["ai-service"]
    # The sample that crossed a threshold is on record: the rollback's evidence.
    [record] = run_records(fresh_lab, "watch", final["id"])
    assert record["outcome"] == "completed"
    assert record["after"]["breaches"] == event["payload"]["breaches"]
