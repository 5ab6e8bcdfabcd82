"""The lab's Prefect server and process worker, with every deployment applied."""

from __future__ import annotations

import base64
import json
import os
import secrets as tokens
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from lab.fork_launcher import SOCKET_ENV
from lab.prefect_api import PrefectApi

# The repository the lab serves deployments from (lab/ sits at its top).
REPO_ROOT = Path(__file__).resolve().parents[1]
WORK_POOL = "lifeboat-lab"
REGION_SWITCH_LIMIT = "dr-region-switch-lab"
PREFECT_YAML = REPO_ROOT / "deployments" / "prefect.yaml"
# The longest a task run's state takes to reach the server's database (start_server).
TASK_RUN_FLUSH_S = 1.0
# Set to 0 to start every flow run cold, as `python -m prefect.engine` (lab/forkserver.py).
FORKSERVER_ENV = "LIFEBOAT_LAB_FORKSERVER"


def forkserver_enabled() -> bool:
    return os.environ.get(FORKSERVER_ENV, "1") != "0"


def _prefect_bin() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def client_env(api_url: str, auth_string: str | None, lab_root: Path) -> dict[str, str]:
    """Environment for anything that talks to the lab's server (CLI, worker, flows)."""
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=api_url,
        # Without this, a missing URL silently starts a throwaway server (reference/prefect.md).
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_HOME=str(lab_root / "prefect-home"),
        LIFEBOAT_LAB_DIR=str(lab_root),
    )
    if auth_string:
        env["PREFECT_API_AUTH_STRING"] = auth_string
    # Prefect builds a TLS context for every client it opens, even to an http:// API,
    # from certifi's ~140 certificates unless told a file (16 ms each on this machine;
    # a flow run opens several, and `prefect deploy` one per deployment: 1.2 of its
    # 5.8 CPU-s). The lab's API is plain HTTP on loopback, and the one CA anything of
    # the lab trusts is its own (lab/core/tls.py), made at each start: once it exists,
    # it is the Prefect clients' trust store too (0.3 ms a context).
    ca = lab_root / "tls" / "ca.pem"
    if ca.exists():
        env["PREFECT_API_SSL_CERT_FILE"] = str(ca)
    return env


def start_server(
    lab_root: Path, host: str, port: int, database_url: str | None, auth_string: str | None
) -> subprocess.Popen[bytes]:
    api_url = f"http://{host}:{port}/api"
    env = client_env(api_url, auth_string, lab_root)
    env.pop("PREFECT_API_URL")
    # The UI asks /ui-settings where the API is; without this it answers the default
    # port 4200, not the lab's, and every page fails with "Can't connect to Server API".
    env["PREFECT_UI_API_URL"] = api_url
    # No "try Prefect Cloud" pop-ups over the operator's (and the UI test's) buttons.
    env["PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT"] = "false"
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    else:  # SQLite is only the fallback: it can lock on resume (reference/prefect.md)
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = (
            f"sqlite+aiosqlite:///{lab_root / 'prefect.db'}"
        )
    if auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
    # Prefect validates every cron schedule's timezone against zoneinfo's
    # available_timezones(), which opens each of /usr/share/zoneinfo's ~600 files on every
    # call (4 ms): a tenth of the lab server's CPU went there. An empty search path makes
    # zoneinfo read the tzdata package's index instead (0.6 ms), the same IANA names
    # (Python's zoneinfo docs, PYTHONTZPATH).
    env["PYTHONTZPATH"] = ""
    # A resumed switch waits for the slot its killed run held until the lease expires
    # (60 s). Then the repossessor frees it from a loop (15 s by default), and the waiting
    # run asks again when its 423's Retry-After says (up to 30 s by default): 60-105 s in
    # all. Production's server is advised the same two settings, for the same RTO
    # (deployments/prod/server.env.example).
    env["PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS"] = "5"
    env["PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS"] = "5"
    # Task runs reach the server as events, and its task-run recorder writes them in
    # batches of one by default: one upsert, one state insert and one commit per event,
    # about 150 for a failover. Batched (up to 200, at least every second) a failover
    # costs the server 2.2 CPU-s instead of 3.4 (medians of 8, measured A/B). Task-run
    # states then show up to a second later; nothing orchestrates on them (Prefect 3.8,
    # ServerServicesTaskRunRecorderSettings); a reader of them right after a run ends
    # waits TASK_RUN_FLUSH_S. Production's server is advised the same.
    env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] = "200"
    env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL"] = str(TASK_RUN_FLUSH_S)
    log = (lab_root / "logs" / "prefect-server.log").open("ab")
    return subprocess.Popen(
        [_prefect_bin(), "server", "start", "--host", host, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_healthy(api_url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError("the Prefect server exited at start; see logs/prefect-server.log")
        try:
            if httpx.get(f"{api_url}/health", timeout=1.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the Prefect server did not answer {api_url}/health in {timeout:.0f} s")


def _run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        [_prefect_bin(), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def _deployments() -> list[dict[str, Any]]:
    data = yaml.safe_load(PREFECT_YAML.read_text()) if PREFECT_YAML.exists() else None
    return list((data or {}).get("deployments") or [])


def has_deployments() -> bool:
    return bool(_deployments())


def apply_configuration(env: dict[str, str]) -> None:
    """Work pool, the region-switch concurrency limit, and every deployment."""
    _run(["work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"], env)
    api = _api(env)
    _start_the_engine_directly(api)
    _ensure_region_switch_limit(api)
    if has_deployments():
        # The lab's deployments only: the file holds production's too (named prod). A
        # bare deployment name selects every flow's deployment of that name, once each.
        _run(["--no-prompt", "deploy", "--name", "lab", "--prefect-file", str(PREFECT_YAML)], env)


def _api(env: dict[str, str]) -> PrefectApi:
    user, _, password = env.get("PREFECT_API_AUTH_STRING", "").partition(":")
    return PrefectApi(env["PREFECT_API_URL"], auth=(user, password) if user else None)


def _start_the_engine_directly(api: PrefectApi) -> None:
    """Give the pool's job template the engine as its default command.

    With no command, a Prefect 3.8 process worker starts a workspace supervisor, a
    Python process that imports Prefect, runs the pull steps, then starts the engine in
    a second one: about 3 s more per flow run on 2 cores (PENDING to RUNNING 7.4 s,
    against 4.3 s for the engine alone). The lab's code is already in place, so the
    engine is started at once; the worker runs crash and cancellation hooks itself.
    Better still, the command asks the lab's fork server for the run's process
    (lab/forkserver.py), and becomes the engine itself when none answers.
    The template `work-pool create` just stored is edited over REST: no second CLI.
    """
    pool = api.http.get(f"/work_pools/{WORK_POOL}")
    pool.raise_for_status()
    template = pool.json()["base_job_template"]
    launcher = Path(__file__).with_name("fork_launcher.py")
    template["variables"]["properties"]["command"]["default"] = (
        # -S: the launcher needs only the standard library, and starts in milliseconds.
        f"{sys.executable} -S {launcher}"
        if forkserver_enabled()
        else f"{sys.executable} -m prefect.engine"
    )
    api.http.patch(
        f"/work_pools/{WORK_POOL}", json={"base_job_template": template}
    ).raise_for_status()


def _ensure_region_switch_limit(api: PrefectApi) -> None:
    """The global concurrency limit region switches take a slot of (flows/region_lock.py),
    created once. Over REST, as `prefect gcl create` does it: each CLI process costs 2 to 3
    CPU-s of imports, and four labs start one after another beside the test suite."""
    found = api.http.get(f"/v2/concurrency_limits/{REGION_SWITCH_LIMIT}")
    if found.status_code == 404:
        api.http.post(
            "/v2/concurrency_limits/", json={"name": REGION_SWITCH_LIMIT, "limit": 1}
        ).raise_for_status()
    else:
        found.raise_for_status()


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """The worker's environment, which its flow runs inherit, and so the fork server's.

    The fork server's socket has a name of its own at each `lab up`: a server left over
    from an earlier one (its own session outlives a killed supervisor) is never asked,
    and would only hold a name nobody uses."""
    return dict(
        env,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
        **{SOCKET_ENV: f"lifeboat-fork-{tokens.token_hex(8)}"},
    )


def start_forkserver(lab_root: Path, run_env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The process each flow run is forked from, with every deployment's flow imported.
    ``run_env``: the worker's (``worker_env``)."""
    entrypoints = sorted({str(d["entrypoint"]) for d in _deployments() if d.get("entrypoint")})
    preloads = [arg for entrypoint in entrypoints for arg in ("--preload", entrypoint)]
    args = [sys.executable, "-m", "lab.forkserver", "--socket", run_env[SOCKET_ENV], *preloads]
    return _start_in_the_background(args, run_env, lab_root / "logs" / "prefect-forkserver.log")


def start_worker(lab_root: Path, run_env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``run_env``: from ``worker_env``, the same the fork server was given."""
    args = [_prefect_bin(), "worker", "start", "--pool", WORK_POOL, "--type", "process"]
    return _start_in_the_background(args, run_env, lab_root / "logs" / "prefect-worker.log")


def _start_in_the_background(
    args: list[str], env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """From the repository (the deployments' entrypoints are relative to it), in a
    session of its own, so that `lab down` stops it and whatever it started."""
    log = log_path.open("ab")
    return subprocess.Popen(
        args,
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


_SAVE_SECRETS = """
import json, sys
from prefect.blocks.system import Secret
for name, value in json.loads(sys.stdin.read()).items():
    Secret(value=value).save(name, overwrite=True)
"""


def save_lab_secrets(env: dict[str, str], endpoints: dict[str, object]) -> None:
    """Store the lab's secrets as Prefect Secret blocks, passed on stdin, never argv."""
    control = endpoints["control"]
    secrets = {
        "lifeboat-mongodb-uri": str(endpoints["mongodb_uri"]),
        # The lab's control API stands in for Slack and the mail relay.
        "lifeboat-slack-webhook": f"{control}/_lab/webhooks/slack",
        "lifeboat-email-webhook": f"{control}/_lab/webhooks/email",
        # Random per lab, so a test can scan logs and records for it.
        "lifeboat-database-password": tokens.token_urlsafe(18),
        # AES-256 key of the backup archives: 32 random bytes, base64.
        "lifeboat-backup-key": base64.b64encode(tokens.token_bytes(32)).decode(),
    }
    result = subprocess.run(
        [sys.executable, "-c", _SAVE_SECRETS],
        input=json.dumps(secrets),
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"saving the lab's Secret blocks failed:\n{result.stderr[-2000:]}")
