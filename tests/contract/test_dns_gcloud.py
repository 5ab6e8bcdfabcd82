"""gcloud, Google's own CLI and an independent client, against the lab's Cloud DNS.

gcloud's ``dns record-sets describe/update`` use the rrsets resource methods
(``.../rrsets/{name}/{type}``), not changes. The recipe (a private CLOUDSDK_CONFIG, no
credentials, the dns endpoint overridden) is in reference/gcp-clients.md; gcloud is only
ever run for DNS, whose override is set, so it never reaches Google.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.core.context import LabContext
from lab.dns import DnsBackend, create
from tests.discovery import assert_valid

PROJECT = "ml-datadriven-recos"
ZONE = "varai-ai-zone"
API = "api.varai.ai."
GEO = "geo.api.varai.ai."

pytestmark = pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed")


@pytest.fixture
def gcloud(
    lab_ctx: LabContext, serve: Callable[..., str], tmp_path: Path
) -> tuple[DnsBackend, Callable[..., subprocess.CompletedProcess[str]]]:
    backend, app = create(lab_ctx)
    backend.create_zone(PROJECT, ZONE, "varai.ai.", "seeded")
    backend.set_rrset(PROJECT, ZONE, API, "A", 300, ["34.120.10.10"])
    backend.seed_rrset(
        PROJECT,
        ZONE,
        {
            "name": GEO,
            "type": "A",
            "ttl": 300,
            "routingPolicy": {
                "geo": {"items": [{"location": "us-central1", "rrdatas": ["34.120.10.10"]}]}
            },
        },
    )
    base = serve(app, "dns")
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["gcloud", *args], env=env, capture_output=True, text=True, timeout=120
        )

    for key, value in (
        ("auth/disable_credentials", "true"),
        ("api_endpoint_overrides/dns", base + "/"),
        ("component_manager/disable_update_check", "true"),
        ("core/disable_usage_reporting", "true"),
    ):
        assert run("config", "set", key, value).returncode == 0
    return backend, run


def record_sets(verb: str, name: str, *extra: str) -> list[str]:
    return [
        "dns",
        "record-sets",
        verb,
        name,
        "--type=A",
        f"--zone={ZONE}",
        f"--project={PROJECT}",
        "--format=json",
        *extra,
    ]


def test_gcloud_describes_and_updates_record_sets(
    lab_ctx: LabContext,
    gcloud: tuple[DnsBackend, Callable[..., subprocess.CompletedProcess[str]]],
) -> None:
    backend, run = gcloud
    since = lab_ctx.requests.last_seq

    plain = run(*record_sets("describe", API))
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["rrdatas"] == ["34.120.10.10"]

    geo = run(*record_sets("describe", GEO))
    assert geo.returncode == 0, geo.stderr
    policy: dict[str, Any] = json.loads(geo.stdout)["routingPolicy"]
    assert policy["geo"]["items"][0]["location"] == "us-central1"

    updated = run(*record_sets("update", API, "--ttl=60", "--rrdatas=34.140.20.20"))
    assert updated.returncode == 0, updated.stderr
    assert_valid("dns.v1", "ResourceRecordSet", json.loads(updated.stdout))
    deadline = time.monotonic() + 5
    while (backend.get_rrset(PROJECT, ZONE, API, "A") or {}).get("ttl") != 60:
        assert time.monotonic() < deadline, "the update was never served"
        time.sleep(0.01)
    assert backend.get_rrset(PROJECT, ZONE, API, "A")["rrdatas"] == ["34.140.20.20"]  # type: ignore[index]

    missing = run(*record_sets("describe", "nope.varai.ai."))
    assert missing.returncode != 0
    assert "NOT_FOUND" in missing.stderr

    # The log is written just after each reply is sent: wait for the last one.
    deadline = time.monotonic() + 2
    while len(entries := lab_ctx.requests.entries(api="dns", since=since)) < 4:
        assert time.monotonic() < deadline, entries
        time.sleep(0.005)
    calls = [(e.method, e.path.rsplit("/rrsets/", 1)[-1], e.status) for e in entries]
    assert calls == [
        ("GET", f"{API}/A", 200),
        ("GET", f"{GEO}/A", 200),
        ("PATCH", f"{API}/A", 200),
        ("GET", "nope.varai.ai./A", 404),
    ]


def transaction(verb: str, file: Path, *extra: str) -> list[str]:
    return [
        "dns",
        "record-sets",
        "transaction",
        verb,
        f"--zone={ZONE}",
        f"--project={PROJECT}",
        f"--transaction-file={file}",
        *extra,
    ]


def switch(file: Path, old_ip: str = "34.120.10.10") -> list[list[str]]:
    """Seed 004's failover: remove the primary's A record, add the secondary's."""
    record = [f"--name={API}", "--type=A"]
    return [
        transaction("start", file),
        transaction("remove", file, *record, "--ttl=300", old_ip),
        transaction("add", file, *record, "--ttl=60", "34.140.20.20"),
    ]


def test_gcloud_transaction_switches_the_record_and_lists_it(
    lab_ctx: LabContext,
    gcloud: tuple[DnsBackend, Callable[..., subprocess.CompletedProcess[str]]],
    tmp_path: Path,
) -> None:
    backend, run = gcloud
    file = tmp_path / "transaction.yaml"
    for step in switch(file):
        done = run(*step)
        assert done.returncode == 0, done.stderr
    assert backend.get_rrset(PROJECT, ZONE, API, "A")["rrdatas"] == ["34.120.10.10"]  # type: ignore[index]

    since = lab_ctx.requests.last_seq
    executed = run(*transaction("execute", file), "--format=json")
    assert executed.returncode == 0, executed.stderr
    assert_valid("dns.v1", "Change", json.loads(executed.stdout))
    assert not file.exists()  # gcloud removes the file once the change is accepted
    deadline = time.monotonic() + 5
    while (backend.get_rrset(PROJECT, ZONE, API, "A") or {}).get("ttl") != 60:
        assert time.monotonic() < deadline, "the change was never applied"
        time.sleep(0.01)
    assert backend.get_rrset(PROJECT, ZONE, API, "A")["rrdatas"] == ["34.140.20.20"]  # type: ignore[index]
    entries = lab_ctx.requests.entries(api="dns", since=since)
    assert ("POST", 200) in [(e.method, e.status) for e in entries if e.path.endswith("/changes")]

    listed = run("dns", "record-sets", "list", f"--zone={ZONE}", f"--project={PROJECT}",
                 "--format=json")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    sets = {(s["name"], s["type"]): s for s in json.loads(listed.stdout)}
    assert sets[(API, "A")]["rrdatas"] == ["34.140.20.20"] and sets[(API, "A")]["ttl"] == 60
    assert "routingPolicy" in sets[(GEO, "A")]  # a geo set lists through gcloud too
    for item in sets.values():
        assert_valid("dns.v1", "ResourceRecordSet", item)


def test_gcloud_stale_transaction_is_refused_and_changes_nothing(
    lab_ctx: LabContext,
    gcloud: tuple[DnsBackend, Callable[..., subprocess.CompletedProcess[str]]],
    tmp_path: Path,
) -> None:
    backend, run = gcloud
    file = tmp_path / "transaction.yaml"
    for step in switch(file):
        assert run(*step).returncode == 0
    # Someone else changes the record after the transaction was written.
    backend.set_rrset(PROJECT, ZONE, API, "A", 300, ["34.120.99.99"])
    since = lab_ctx.requests.last_seq
    executed = run(*transaction("execute", file))
    assert executed.returncode != 0
    assert "FAILED_PRECONDITION: Precondition not met" in executed.stderr
    assert backend.get_rrset(PROJECT, ZONE, API, "A")["rrdatas"] == ["34.120.99.99"]  # type: ignore[index]
    entries = lab_ctx.requests.entries(api="dns", since=since)
    assert [(e.method, e.status) for e in entries if e.path.endswith("/changes")] == [("POST", 412)]
