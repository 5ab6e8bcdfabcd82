"""A running lab for the test session: started once with `lifeboat lab up`, stopped at the end."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import yaml

from lab.control.client import LabControl
from lab.prefect_api import PrefectApi
from lab.prefect_stack import client_env
from lifeboat.clients import ClientFactory
from lifeboat.endpoints import ResolvedEndpoints
from lifeboat.topology import ENVIRONMENTS_DIR, ENVIRONMENTS_DIR_ENV

REPO = Path(__file__).resolve().parent.parent


def _worker_index() -> int:
    """0 for a plain run; n for pytest-xdist's worker gwn, which starts a lab of its own."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def shifted_pg_prefix(base: str, shift: int) -> str:
    """``base`` (a.b.c.) with c moved by ``shift``: each lab's clusters need their own addresses."""
    a, b, c, _ = base.split(".")
    return f"{a}.{b}.{int(c) + shift}."


# A lab takes about 40 ports from its base, so each xdist worker's lab sits 100 further on
# (and test_lifecycle's second lab 1000 on, below Linux's ephemeral range from 32768).
TEST_BASE_PORT = int(os.environ.get("LIFEBOAT_TEST_BASE_PORT", "28780")) + 100 * _worker_index()
TEST_PG_PREFIX = shifted_pg_prefix(
    os.environ.get("LIFEBOAT_TEST_PG_PREFIX", "127.0.20."), _worker_index()
)
TEST_TIME_SCALE = 0.01


def lifeboat(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "commands.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


class Lab(LabControl):
    """A running lab: its folder, its endpoints, and its control API (``LabControl``)."""

    def __init__(self, root: Path, endpoints: dict[str, Any]) -> None:
        super().__init__(str(endpoints["control"]))
        self.root = root
        self.endpoints = endpoints

    @contextmanager
    def topology_edited(self, edit: Callable[[dict[str, Any]], None]) -> Iterator[None]:
        """The lab topology as ``edit`` leaves it, for the flow runs started meanwhile.

        Each flow run is a new process that reads the file when it starts, so the edit
        needs no restart; the original comes back whatever happens.
        """
        path = self.root / "environments" / "lab.yaml"
        original = path.read_text()
        data = yaml.safe_load(original)
        edit(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        try:
            yield
        finally:
            path.write_text(original)

    def clients(self) -> ClientFactory:
        return ClientFactory(
            ResolvedEndpoints.model_validate(
                {k: v for k, v in self.endpoints.items() if k in ResolvedEndpoints.model_fields}
            )
        )


@contextmanager
def one_start_at_a_time(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock while a lab starts. Each xdist worker starts a lab of its own,
    and a start is the heaviest thing the suite does (three PostgreSQL clusters, a Prefect
    server, a worker, deployments): started all at once on 2 cores, they ran past the
    start's timeout (session 10, ``-n 6``). In turn, each start takes its usual time."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start_lab(root: Path, start_lock: Path | None = None) -> Lab:
    """`lab up` on the test ports, with a copy of the lab topology that a test may edit.

    ``start_lock``: a file every worker of the run shares, so labs start one at a time."""
    # Prefect reads its settings once, when first imported: a test module that imports it
    # at collection would leave this process on a throwaway server instead of the lab's.
    if "prefect" in sys.modules:
        raise RuntimeError(
            "prefect was imported before the lab started: import it inside the test instead"
        )
    environments = root / "environments"
    environments.mkdir(parents=True, exist_ok=True)
    shutil.copy(ENVIRONMENTS_DIR / "lab.yaml", environments / "lab.yaml")
    # The worker inherits this, so every flow run reads the lab's copy of the topology.
    os.environ[ENVIRONMENTS_DIR_ENV] = str(environments)
    with one_start_at_a_time(start_lock) if start_lock else nullcontext():
        result = lifeboat(
            "lab",
            "up",
            "--topology",
            str(environments / "lab.yaml"),
            "--dir",
            str(root),
            "--base-port",
            str(TEST_BASE_PORT),
            "--pg-address-prefix",
            TEST_PG_PREFIX,
            "--time-scale",
            str(TEST_TIME_SCALE),
        )
    if result.returncode != 0:
        logs = (
            "\n".join(
                f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (root / "logs").glob("*.log")
            )
            if (root / "logs").is_dir()
            else ""
        )
        raise RuntimeError(f"lab up failed:\n{result.stdout}\n{result.stderr}\n{logs}")
    endpoints = json.loads((root / "endpoints.json").read_text())
    # This process talks to the lab's server like a worker does, never to a throwaway one.
    os.environ.update(client_env(endpoints["prefect_api_url"], None, root))
    os.environ["LIFEBOAT_RETRY_BACKOFF_S"] = "0.05"
    # Schedules stay in the server (tests read them) but never fire during the suite.
    PrefectApi(endpoints["prefect_api_url"]).pause_schedules()
    return Lab(root, endpoints)


def stop_lab(root: Path) -> None:
    lifeboat("lab", "down", "--dir", str(root))
