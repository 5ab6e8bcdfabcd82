"""In-process emulators for contract tests: the real google-cloud clients on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.core.context import LabContext
from lab.core.serve import ThreadedServer
from lab.core.settings import LabSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def lab_ctx(tmp_path: Path) -> Iterator[LabContext]:
    """A fresh context with a fast clock: 1 real second of the latency model = 2 ms."""
    ctx = LabContext.create(LabSettings(root=tmp_path, time_scale=0.002))
    yield ctx
    ctx.scheduler.stop()


@pytest.fixture
def serve() -> Iterator[object]:
    """serve(app, name) -> base URL; every server stops at the end of the test."""
    servers: list[ThreadedServer] = []

    def _serve(app: object, name: str = "emulator") -> str:
        server = ThreadedServer(app, "127.0.0.1", free_port(), name)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server.url

    yield _serve
    for server in servers:
        server.stop()
