"""Readiness's region-independence decisions (issue 16 §4): pure, no lab."""

from __future__ import annotations

from lifeboat.independence import bucket_independence, secret_independence, worker_independence

PRIMARY, SECONDARY = "us-central1", "us-east1"


def test_a_bucket_only_in_the_primary_region_is_red_naming_it() -> None:
    ok, why = bucket_independence("varai-dr-records", "US-CENTRAL1", "region", PRIMARY)
    assert not ok
    assert "gs://varai-dr-records" in why and "only in the primary region" in why


def test_multi_and_dual_region_buckets_and_other_regions_are_green() -> None:
    assert bucket_independence("b", "US", "multi-region", PRIMARY)[0]
    assert bucket_independence("b", "NAM4", "dual-region", PRIMARY)[0]
    assert bucket_independence("b", "US-EAST1", "region", PRIMARY)[0]


def test_a_secret_must_have_a_replica_in_the_secondary_region() -> None:
    assert secret_independence("s", None, PRIMARY, SECONDARY)[0]  # automatic
    assert secret_independence("s", [PRIMARY, SECONDARY], PRIMARY, SECONDARY)[0]
    ok, why = secret_independence("s", [PRIMARY], PRIMARY, SECONDARY)
    assert not ok and "every replica is in the primary region" in why
    ok, why = secret_independence("s", [PRIMARY, "europe-west1"], PRIMARY, SECONDARY)
    assert not ok and "no replica there" in why and SECONDARY in why


def test_the_worker_must_be_declared_and_outside_the_primary_region() -> None:
    ok, why = worker_independence(None, PRIMARY)
    assert not ok and "workers.location" in why
    ok, why = worker_independence("US-CENTRAL1", PRIMARY)
    assert not ok and "the primary region" in why
    assert worker_independence(SECONDARY, PRIMARY)[0]
    assert worker_independence("on-prem", PRIMARY)[0]
