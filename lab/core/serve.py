"""Serve an ASGI app with uvicorn on a background thread (the lab daemon and tests)."""

from __future__ import annotations

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
        self._server = uvicorn.Server(config)
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
        self._server.should_exit = True
        self._thread.join(timeout=5)
