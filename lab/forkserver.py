"""The lab's fork server: each flow run starts as a fork of a process that has imported
Prefect and the deployments' flows.

A cold flow run spends about 2 of its 2.7 CPU-s importing Prefect, Google's clients and
the flows before it asks the server for its run (session 22's census). The lab starts
hundreds of runs on 2 cores, so the imports are done once here, and each run is forked.

What a run sees is what a cold `python -m prefect.engine` would see:
- the environment, working directory, arguments, stdin, stdout and stderr of the launcher
  the worker started (`lab/fork_launcher.py`);
- Prefect's settings, read again from that environment;
- each flow file executed afresh under its own name, as Prefect's loader does; only the
  modules those files import are already loaded.

A run whose environment differs from this server's in anything but Prefect's own
variables is declined, and the launcher starts it cold: the product may read its
environment at import (`tasks/retrying.py` does), and those imports happened here.

The lab imports nothing from the product: the flows are loaded by Prefect's loader from
the entrypoints the deployments declare, as the worker itself loads them for its hooks.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import runpy
import select
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from typing import Any

from lab.fork_launcher import (
    DECLINED,
    ENGINE_MODULE,
    PEER_CREDENTIALS,
    WIRE_INT,
    receive_exactly,
)

PREFECT_PREFIX = "PREFECT_"  # Prefect's settings (re-read per run) and its run variables


def preload(module: str, entrypoints: list[str]) -> None:
    """Import the run's module and every flow, then forget the flow files themselves, so
    that each run executes its flow file under the name a cold process would give it."""
    importlib.import_module(module)
    if not entrypoints:
        return
    import prefect.flow_engine  # noqa: F401  (what the engine imports to run a flow)
    from prefect.flows import load_flow_from_entrypoint

    for entrypoint in entrypoints:
        before = set(sys.modules)
        load_flow_from_entrypoint(entrypoint)
        stem = entrypoint.partition(":")[0].rsplit("/", 1)[-1].removesuffix(".py")
        for name in set(sys.modules) - before:
            if name == stem or name.startswith("__prefect_loader_"):
                del sys.modules[name]


def differences(ours: Mapping[str, str], theirs: Mapping[str, str]) -> list[str]:
    """The variables, Prefect's aside, set differently for the run than for this server."""
    names = {n for n in (*ours, *theirs) if not n.startswith(PREFECT_PREFIX)}
    return sorted(n for n in names if ours.get(n) != theirs.get(n))


def receive_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    header, fds, _flags, _addr = socket.recv_fds(conn, WIRE_INT.size, 3)
    try:
        if len(header) != WIRE_INT.size or len(fds) != 3:
            raise ValueError("a malformed request")
        body = receive_exactly(conn, WIRE_INT.unpack(header)[0])
        if body is None:
            raise ValueError("the launcher left mid-request")
        request: dict[str, Any] = json.loads(body)
        if not isinstance(request.get("env"), dict):
            raise ValueError("a request without an environment")
    except BaseException:
        # Held, the worker's pipes would never reach EOF, and it would wait for ever.
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def _die_with_launcher(conn: socket.socket) -> None:
    """The launcher is the run's process for the worker and the tests: when it is killed,
    the run must end as abruptly (the launcher sends nothing, so recv only ends at EOF)."""
    with contextlib.suppress(OSError):
        while conn.recv(1):
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def become_the_run(
    conn: socket.socket, fds: list[int], request: dict[str, Any], module: str
) -> None:
    """In the forked child: take the launcher's place, then run the engine as __main__."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    context = sys.modules.get("prefect.context")
    if context is not None:  # settings were read from this server's environment at import
        context.refresh_global_settings_context()
    conn.settimeout(None)
    threading.Thread(target=_die_with_launcher, args=(conn,), daemon=True).start()
    sys.argv = [sys.executable, *request["argv"]]
    # As under `python -m`, the module runs as __main__ only: imported under its own name
    # too, it would be two modules (and runpy warns of it).
    sys.modules.pop(module, None)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


class ForkServer:
    """One loop: accept a launcher, fork its run, and send it the run's pid, then its
    wait status when the run ends (SIGCHLD wakes the loop through a pipe)."""

    def __init__(self, name: str, module: str) -> None:
        self.module = module
        self.baseline = dict(os.environ)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind("\0" + name)  # abstract: no file to leave behind, no path limit
        self.listener.listen(64)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.runs: dict[int, socket.socket] = {}

    def serve(self) -> None:
        while True:
            watched = [self.listener.fileno(), self.wake_r]
            readable, _, _ = select.select(watched, [], [])
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 512):
                        pass
                self.report_ended()
            if self.listener.fileno() in readable:
                conn, _ = self.listener.accept()
                try:
                    self.start(conn)
                except Exception as error:  # one launcher's trouble; the launcher goes cold
                    say(f"could not serve a launcher: {error!r}")
                    conn.close()

    def start(self, conn: socket.socket) -> None:
        # An abstract socket has no file permissions: any local user could connect, and
        # ask for a run with a PREFECT_API_URL of their own. Only our own user is served.
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEER_CREDENTIALS.size)
        peer_pid, peer_uid, _gid = PEER_CREDENTIALS.unpack(creds)
        if peer_uid != os.getuid():
            say(f"refused pid {peer_pid}: it runs as uid {peer_uid}, not {os.getuid()}")
            conn.close()
            return
        conn.settimeout(10)
        try:
            request, fds = receive_request(conn)
        except (OSError, ValueError) as error:  # json's errors are ValueErrors
            say(f"dropped a request: {error}")
            conn.close()
            return
        run_id = request["env"].get("PREFECT__FLOW_RUN_ID")
        reason = self.reason_to_decline(request)
        if reason:
            say(f"declined flow run {run_id}: {reason}")
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                conn.sendall(WIRE_INT.pack(DECLINED))
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        if pid == 0:
            self.close_in_child()
            become_the_run(conn, fds, request, self.module)
            sys.exit(0)  # out through the interpreter's own exit: atexit, thread joins
        for fd in fds:
            os.close(fd)
        self.runs[pid] = conn
        # The pid first: once the launcher has it, nothing here can make it start the
        # same run again cold.
        with contextlib.suppress(OSError):  # a launcher already gone: the child follows it
            conn.sendall(WIRE_INT.pack(pid))
        say(f"forked {pid} for flow run {run_id}")

    def reason_to_decline(self, request: dict[str, Any]) -> str | None:
        if request.get("module") != self.module:
            return f"it runs {request.get('module')}, this server {self.module}"
        changed = differences(self.baseline, request["env"])
        if changed:
            return f"its environment differs in {', '.join(changed)}"
        return None

    def close_in_child(self) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.listener.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        for other in self.runs.values():
            other.close()

    def report_ended(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            say(f"run {pid} ended with {os.waitstatus_to_exitcode(status)}")
            conn = self.runs.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(WIRE_INT.pack(status))
                conn.close()


def say(line: str) -> None:
    print(f"lab fork server: {line}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="abstract Unix socket name")
    parser.add_argument("--module", default=ENGINE_MODULE, help="what each run executes")
    parser.add_argument("--preload", action="append", default=[], help="a flow entrypoint")
    args = parser.parse_args(argv)
    server = ForkServer(args.socket, args.module)
    preload(args.module, args.preload)
    gc.freeze()  # the children's garbage collector then leaves the shared pages unwritten
    say(f"ready with {len(args.preload)} flows preloaded")
    server.serve()


if __name__ == "__main__":
    main()
