"""gcloud compute, Google's own CLI, against the lab's Compute: the CDN purge of seeds 000
and 004. gcloud sends compute mutations through the batch endpoint
``POST /batch/compute/v1``. Only the compute API is overridden, so nothing reaches Google.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.compute import ComputeBackend, create
from lab.core.context import LabContext
from lab.core.faults import FaultRule
from tests.contract.gcloud_cli import GCLOUD, SKIP_REASON, Gcloud
from tests.discovery import assert_valid

PROJECT = "ml-datadriven-recos"
URL_MAP = "varai-cdn-lb"
HOST = "api.varai.ai"
GLOBAL = f"/compute/v1/projects/{PROJECT}/global"

pytestmark = pytest.mark.skipif(GCLOUD is None, reason=SKIP_REASON)


@pytest.fixture
def cdn(
    lab_ctx: LabContext, serve: Callable[..., str], tmp_path: Path
) -> tuple[ComputeBackend, Gcloud]:
    # 1 real second = 10 ms: the purge's operation stays RUNNING for about 6 s.
    lab_ctx.latency.configure(time_scale=0.01)
    backend, app = create(lab_ctx)
    backend.create_url_map(PROJECT, URL_MAP, [HOST])
    return backend, Gcloud(tmp_path / "gcloud", {"compute": serve(app, "compute")}, PROJECT)


def calls(ctx: LabContext, since: int, count: int) -> list[tuple[str, str, int, bool]]:
    deadline = time.monotonic() + 5
    while len(entries := ctx.requests.entries(api="compute", since=since)) < count:
        assert time.monotonic() < deadline, entries
        time.sleep(0.01)
    return [(e.method, e.path, e.status, e.injected) for e in entries]


def invalidate(gcloud: Gcloud, url_map: str = URL_MAP) -> object:
    return gcloud.run(
        "compute", "url-maps", "invalidate-cdn-cache", url_map,
        "--path", "/*", "--async", "--format=json",
    )  # fmt: skip


def test_gcloud_purges_the_cdn_then_describes_its_operation(
    lab_ctx: LabContext, cdn: tuple[ComputeBackend, Gcloud]
) -> None:
    backend, gcloud = cdn
    since = lab_ctx.requests.last_seq
    purge = invalidate(gcloud)
    assert purge.returncode == 0, purge.stderr  # type: ignore[attr-defined]
    [operation] = json.loads(purge.stdout)  # type: ignore[attr-defined]
    assert_valid("compute.v1", "Operation", operation)
    assert operation["status"] == "RUNNING"  # --async: gcloud does not wait
    assert operation["operationType"] == "invalidateCache"
    [record] = backend.invalidations()
    assert (record["url_map"], record["host"], record["path"]) == (URL_MAP, None, "/*")
    assert record["operation"] == operation["name"]
    assert calls(lab_ctx, since, 2) == [
        ("POST", f"{GLOBAL}/urlMaps/{URL_MAP}/invalidateCache", 200, False),
        ("POST", "/batch/compute/v1", 200, False),
    ]

    deadline = time.monotonic() + 30
    while backend.get_operation(PROJECT, operation["name"])["status"] != "DONE":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    since = lab_ctx.requests.last_seq
    described = gcloud.run(
        "compute", "operations", "describe", operation["name"], "--global", "--format=json"
    )
    assert described.returncode == 0, described.stderr
    done = json.loads(described.stdout)
    assert_valid("compute.v1", "Operation", done)
    assert done["name"] == operation["name"] and done["status"] == "DONE"
    assert "endTime" in done and "httpErrorStatusCode" not in done
    assert ("GET", f"{GLOBAL}/operations/{operation['name']}", 200, False) in calls(
        lab_ctx, since, 1
    )


def test_gcloud_purge_errors_change_nothing(
    lab_ctx: LabContext, cdn: tuple[ComputeBackend, Gcloud]
) -> None:
    backend, gcloud = cdn
    missing = invalidate(gcloud, "no-such-map")
    assert missing.returncode != 0  # type: ignore[attr-defined]
    assert "no-such-map" in missing.stderr and "not found" in missing.stderr.lower()  # type: ignore[attr-defined]

    # A failed call inside a batch: its part carries the error, the batch itself is 200.
    lab_ctx.faults.add(FaultRule(api="compute", path="invalidateCache", status=503, count=1))
    since = lab_ctx.requests.last_seq
    failed = invalidate(gcloud)
    assert failed.returncode != 0  # type: ignore[attr-defined]
    assert "injected fault" in failed.stderr  # type: ignore[attr-defined]
    assert backend.invalidations() == []
    assert calls(lab_ctx, since, 2) == [
        ("POST", f"{GLOBAL}/urlMaps/{URL_MAP}/invalidateCache", 503, True),
        ("POST", "/batch/compute/v1", 200, False),
    ]

    unknown = gcloud.run("compute", "operations", "describe", "operation-404", "--global")
    assert unknown.returncode != 0 and "operation-404" in unknown.stderr


def test_gcloud_retries_a_throttled_purge_once_more(
    lab_ctx: LabContext, cdn: tuple[ComputeBackend, Gcloud]
) -> None:
    """Compute throttles with 403 rateLimitExceeded. gcloud's batch helper retries a 403
    part (it may mean "API not enabled") after 5 s, so the purge is made exactly once."""
    backend, gcloud = cdn
    lab_ctx.faults.add(
        FaultRule(
            api="compute", path="invalidateCache", status=403, reason="rateLimitExceeded", count=1
        )
    )
    since = lab_ctx.requests.last_seq
    purge = invalidate(gcloud)
    assert purge.returncode == 0, purge.stderr  # type: ignore[attr-defined]
    assert len(backend.invalidations()) == 1
    assert calls(lab_ctx, since, 4) == [
        ("POST", f"{GLOBAL}/urlMaps/{URL_MAP}/invalidateCache", 403, True),
        ("POST", "/batch/compute/v1", 200, False),
        ("POST", f"{GLOBAL}/urlMaps/{URL_MAP}/invalidateCache", 200, False),
        ("POST", "/batch/compute/v1", 200, False),
    ]
