"""The lab's fork server and its launcher keep what a flow run's process means to the
worker and the tests: environment, arguments, streams, exit code, signals, and death.

They run `tests/lab/fork_target.py` in place of Prefect's engine, which reports what it
was given. No lab is needed: a fork server is one process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lab.fork_launcher import SOCKET_ENV, receive_int, send_request
from tests.backup.backup_checks import params
from tests.polling import wait_for

if TYPE_CHECKING:
    from lab.prefect_api import PrefectApi
    from tests.labharness import Lab

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests.lab.fork_target"
LAUNCHER = REPO_ROOT / "lab" / "fork_launcher.py"


class Server:
    def __init__(self, env: dict[str, str], log: Path, proc: subprocess.Popen[bytes]) -> None:
        self.env, self.log, self.proc = env, log, proc

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def launch(
        self, *argv: str, env: dict[str, str] | None = None, stdin: str = ""
    ) -> subprocess.Popen[str]:
        env = env or self.env
        proc = subprocess.Popen(
            [sys.executable, "-S", str(LAUNCHER), "--module", TARGET, *argv],
            env=env,
            cwd=env["FORK_TEST_CWD"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(stdin + "\n")
        proc.stdin.close()
        return proc


def report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no report"
    data: dict[str, Any] = json.loads(line)
    return data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    cwd = tmp_path / "work"
    cwd.mkdir()
    env = {
        **os.environ,
        SOCKET_ENV: f"lifeboat-fork-test-{uuid.uuid4().hex[:12]}",
        "PYTHONPATH": str(REPO_ROOT),
        "FORK_TEST_CWD": str(cwd),
    }
    log = tmp_path / "forkserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab.forkserver",
                "--socket",
                env[SOCKET_ENV],
                "--module",
                TARGET,
            ],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "ready" in log.read_text(), timeout=30, what="the fork server's start")
        yield Server(env, log, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_forked_run_gets_the_launchers_environment_streams_arguments_and_exit_code(
    server: Server,
) -> None:
    run_id = str(uuid.uuid4())
    # Prefect's variables may differ from the server's: its settings are read again.
    env = {**server.env, "PREFECT__FLOW_RUN_ID": run_id, "PREFECT_LOGGING_LEVEL": "DEBUG"}
    proc = server.launch("exit", "3", env=env, stdin="from the worker")
    got = report(proc)
    assert proc.wait(timeout=20) == 3
    assert got["forked"] is True
    assert got["run"] == run_id
    assert got["argv"] == ["exit", "3"]
    assert got["cwd"] == server.env["FORK_TEST_CWD"]
    assert got["stdin"] == "from the worker"
    assert got["pid"] != proc.pid  # the launcher is not the process that ran it
    assert [line for line in server.lines() if "forked" in line] == [
        f"lab fork server: forked {got['pid']} for flow run {run_id}"
    ]


def test_a_run_with_another_environment_is_declined_and_starts_cold(server: Server) -> None:
    proc = server.launch("exit", "4", env={**server.env, "LIFEBOAT_RETRY_BACKOFF_S": "9"})
    got = report(proc)
    assert proc.wait(timeout=30) == 4
    assert got["forked"] is False
    assert got["pid"] == proc.pid  # the launcher became the run itself
    assert "its environment differs in LIFEBOAT_RETRY_BACKOFF_S" in server.log.read_text()


def test_with_no_fork_server_the_launcher_starts_the_run_cold(server: Server) -> None:
    env = {**server.env, SOCKET_ENV: "lifeboat-fork-nobody-listens"}
    proc = server.launch("exit", "5", env=env)
    got = report(proc)
    assert proc.wait(timeout=30) == 5
    assert got["forked"] is False


def test_a_sigterm_to_the_launcher_reaches_the_run_which_decides_how_it_ends(
    server: Server,
) -> None:
    proc = server.launch("wait")
    assert report(proc)["forked"]  # it installed its SIGTERM handler before it reported
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 7  # the handler's exit code, through the launcher


def test_a_run_killed_by_a_signal_ends_its_launcher_by_the_same_signal(server: Server) -> None:
    proc = server.launch("die")
    assert report(proc)["forked"]
    assert proc.wait(timeout=20) == -signal.SIGKILL


def test_killing_the_launcher_kills_the_run_as_a_kill_9_would(server: Server) -> None:
    proc = server.launch("wait")
    got = report(proc)
    assert got["forked"]
    run_pid = got["pid"]
    proc.kill()
    proc.wait(timeout=5)

    def gone() -> bool:
        try:
            state = Path(f"/proc/{run_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # reaped before the open, or the read
            return True
        return state == "Z"  # dead, and not yet reaped by the server

    wait_for(gone, timeout=5, what="the forked run's death")
    assert proc.stdout is not None
    assert proc.stdout.read() == ""  # it printed nothing more: it did not run on


def test_concurrent_launches_each_get_their_own_run_and_exit_code(server: Server) -> None:
    started = time.monotonic()
    procs = [server.launch("exit", str(code)) for code in range(10, 16)]
    reports = [report(proc) for proc in procs]
    assert [proc.wait(timeout=30) for proc in procs] == list(range(10, 16))
    assert all(r["forked"] for r in reports)
    assert len({r["pid"] for r in reports}) == 6
    assert time.monotonic() - started < 30


def test_the_labs_flow_runs_are_forked_and_their_launcher_is_what_tests_find(
    lab: Lab, api: PrefectApi
) -> None:
    """The session lab's pool starts runs through the launcher, and its server forks them."""
    run_id = api.launch("drill-sweeper/lab", params())["id"]
    final = api.wait(run_id, timeout=120)
    assert final["state"]["type"] == "COMPLETED", final["state"]
    log = (lab.root / "logs" / "prefect-forkserver.log").read_text()
    assert re.search(rf"^lab fork server: forked \d+ for flow run {run_id}$", log, re.M), log[
        -2000:
    ]
    assert "declined" not in log


@pytest.mark.skipif(os.getuid() != 0, reason="needs root, to connect as another user")
def test_another_user_is_refused_without_a_fork(server: Server) -> None:
    """An abstract socket has no permissions: the server checks who connects."""
    child = os.fork()
    if child == 0:  # the test process's own child, as nobody: no exec, so no python needed
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect("\0" + server.env[SOCKET_ENV])
            try:
                send_request(sock, {"module": TARGET, "cwd": "/", "env": server.env, "argv": []})
                code = 0 if receive_int(sock) is None else 1  # None: closed without a fork
            except (BrokenPipeError, ConnectionResetError):
                code = 0  # closed before the request was even read
        except BaseException as exc:
            os.write(2, f"the child failed: {exc!r}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "refused pid" in server.log.read_text()
    assert "runs as uid 65534" in server.log.read_text()
    assert "forked" not in server.log.read_text()


def test_a_sigterm_before_the_run_is_forked_still_ends_the_run_by_sigterm(server: Server) -> None:
    """The worker may cancel at once. The launcher holds the signal until it knows the
    run's pid, so the run ends by the signal or its handler, never by the SIGKILL it
    would get if the launcher died alone."""
    for step in range(12):  # from before the launcher's handlers to after the fork
        proc = server.launch("wait")
        time.sleep(step * 0.015)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) in (-signal.SIGTERM, 7)

    def all_ended() -> bool:
        lines = server.lines()
        return sum("forked" in x for x in lines) == sum(" ended with " in x for x in lines)

    wait_for(all_ended, timeout=10, what="every forked run's end in the server's log")
    forked = sum("forked" in line for line in server.lines())
    ends = [line.rsplit(" ", 1)[1] for line in server.lines() if " ended with " in line]
    assert forked, "no SIGTERM came after a fork: the race was not tried"
    assert len(ends) == forked and set(ends) <= {"-15", "7"}, server.lines()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root, to listen as another user")
def test_the_launcher_tells_a_server_of_another_user_nothing(server: Server) -> None:
    """Anyone may bind an abstract name first: the run's environment, its credentials
    included, goes only to a server of the launcher's own user; else the run starts cold."""
    name = f"lifeboat-fork-test-{uuid.uuid4().hex[:12]}"
    ready_r, ready_w = os.pipe()
    told_r, told_w = os.pipe()
    child = os.fork()
    if child == 0:  # a squatter, as nobody: it listens, and says how many bytes it got
        got = -1
        try:
            os.setgid(65534)
            os.setuid(65534)
            squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            squatter.bind("\0" + name)
            squatter.listen(1)
            os.write(ready_w, b"r")
            conn, _ = squatter.accept()
            conn.settimeout(10)
            got = len(conn.recv(65536))
        except BaseException as exc:
            os.write(2, f"the squatter failed: {exc!r}\n".encode())
        finally:
            os.write(told_w, str(got).encode())
            os._exit(0)
    assert os.read(ready_r, 1) == b"r"
    proc = server.launch("exit", "6", env={**server.env, SOCKET_ENV: name})
    got = report(proc)
    assert proc.wait(timeout=30) == 6
    assert got["forked"] is False  # started cold
    assert os.read(told_r, 16) == b"0"  # the squatter got nothing at all
    os.waitpid(child, 0)
