"""How discover's reads treat a failing list: transient errors are tried again (a list
is a read), anything else stops the run naming the call; never half a list."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from google.api_core import exceptions as gexc

from lifeboat.discovery import DiscoveryError
from tasks.discovery import TRIES, read, run_service


def _pages(fail_first: int, error: Exception) -> tuple[list[int], Callable[[], Iterator[str]]]:
    calls: list[int] = []

    def listing() -> Iterator[str]:
        calls.append(1)
        yield "page-1-item"
        if len(calls) <= fail_first:
            raise error  # the second page fails
        yield "page-2-item"

    return calls, listing


def test_a_transient_failure_mid_list_reads_the_whole_list_again() -> None:
    calls, listing = _pages(1, gexc.InternalServerError("boom"))
    assert read("list things", "projects/p", listing, pause_s=0) == ["page-1-item", "page-2-item"]
    assert len(calls) == 2


def test_a_persistent_server_error_is_reported_after_the_last_try() -> None:
    calls, listing = _pages(99, gexc.ServiceUnavailable("down"))
    with pytest.raises(DiscoveryError, match=r"discover: list things failed on projects/p: 503"):
        read("list things", "projects/p", listing, pause_s=0)
    assert len(calls) == TRIES


def test_a_refusal_is_reported_at_once() -> None:
    calls, listing = _pages(99, gexc.Forbidden("caller lacks run.services.list"))
    with pytest.raises(DiscoveryError, match=r"403 caller lacks run\.services\.list"):
        read("list things", "projects/p", listing, pause_s=0)
    assert len(calls) == 1


def test_a_run_service_is_kept_with_its_effective_scaling_and_every_secret_it_reads() -> None:
    from google.cloud import run_v2

    svc = run_v2.Service(
        name="projects/p/locations/us-east1/services/orders",
        labels={"tier": "important"},
        scaling=run_v2.ServiceScaling(min_instance_count=2),  # service level wins
        template=run_v2.RevisionTemplate(
            scaling=run_v2.RevisionScaling(min_instance_count=0, max_instance_count=10),
            containers=[
                run_v2.Container(
                    image="gcr.io/p/orders:v2",
                    env=[
                        run_v2.EnvVar(
                            name="DATABASE_URL",
                            value_source=run_v2.EnvVarSource(
                                secret_key_ref=run_v2.SecretKeySelector(
                                    secret="db-url", version="latest"
                                )
                            ),
                        )
                    ],
                )
            ],
            volumes=[
                run_v2.Volume(
                    name="s",
                    secret=run_v2.SecretVolumeSource(
                        secret="projects/dr/secrets/prod-database-url"
                    ),
                )
            ],
        ),
    )
    kept = run_service("p", "us-east1", svc)
    assert (kept.name, kept.image, kept.labels) == (
        "orders",
        "gcr.io/p/orders:v2",
        {"tier": "important"},
    )
    assert (kept.min_instances, kept.max_instances) == (2, 10)
    assert kept.secrets == ["projects/dr/secrets/prod-database-url", "projects/p/secrets/db-url"]
