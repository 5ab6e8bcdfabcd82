"""`lab up` then `lab down` leaves no process and no port behind."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.labharness import TEST_BASE_PORT, TEST_PG_PREFIX, lifeboat, shifted_pg_prefix

# Apart from the session lab, and moved with it when a second test session runs beside.
BASE = TEST_BASE_PORT + 1000
PG_PREFIX = shifted_pg_prefix(TEST_PG_PREFIX, 10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _lab_folders(root: Path) -> list[str]:
    """The lab root and, followed through symlinks, where its clusters really live."""
    folders = {str(root)}
    for link in root.rglob("*"):
        if link.is_symlink():
            folders.add(str(link.resolve()))
    return sorted(folders)


def _processes_mentioning(folders: list[str]) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(folder in args for folder in folders):
            found.append(f"{cmdline.parent.name}: {args[:200]}")
    return found


def test_up_then_down_leaves_nothing(tmp_path) -> None:
    root = tmp_path / "lab"
    up = lifeboat(
        "lab",
        "up",
        "--dir",
        str(root),
        "--base-port",
        str(BASE),
        "--no-prefect",
        "--pg-address-prefix",
        "127.0.30.",
        "--time-scale",
        "0.01",
    )
    try:
        assert up.returncode == 0, up.stderr
        endpoints = json.loads((root / "endpoints.json").read_text())
        ports = [BASE + offset for offset in range(0, 12) if offset != 8]  # 8 is Prefect (off)
        assert _listening(BASE)
        folders = _lab_folders(root)
        assert len(_processes_mentioning(folders)) >= 4  # lab, mongo, two postgres clusters
        down = lifeboat("lab", "down", "--dir", str(root))
        assert down.returncode == 0, down.stderr
        assert [p for p in ports if _listening(p)] == []
        assert _processes_mentioning(folders) == []
        assert not (root / "endpoints.json").exists()
        assert endpoints["mongodb_uri"].startswith("mongodb://127.0.0.1:")
    finally:
        lifeboat("lab", "down", "--dir", str(root))
