"""The lab's flow-run command: ask the fork server for the run's process, or start it cold.

The process worker starts this script as a flow run's command, with the run's environment.
It sends the environment, the working directory and its stdin, stdout and stderr to the
lab's fork server (`lab/forkserver.py`), which forks a process that has already imported
Prefect and the flows. This process stays the run's process for the worker and the tests:
- it carries `PREFECT__FLOW_RUN_ID` in its environment, where tests look for the run;
- a SIGTERM or SIGINT it receives is passed on to the forked process (a cancellation);
- it ends as the forked process ended, with its exit code or by its signal;
- if it is killed, the forked process kills itself (it watches this connection).

With no fork server to answer, or one that declines, it becomes the engine itself
(`python -m prefect.engine`), as the pool's command would be without the lab's speed-up.

It imports only the standard library, so that it can run under `python -S` in a few ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from typing import Any

SOCKET_ENV = "LIFEBOAT_LAB_FORK_SOCKET"
ENGINE_MODULE = "prefect.engine"
WIRE_INT = struct.Struct("!i")  # a length, a pid or a wait status, big-endian
PEER_CREDENTIALS = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid
DECLINED = 0  # the pid the server sends when it will not fork this run


def start_cold(module: str, argv: list[str]) -> None:
    """Replace this process with the engine, as a plain `python -m prefect.engine`."""
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])


def split_arguments(argv: list[str]) -> tuple[str, list[str]]:
    """`[--module M] ARGS...`: the module to run cold (the fork server's own, which the
    pool's command leaves at Prefect's engine), and the run's arguments."""
    if argv[:1] == ["--module"] and len(argv) >= 2:
        return argv[1], argv[2:]
    return ENGINE_MODULE, argv


def send_request(sock: socket.socket, request: dict[str, Any]) -> None:
    """The body's length with our stdin, stdout and stderr attached, then the body."""
    body = json.dumps(request).encode()
    socket.send_fds(sock, [WIRE_INT.pack(len(body))], [0, 1, 2])
    sock.sendall(body)


def receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes, or None when the other side closed first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def receive_int(sock: socket.socket) -> int | None:
    """One big-endian int, or None when the other side closed first."""
    data = receive_exactly(sock, WIRE_INT.size)
    if data is None:
        return None
    value: int = WIRE_INT.unpack(data)[0]
    return value


def end_as(status: int) -> None:
    """Exit as the forked process did: its code, or the same signal."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        # SIGKILL and SIGSTOP take no handler to reset.
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


class Relay:
    """Signals for the run, caught from the launcher's first instant: the worker may
    cancel before the run's pid is known, and Python's default would end the launcher
    alone (its run then dies by SIGKILL, with no chance to handle the cancellation)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.pid: int | None = None
        self.pending: list[int] = []
        for signum in self.SIGNALS:
            signal.signal(signum, self.caught)

    def caught(self, received: int, _frame: object) -> None:
        if self.pid is None:
            self.pending.append(received)
            return
        # A ProcessLookupError: it has just ended, and its status is on the way.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, received)

    def deliver_to(self, pid: int) -> None:
        self.pid = pid
        for received in self.pending:
            self.caught(received, None)

    def start_cold(self, module: str, argv: list[str]) -> None:
        """A signal caught already ends this process, as it would have ended a cold engine
        not yet started; otherwise it becomes the engine, with default handlers again."""
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        for received in self.pending:
            os.kill(os.getpid(), received)
        start_cold(module, argv)


def main() -> None:
    relay = Relay()
    module, argv = split_arguments(sys.argv[1:])
    name = os.environ.get(SOCKET_ENV)
    if not name:
        relay.start_cold(module, argv)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect("\0" + str(name))
        # The name is the lab's, but an abstract socket has no owner: the run's
        # environment (its credentials) goes only to a server of our own user.
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEER_CREDENTIALS.size)
        if PEER_CREDENTIALS.unpack(creds)[1] != os.getuid():
            raise ConnectionRefusedError("the fork server runs as another user")
        send_request(
            sock, {"module": module, "cwd": os.getcwd(), "env": dict(os.environ), "argv": argv}
        )
        pid = receive_int(sock)
    except OSError:  # no server, or one that refused us (another user, say)
        pid = None
    if pid is None or pid == DECLINED:
        relay.start_cold(module, argv)
    assert pid is not None
    relay.deliver_to(pid)
    try:
        status = receive_int(sock)
    except OSError:
        status = None
    if status is None:
        print("lab fork server: lost the flow run's process", file=sys.stderr)
        os._exit(1)
    end_as(status)


if __name__ == "__main__":
    main()
