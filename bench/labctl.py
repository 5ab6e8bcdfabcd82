"""Start and stop a bench lab with its Prefect server, and run a deployment through it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from lab.control.client import LabControl
from lab.prefect_api import PrefectApi
from lab.prefect_stack import client_env
from lifeboat.topology import ENVIRONMENTS_DIR_ENV

REPO = Path(__file__).resolve().parent.parent
BASE_PORT = int(os.environ.get("LIFEBOAT_BENCH_PORT", "21780"))
PG_PREFIX = os.environ.get("LIFEBOAT_BENCH_PG_PREFIX", "127.0.21.")
TIME_SCALE = float(os.environ.get("LIFEBOAT_BENCH_TIME_SCALE", "0.1"))


class BenchLab(LabControl):
    """A bench's lab: its folder, endpoints, Prefect API and control API (``LabControl``)."""

    def __init__(self, root: Path, endpoints: dict[str, Any], api: PrefectApi) -> None:
        super().__init__(str(endpoints["control"]))
        self.root = root
        self.endpoints = endpoints
        self.api = api

    def run(
        self, deployment: str, parameters: dict[str, Any], timeout: float = 900
    ) -> dict[str, Any]:
        """Launch through the server, wait for the end; adds the run's wall seconds."""
        run = self.api.launch(deployment, parameters)
        final = self.api.wait(run["id"], timeout=timeout)
        start, end = final.get("start_time"), final.get("end_time")
        if start and end:
            final["wall_s"] = seconds_between(start, end)
        return final


def seconds_between(start: str, end: str) -> float:
    """Seconds from one of the server's ISO timestamps to another."""
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _lifeboat(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lifeboat"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@contextmanager
def bench_lab(
    topology: Path | None = None,
    prefect_db: str = "postgresql",
    time_scale: float = TIME_SCALE,
    base_port: int = BASE_PORT,
    pg_prefix: str = PG_PREFIX,
) -> Iterator[BenchLab]:
    """A lab of its own (own ports), with Prefect; stopped whatever happens."""
    root = Path(tempfile.mkdtemp(prefix="lifeboat-bench-"))
    env = dict(os.environ)
    env["LIFEBOAT_LAB_PREFECT_DB"] = prefect_db
    args = ["lab", "up", "--dir", str(root), "--base-port", str(base_port)]
    args += ["--pg-address-prefix", pg_prefix, "--time-scale", str(time_scale)]
    if topology is not None:
        env[ENVIRONMENTS_DIR_ENV] = str(topology.parent)
        args += ["--topology", str(topology)]
    saved = dict(os.environ)
    try:
        done = _lifeboat(*args, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"lab up failed: {done.stdout}\n{done.stderr}")
        endpoints = json.loads((root / "endpoints.json").read_text())
        os.environ.update(client_env(endpoints["prefect_api_url"], None, root))
        if topology is not None:
            os.environ[ENVIRONMENTS_DIR_ENV] = str(topology.parent)
        api = PrefectApi(endpoints["prefect_api_url"])
        api.pause_schedules()
        yield BenchLab(root, endpoints, api)
    finally:
        down = _lifeboat("lab", "down", "--dir", str(root), env=env)
        os.environ.clear()
        os.environ.update(saved)
        # Its databases and buckets can hold gigabytes (the backup bench); a lab that
        # would not stop is kept, with its logs, for a look.
        if down.returncode == 0:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"# lab down failed, kept {root}: {down.stderr.strip()[-300:]}", flush=True)


def records_bucket() -> Any:
    """The lab's run-records bucket, through the product's own Storage client (the bench
    process has prepared its environment: ``bench_lab``)."""
    from lifeboat import runtime

    topo = runtime.topology("lab")
    storage = runtime.clients("lab").storage(topo.regions.primary.project)
    return storage.bucket(topo.backups.records_bucket)


def figure(name: str, value: float | int | str) -> None:
    """One figure, as `name=value`, flushed at once so a long run shows progress."""
    shown = f"{value:.3f}" if isinstance(value, float) else str(value)
    print(f"{name}={shown}", flush=True)
