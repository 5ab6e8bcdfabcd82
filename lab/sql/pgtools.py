"""Running the PostgreSQL tools: the binaries' folder, the server user, its folders.

The server tools refuse to run as root, so when the lab runs as root they run as the
``postgres`` user, in folders that user owns and can reach.
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

_TOOL_TIMEOUT_S = 120
_SERVER_USER = "postgres"


class PgError(RuntimeError):
    """A PostgreSQL tool or query failed; the message is what Cloud SQL would report."""


@functools.cache
def bindir() -> Path:
    """Where the server binaries live (Debian keeps them out of PATH)."""
    configured = os.environ.get("LAB_PG_BINDIR")
    if configured:
        return Path(configured)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    return Path(shutil.which("initdb") or "/usr/bin/initdb").parent


def as_root() -> bool:
    return os.geteuid() == 0


def server_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(_SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def _clean_env() -> dict[str, str]:
    # A developer's PGHOST/PGDATABASE must not redirect a lab tool to another server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "5"
    return env


def run_tool(args: list[str], *, as_server_user: bool = False, stdin: str | None = None) -> str:
    """Run one PostgreSQL tool; raise PgError with its stderr when it fails."""
    cmd = [str(bindir() / args[0]), *args[1:]]
    if as_server_user and as_root():
        cmd = ["runuser", "-u", _SERVER_USER, "--", *cmd]
    try:
        done = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            env=_clean_env(),
            timeout=_TOOL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise PgError(f"{args[0]} timed out after {_TOOL_TIMEOUT_S}s") from exc
    if done.returncode != 0:
        raise PgError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _server_can_enter(path: Path) -> bool:
    """Whether the postgres user may traverse every folder down to ``path``."""
    entry = pwd.getpwnam(_SERVER_USER)
    groups = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if _SERVER_USER in g.gr_mem)}
    for folder in [path, *path.parents]:
        st = folder.stat()
        if st.st_uid == entry.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def server_home(wanted: Path) -> tuple[Path, bool]:
    """Where clusters live: ``wanted``, or a private /tmp folder if postgres cannot reach it.

    Running as root under e.g. pytest's 0700 tmp folder, the postgres user cannot enter
    the lab's root. Granting it search rights does not hold: every new pytest session
    resets its base folder to 0700. Returns (folder, whether it is private).
    """
    wanted.mkdir(parents=True, exist_ok=True)
    if not as_root() or _server_can_enter(wanted):
        return wanted, False
    home = Path(tempfile.mkdtemp(prefix="lifeboat-lab-pg-"))
    home.chmod(0o711)  # search only: postgres enters its own folders, lists nothing
    return home, True


def prepare_folder(path: Path) -> None:
    """Create a folder the server user owns; the folders above it stay searchable."""
    for parent in reversed(path.parents):
        if not parent.exists():
            parent.mkdir()
            parent.chmod(0o711)
    path.mkdir(exist_ok=True)
    if as_root():
        os.chown(path, *server_ids())
    path.chmod(0o700)


def run_tool_raw(cmd: list[str]) -> None:
    """A non-PostgreSQL command (cp) as the server user, so the copy keeps its owner."""
    if as_root():
        cmd = ["runuser", "-u", _SERVER_USER, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S)
    if done.returncode != 0:
        raise PgError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
