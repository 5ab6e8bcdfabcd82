"""`lifeboat discover --env lab` against the running lab: it reads back the topology the
lab was seeded from, `lifeboat validate` accepts what it prints, and it writes nothing.
A failed list is an error naming the call, never a partial file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.labharness import Lab, lifeboat

PRIMARY_PROJECT, SECONDARY_PROJECT = "ml-datadriven-recos", "ml-datadriven-recos-dr"
GOOGLE_APIS = {"dns", "run", "sql", "compute", "storage", "secretmanager"}


def discover(*extra: str) -> Any:
    return lifeboat(
        "discover",
        "--primary-project",
        PRIMARY_PROJECT,
        "--secondary-project",
        SECONDARY_PROJECT,
        "--env",
        "lab",
        *extra,
        timeout=120,
    )


def substance(data: dict[str, Any]) -> dict[str, Any]:
    """What discovery must read back: names, places, scaling, records, relationships."""
    sql = data["cloud_sql"]
    return {
        "regions": {r: data["regions"][r] for r in ("primary", "secondary")},
        "services": {
            s["name"]: (s["image"], s["active_scaling"], s["standby_scaling"])
            for s in data["services"]
        },
        "dns": (
            data["dns"]["project"],
            data["dns"]["zone"],
            data["dns"]["dns_name"],
            [(r["name"], r["type"], r["ttl"], r["rrdatas"]) for r in data["dns"]["records"]],
        ),
        "cloud_sql": (sql["primary"], sql["replica"], sql["databases"], sql["app_secret"]),
        "cdn": (data["cdn"]["project"], data["cdn"]["url_map"], data["cdn"]["host"]),
        "backups": (data["backups"]["bucket"], data["backups"]["records_bucket"]),
    }


def _calls(lab: Lab, since: int) -> list[dict[str, Any]]:
    return [e for e in lab.requests(since=since) if e["api"] in GOOGLE_APIS]


def test_discover_reads_the_lab_into_its_own_topology_and_writes_nothing(
    fresh_lab: Lab, tmp_path: Path
) -> None:
    since = fresh_lab.last_seq()
    result = discover()
    assert result.returncode == 0, result.stderr
    discovered = yaml.safe_load(result.stdout)
    seeded = yaml.safe_load((fresh_lab.root / "environments" / "lab.yaml").read_text())
    assert substance(discovered) == substance(seeded)
    # What it could not read, it says it guessed.
    for guessed in ("primary region us-central1", "geo routing set geo.api.varai.ai.", "tier"):
        assert any(
            line.startswith("# GUESS:") and guessed in line for line in result.stdout.splitlines()
        ), guessed

    # Only reads: every call a GET, none a write, and every list followed past page 1.
    calls = _calls(fresh_lab, since)
    assert {e["api"] for e in calls} == {"dns", "run", "sql", "compute", "storage"}
    assert {e["method"] for e in calls} == {"GET"} and not any(e["write"] for e in calls)
    for api, path in (("run", "/locations/us-east1/services"), ("dns", "/rrsets")):
        pages = [e for e in calls if e["api"] == api and e["path"].endswith(path)]
        assert len(pages) >= 2 and any("pageToken" in e["query"] for e in pages), (api, pages)

    # `lifeboat validate` takes the printed file as it is.
    (tmp_path / "found.yaml").write_text(result.stdout)
    env = {**os.environ, "LIFEBOAT_ENVIRONMENTS_DIR": str(tmp_path)}
    validated = lifeboat("validate", "--env", "found", env=env)
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.strip() == "found: valid (4 services)"


def test_empty_projects_are_an_error_naming_everything_missing(lab: Lab) -> None:
    result = lifeboat(
        "discover",
        "--primary-project",
        "empty-project-one",
        "--secondary-project",
        "empty-project-two",
        "--env",
        "lab",
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    where = "empty-project-one or empty-project-two"
    for missing in (
        f"no Cloud SQL instance in {where}",
        f"no url-map in {where}",
        f"no bucket in {where}",
        f"any DNS managed zone not found in project {where}",
    ):
        assert missing in result.stderr, result.stderr


def test_a_missing_zone_is_named(lab: Lab) -> None:
    result = discover("--zone", "no-such-zone")
    assert result.returncode == 2 and result.stdout == ""
    assert (
        f"DNS zone 'no-such-zone' not found in project {PRIMARY_PROJECT} or {SECONDARY_PROJECT}"
        in result.stderr
    )


def test_a_refused_list_is_reported_not_printed_as_a_partial_file(fresh_lab: Lab) -> None:
    # The primary region's services list fine; the secondary's are refused.
    fresh_lab.fault(api="run", method="GET", path="/locations/us-east1/services$", status=403)
    since = fresh_lab.last_seq()
    try:
        result = discover()
    finally:
        fresh_lab.clear_faults()
    assert result.returncode == 2 and result.stdout == ""
    assert (
        f"list Cloud Run services failed on projects/{SECONDARY_PROJECT}/locations/us-east1: 403"
        in result.stderr
    ), result.stderr
    refused = [e for e in _calls(fresh_lab, since) if e["path"].endswith("us-east1/services")]
    assert len(refused) == 1  # a 403 is not retried


def test_a_server_error_is_retried_then_reported(fresh_lab: Lab) -> None:
    fresh_lab.fault(api="sql", method="GET", path="/instances$", status=500, count=1)
    try:
        recovered = discover()
        assert recovered.returncode == 0, recovered.stderr
        fresh_lab.fault(api="dns", method="GET", path="/rrsets$", status=500)
        since = fresh_lab.last_seq()
        failed = discover()
    finally:
        fresh_lab.clear_faults()
    assert failed.returncode == 2 and failed.stdout == ""
    assert "list DNS record sets failed on" in failed.stderr and "500" in failed.stderr
    tries = [e for e in _calls(fresh_lab, since) if e["path"].endswith("/rrsets")]
    assert len(tries) == 3, tries


def test_without_a_geo_set_the_record_is_printed_for_the_operator_to_complete(
    fresh_lab: Lab,
) -> None:
    # Only the geo set says which addresses are the secondary region's: take it away.
    zone = f"{fresh_lab.endpoints['dns']}/dns/v1/projects/{PRIMARY_PROJECT}/managedZones"
    httpx.delete(f"{zone}/varai-ai-zone/rrsets/geo.api.varai.ai./A", timeout=10).raise_for_status()
    result = discover()
    assert result.returncode == 3, result.stderr  # printed, but not valid yet
    record = yaml.safe_load(result.stdout)["dns"]["records"][0]
    assert record["rrdatas"] == {"primary": ["34.120.10.10"], "secondary": []}
    assert "# GUESS: api.varai.ai. A: no geo routing set names us-east1's addresses" in (
        result.stdout
    )
    assert "the file needs editing before it validates: dns.records.0.rrdatas" in result.stderr
