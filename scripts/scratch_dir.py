"""Print where the suite's temporary files should go: a memory-backed folder, if one has room.

The Makefile exports the answer as TMPDIR to every command it runs (test, bench, demo,
the lab), unless TMPDIR is set already. Everything temporary follows it: pytest's folders, the
labs' PostgreSQL clusters and base backups, the emulated buckets, the backups' spools.

Why memory: the suite deletes and re-creates thousands of files a minute (each lab reset
drops two PostgreSQL clusters and builds them again). On ext4 without a journal, as on
these machines, creating a file walks past every inode freed in the last 60 s, or 300 s
while its inode table block is unwritten (fs/ext4/ialloc.c, ``recently_deleted``). So
each new file costs more the more the suite has just deleted. Measured on 2 cores: a lab
reset took 3.3 s and 1.6 CPU-s in ``pg_basebackup`` alone on disk, and 1.0 s and 0.005
CPU-s on tmpfs.

Usage: ``python3 scripts/scratch_dir.py`` prints the folder; it creates it first.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

SHM = Path("/dev/shm")
# The whole suite peaks near 2 GiB (four labs); room for twice that, or the disk it is.
NEEDED_BYTES = 4 << 30


def memory_backed(mount_point: Path, mounts: str) -> bool:
    """Whether /proc/mounts's text mounts a tmpfs exactly at ``mount_point``."""
    return any(
        fields[1] == str(mount_point) and fields[2] == "tmpfs"
        for fields in (line.split() for line in mounts.splitlines())
        if len(fields) >= 3
    )


def choose(mount_point: Path, mounts: str, free_bytes: int, writable: bool) -> Path | None:
    """The folder under ``mount_point`` to use, or None for the system's default."""
    if not (writable and memory_backed(mount_point, mounts) and free_bytes >= NEEDED_BYTES):
        return None
    return mount_point / f"lifeboat-{os.getuid()}"


def main() -> int:
    try:
        mounts = Path("/proc/mounts").read_text()
        stats = os.statvfs(SHM)
    except OSError:
        print(tempfile.gettempdir())
        return 0
    folder = choose(SHM, mounts, stats.f_bavail * stats.f_frsize, os.access(SHM, os.W_OK))
    if folder is None:
        print(tempfile.gettempdir())
        return 0
    folder.mkdir(exist_ok=True)
    # Search only for others: the lab's PostgreSQL runs as its own user, and must reach
    # its clusters' folders inside (lab/sql/pgtools.py, ``server_home``).
    folder.chmod(0o711)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
