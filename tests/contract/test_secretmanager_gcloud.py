"""gcloud secrets, Google's own CLI, against the lab's Secret Manager: seed 004's promote
step (``echo "$new_db_url" | gcloud secrets versions add prod-database-url
--data-file=-``) and its ``get_secret`` (``gcloud secrets versions access latest``).
Only the secretmanager API is overridden, so nothing reaches Google.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.core.context import LabContext
from lab.secretmanager import SecretManagerBackend, create
from tests.contract.gcloud_cli import GCLOUD, SKIP_REASON, Gcloud

PROJECT = "ml-datadriven-recos-dr"
SECRET = "prod-database-url"
OLD_URL = "postgresql://varai_user:old@10.10.0.3:5432/varai_prod"
NEW_URL = "postgresql://varai_user:new@10.20.0.3:5432/varai_prod"

pytestmark = pytest.mark.skipif(GCLOUD is None, reason=SKIP_REASON)


@pytest.fixture
def secrets(
    lab_ctx: LabContext, serve: Callable[..., str], tmp_path: Path
) -> tuple[SecretManagerBackend, Gcloud]:
    backend, app = create(lab_ctx)
    backend.seed_secret(PROJECT, SECRET, OLD_URL, ["us-central1", "us-east1"])
    url = serve(app, "secretmanager")
    return backend, Gcloud(tmp_path / "gcloud", {"secretmanager": url}, PROJECT)


def calls(ctx: LabContext, since: int, count: int) -> list[tuple[str, str, int]]:
    deadline = time.monotonic() + 5
    while len(entries := ctx.requests.entries(api="secretmanager", since=since)) < count:
        assert time.monotonic() < deadline, entries
        time.sleep(0.01)
    return [(e.method, e.path, e.status) for e in entries]


def stored(backend: SecretManagerBackend, version: str) -> bytes:
    reply = backend.access_version(PROJECT, SECRET, version)
    return base64.b64decode(reply["payload"]["data"])


def test_gcloud_adds_a_version_from_stdin_and_reads_the_latest(
    lab_ctx: LabContext, secrets: tuple[SecretManagerBackend, Gcloud]
) -> None:
    backend, gcloud = secrets
    base = f"/v1/projects/{PROJECT}/secrets/{SECRET}"
    since = lab_ctx.requests.last_seq
    # As the seed does it: echo's newline is part of the payload, on Google too.
    added = gcloud.run("secrets", "versions", "add", SECRET, "--data-file=-", stdin=NEW_URL + "\n")
    assert added.returncode == 0, added.stderr
    assert "Created version [2]" in added.stderr
    assert stored(backend, "2") == (NEW_URL + "\n").encode()
    assert stored(backend, "1") == OLD_URL.encode()  # the old version stays
    assert NEW_URL not in added.stdout + added.stderr  # gcloud never echoes the value

    accessed = gcloud.run("secrets", "versions", "access", "latest", f"--secret={SECRET}")
    assert accessed.returncode == 0, accessed.stderr
    assert accessed.stdout == NEW_URL + "\n"
    assert calls(lab_ctx, since, 2) == [
        ("POST", f"{base}:addVersion", 200),
        ("GET", f"{base}/versions/latest:access", 200),
    ]


def test_gcloud_secret_errors_change_nothing(
    lab_ctx: LabContext, secrets: tuple[SecretManagerBackend, Gcloud]
) -> None:
    backend, gcloud = secrets
    missing = gcloud.run("secrets", "versions", "add", "nope", "--data-file=-", stdin="x")
    assert missing.returncode != 0 and "NOT_FOUND" in missing.stderr
    unknown = gcloud.run("secrets", "versions", "access", "latest", "--secret=nope")
    assert unknown.returncode != 0 and "NOT_FOUND" in unknown.stderr

    # latest is the newest version whatever its state: a disabled one is refused, and
    # access never falls back to version 1.
    backend.add_version(PROJECT, SECRET, {"payload": {"data": base64.b64encode(b"v2").decode()}})
    backend.change_state(PROJECT, SECRET, "2", "disable", None)
    disabled = gcloud.run("secrets", "versions", "access", "latest", f"--secret={SECRET}")
    assert disabled.returncode != 0 and "FAILED_PRECONDITION" in disabled.stderr
    assert OLD_URL not in disabled.stdout
    listing = backend.list_versions(PROJECT, SECRET, 25, "")
    assert [v["state"] for v in listing["versions"]] == ["DISABLED", "ENABLED"]
