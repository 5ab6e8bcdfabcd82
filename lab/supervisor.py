"""`lifeboat lab up` / `lifeboat lab down`: start the lab in the background, stop it by pid."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import prefect_stack
from lab.core.serve import ensure_port_free
from lab.core.settings import LabSettings
from lab.sql.pgtools import bindir, server_home
from lab.sql.postgres import PgCluster


class LabError(RuntimeError):
    """A problem starting or stopping the lab, phrased for the operator."""


@dataclass(frozen=True)
class LabOptions:
    root: Path
    topology: Path
    base_port: int = 18780
    time_scale: float = 0.1
    pg_address_prefix: str = "127.0.10."
    pg_port: int = 5432
    with_prefect: bool = True
    auth_string: str | None = None

    def settings(self) -> LabSettings:
        return LabSettings(
            root=self.root,
            base_port=self.base_port,
            time_scale=self.time_scale,
            pg_address_prefix=self.pg_address_prefix,
            pg_port=self.pg_port,
            topology=self.topology,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(root: Path) -> dict[str, Any] | None:
    path = root / "state.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def is_running(root: Path) -> bool:
    state = read_state(root)
    return bool(state) and any(_alive(pid) for pid in state["pids"].values())  # type: ignore[index]


def up(options: LabOptions, say: Any = print) -> dict[str, Any]:
    root = options.root.resolve()
    if is_running(root):
        say(f"The lab is already running (state in {root}).")
        return dict(json.loads((root / "endpoints.json").read_text()))
    started = time.monotonic()
    _check_postgres()
    settings = options.settings().model_copy(update={"root": root})
    _check_ports(settings, options.with_prefect)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    try:
        daemon = _spawn_daemon(options, root)
        pids["lab"] = daemon.pid
        server = None
        if options.with_prefect:
            # The benchmark compares the server on SQLite with it on PostgreSQL.
            sqlite = os.environ.get("LIFEBOAT_LAB_PREFECT_DB") == "sqlite"
            db_url = None if sqlite else _start_prefect_database(settings)
            server = prefect_stack.start_server(
                root, settings.host, settings.port("prefect"), db_url, options.auth_string
            )
            pids["prefect-server"] = server.pid
        endpoints = _wait_daemon(root, daemon)
        if server is not None:
            api_url = f"http://{settings.host}:{settings.port('prefect')}/api"
            prefect_stack.wait_healthy(api_url, server)
            env = prefect_stack.client_env(api_url, options.auth_string, root)
            prefect_stack.apply_configuration(env)
            prefect_stack.save_lab_secrets(env, endpoints)
            run_env = prefect_stack.worker_env(env)
            if prefect_stack.forkserver_enabled():
                pids["prefect-forkserver"] = prefect_stack.start_forkserver(root, run_env).pid
            pids["prefect-worker"] = prefect_stack.start_worker(root, run_env).pid
            endpoints["prefect_api_url"] = api_url
            endpoints["prefect_ui_url"] = api_url.removesuffix("/api")
            if options.auth_string:
                endpoints["prefect_api_auth_string"] = options.auth_string
    except Exception:
        _write_state(root, pids)
        down(root, say=lambda *_: None)
        raise
    _write_state(root, pids)
    (root / "endpoints.json").write_text(json.dumps(endpoints, indent=2))
    say(f"Lab up in {time.monotonic() - started:.1f} s; endpoints in {root / 'endpoints.json'}")
    if "prefect_ui_url" in endpoints:
        say(f"Prefect UI: {endpoints['prefect_ui_url']}")
    return endpoints


def _check_postgres() -> None:
    missing = [
        t for t in ("initdb", "pg_ctl", "pg_basebackup", "pg_dump") if not (bindir() / t).exists()
    ]
    if missing:
        raise LabError(
            f"PostgreSQL server binaries missing in {bindir()}: {', '.join(missing)}; "
            "run `make setup` (it installs them with apt) or install PostgreSQL 15"
        )


def stop_leftover_clusters(root: Path) -> None:
    """Stop any PostgreSQL cluster still running from this lab folder (crash leftovers)."""
    # Clusters may live in a private folder linked from the root, so follow links.
    for folder, _, files in os.walk(root, followlinks=True):
        if "postmaster.pid" in files:
            # Resolved: the postgres user may not pass through the root's own folder.
            PgCluster(Path(folder).resolve().parent, "", 0).stop()


def _check_ports(settings: LabSettings, with_prefect: bool) -> None:
    names = [
        "control",
        "dns",
        "run",
        "sql",
        "compute",
        "storage",
        "front_door",
        "mongodb",
        "secretmanager",
        "monitoring",
    ]
    if with_prefect:
        names.append("prefect")
    try:
        for name in names:
            ensure_port_free(settings.host, settings.port(name), name)
        for index in range(2):
            ensure_port_free(settings.host, settings.region_app_port(index), "region app")
        if with_prefect:
            ensure_port_free(
                f"{settings.pg_address_prefix}1", settings.pg_port, "the Prefect database"
            )
    except RuntimeError as exc:
        raise LabError(f"{exc}; stop what holds it or choose another --base-port") from exc


def _spawn_daemon(options: LabOptions, root: Path) -> subprocess.Popen[bytes]:
    (root / "daemon.json").unlink(missing_ok=True)
    log = (root / "logs" / "lab.log").open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.daemon",
            "--root",
            str(root),
            "--topology",
            str(options.topology.resolve()),
            "--base-port",
            str(options.base_port),
            "--time-scale",
            str(options.time_scale),
            "--pg-address-prefix",
            options.pg_address_prefix,
            "--pg-port",
            str(options.pg_port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_daemon(
    root: Path, daemon: subprocess.Popen[bytes], timeout: float = 180
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    ready = root / "daemon.json"
    while time.monotonic() < deadline:
        if ready.is_file():
            data: dict[str, Any] = json.loads(ready.read_text())
            return data
        if daemon.poll() is not None:
            tail = (root / "logs" / "lab.log").read_text().splitlines()[-15:]
            raise LabError("the lab process exited at start:\n" + "\n".join(tail))
        time.sleep(0.1)
    raise LabError(f"the lab did not become ready in {timeout} s; see {root / 'logs' / 'lab.log'}")


def _start_prefect_database(settings: LabSettings) -> str:
    """A PostgreSQL cluster for the Prefect server: SQLite can lock when a pause resumes."""
    address = f"{settings.pg_address_prefix}1"
    home, private = server_home(settings.root / "pg")
    if private:  # keep a link under the lab root so `down` finds the cluster
        (settings.root / "pg").rmdir()
        (settings.root / "pg").symlink_to(home)
    cluster = PgCluster(home / "prefect-db", address, settings.pg_port)
    cluster.remove()  # every `lab up` starts from the seeded state, Prefect's history too
    cluster.init()
    cluster.start()
    cluster.create_database("prefect")
    return f"postgresql+asyncpg://postgres@{address}:{settings.pg_port}/prefect"


def _write_state(root: Path, pids: dict[str, int]) -> None:
    (root / "state.json").write_text(json.dumps({"pids": pids}, indent=2))


def down(root: Path, say: Any = print) -> None:
    root = root.resolve()
    state = read_state(root)
    if state is None:
        say("The lab is not running.")
        stop_leftover_clusters(root)
        return
    pids: dict[str, int] = state["pids"]
    # The worker first, so it does not start runs while the rest goes away.
    for name in ("prefect-worker", "prefect-forkserver", "prefect-server", "lab"):
        pid = pids.get(name)
        if pid and _alive(pid):
            _terminate_group(pid)
    stop_leftover_clusters(root)
    _remove_private_pg_home(root)
    for name in ("state.json", "endpoints.json", "daemon.json"):
        (root / name).unlink(missing_ok=True)
    say("Lab down.")


def _remove_private_pg_home(root: Path) -> None:
    """The Prefect database may live in a private /tmp folder linked as <root>/pg."""
    link = root / "pg"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
        link.unlink()


def _terminate_group(pid: int, timeout: float = 20.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        # Reap our own child if it is one, so it does not linger as a zombie.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
