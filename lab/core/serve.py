"""Serve an ASGI app with uvicorn on a background thread (the lab daemon and tests)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp


class PortInUse(RuntimeError):
    pass


def ensure_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"port {host}:{port} for {what} is already in use ({exc.strerror})"
            ) from exc


class _QuietServer(uvicorn.Server):
    """uvicorn's loop wakes every 0.1 s to see whether it should stop. A lab serves about
    fifteen apps, so that was 150 wake-ups a second doing nothing: 1.3% of a core for an
    idle lab, and four labs run beside the test suite (session 25, py-spy of an idle lab
    daemon: 147 of 159 samples in the loops' selects). This one wakes once a second, as
    often as uvicorn refreshes its Date header anyway, and at once when told to stop."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # on_tick's count of 0.1-s ticks
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            should_exit = await self.on_tick(counter)

    def stop_soon(self) -> None:
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                loop.call_soon_threadsafe(wake.set)


class ThreadedServer:
    """One uvicorn server on its own thread; ``start`` returns once it accepts connections."""

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        name: str,
        tls: tuple[Path, Path] | None = None,
    ):
        """``tls`` is (certificate, key) in PEM files: the server then speaks HTTPS."""
        self.name = name
        self.host = host
        self.port = port
        self.scheme = "https" if tls else "http"
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            ssl_certfile=str(tls[0]) if tls else None,
            ssl_keyfile=str(tls[1]) if tls else None,
        )
        self._server = _QuietServer(config)
        self._thread = threading.Thread(target=self._server.run, name=f"lab-{name}", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        ensure_port_free(self.host, self.port, self.name)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start on {self.url}")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.stop_soon()
        self._thread.join(timeout=5)
