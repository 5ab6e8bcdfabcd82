"""Where the suite's temporary files go: a tmpfs with room, else the system's default."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "scratch_dir.py"
MOUNTS = """\
/dev/vda / ext4 rw,relatime,discard 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
tmpfs /run/user/0 tmpfs rw 0 0
"""
GIB = 1 << 30


@pytest.fixture(scope="module")
def scratch() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scratch_dir", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_writable_tmpfs_with_room_is_chosen(scratch: ModuleType) -> None:
    folder = scratch.choose(Path("/dev/shm"), MOUNTS, 8 * GIB, True)
    assert folder is not None and folder.parent == Path("/dev/shm")
    assert folder.name.startswith("lifeboat-")


@pytest.mark.parametrize(
    ("mounts", "free", "writable", "why"),
    [
        ("/dev/vda / ext4 rw 0 0\n", 8 * GIB, True, "/dev/shm is a folder on the disk"),
        ("tmpfs /dev/shm/x tmpfs rw 0 0\n", 8 * GIB, True, "only a folder below is a tmpfs"),
        (MOUNTS, 4 * GIB - 1, True, "less room than the suite's peak, twice over"),
        (MOUNTS, 8 * GIB, False, "not writable"),
        ("", 8 * GIB, True, "no mount table"),
    ],
)
def test_anything_less_keeps_the_default(
    scratch: ModuleType, mounts: str, free: int, writable: bool, why: str
) -> None:
    assert scratch.choose(Path("/dev/shm"), mounts, free, writable) is None, why
