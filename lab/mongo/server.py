"""Start and stop the lab's MongoDB server as a child process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError


class MongoServer:
    def __init__(self, data_dir: Path, host: str, port: int, log_path: Path):
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self.kind = "mongod" if shutil.which("mongod") else "nx-27017"

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

    def _command(self) -> list[str]:
        if self.kind == "mongod":
            return [
                "mongod",
                "--dbpath",
                str(self.data_dir),
                "--bind_ip",
                self.host,
                "--port",
                str(self.port),
                "--quiet",
            ]
        # nx-27017 itself, with the change-stream details MongoDB documents (nx_lab.py).
        return [
            sys.executable,
            "-m",
            "lab.mongo.nx_lab",
            "--data-dir",
            str(self.data_dir),
            "--host",
            self.host,
            "-p",
            str(self.port),
            # Its defaults are machine-wide (/tmp/nx_27017.pid), so a second lab on the
            # same machine (a parallel test session) would refuse to start.
            "--pid-file",
            str(self.data_dir / "nx_27017.pid"),
            "--log-file",
            str(self.log_path.with_name("nx_27017.log")),
        ]

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError(f"{self.kind} exited at start:\n" + "\n".join(tail))
            try:
                client: MongoClient[dict[str, object]]
                with MongoClient(self.uri, serverSelectionTimeoutMS=300) as client:
                    client.admin.command("ping")
                return
            except PyMongoError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not answer on {self.uri} within {timeout} s")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None
