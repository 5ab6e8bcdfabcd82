"""In-process emulators for contract tests: the real google-cloud clients on loopback."""

from __future__ import annotations

import json
import os
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
    report = os.environ.get("LIFEBOAT_SCHEMA_REPORT")
    if report:
        with open(report, "a") as out:
            for entry in ctx.violations.entries(kind="request"):
                out.write(json.dumps({"test": "contract", **entry.to_json()}) + "\n")
    # A reply outside Google's discovery schema is a lab bug (lab/core/schema.py).
    broken = ctx.violations.entries(kind="response")
    if broken:
        pytest.fail(
            f"the lab replied {len(broken)} time(s) outside Google's discovery schema:\n"
            + "\n".join(
                f"{v.api} {v.method} {v.path} ({v.discovery_method}): {list(v.problems)}"
                for v in broken[:10]
            )
        )


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
